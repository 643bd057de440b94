"""Feature caches: atomic per-clip files, index rebuilt from them, lazy dataset batches."""
import json

import pytest
import torch
from safetensors import safe_open

from vavl.data import collate
from vavl.data.cache import FeatureCache, FeatureDataset
from vavl.core.errors import DataError
from vavl.models.base import EmotionConfig


def fill(cache, n=6):
    g = torch.Generator().manual_seed(0)
    feats = {}
    for i in range(n):
        audio = torch.randn(5 + i, 8, generator=g) if i % 3 != 2 else None     # every third clip: no audio
        visual = torch.randn(3 + i, 4, generator=g) if i % 3 != 1 else None    # every third: no face
        cache.write(f"clip/{i}", audio, visual, {"frames": 3 + i})
        feats[f"clip/{i}"] = (audio, visual)
    return feats


def test_write_read_roundtrip_and_index(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    cache.init({"audio_encoder": "a", "visual_encoder": "v"})
    feats = fill(cache)
    for clip_id, (audio, visual) in feats.items():
        assert cache.has(clip_id)
        got = cache.read(clip_id)
        for key, ref in (("audio_features", audio), ("visual_features", visual)):
            assert (got[key] is None) == (ref is None)
            if ref is not None:
                assert torch.equal(got[key], ref)
    assert not cache.has("nope")
    with pytest.raises(DataError, match="vavl extract"):
        cache.read("nope")
    index = cache.rebuild_index()
    assert set(index) == set(feats)
    lines = [json.loads(x) for x in (tmp_path / "c" / "index.jsonl").read_text().splitlines()]
    assert {e["id"]: e["audio_frames"] for e in lines}["clip/2"] == 0
    assert {e["id"]: e["meta"]["frames"] for e in lines}["clip/4"] == 7
    # ids with "/" get safe, distinct file names
    assert len({cache.path(i) for i in feats}) == len(feats) and all("/" not in cache.path(i).name for i in feats)


def test_settings_mismatch_is_refused(tmp_path):
    FeatureCache(tmp_path).init({"audio_encoder": "a", "fps": 25})
    FeatureCache(tmp_path).init({"audio_encoder": "a", "fps": 25})      # same settings: fine
    with pytest.raises(DataError, match="fps"):
        FeatureCache(tmp_path).init({"audio_encoder": "a", "fps": 10})


def test_files_are_written_atomically(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    cache.write("a", torch.ones(2, 3), None)
    import vavl.data.cache as mod

    def crash(tensors, path, metadata=None):
        open(path, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.write("b", torch.ones(2, 3), None)
    assert not cache.has("b") and not list((tmp_path / "clips").glob(".*.tmp"))
    with safe_open(str(cache.path("a")), framework="pt") as f:
        assert f.get_tensor("audio").shape == (2, 3)


def test_dataset_batches_with_masks_and_labels(tmp_path):
    cache = FeatureCache(tmp_path)
    feats = fill(cache)
    names = ["angry", "happy", "sad"]
    records = [{"id": i, "speaker": "s", "label": names[n % 3], "folds": {}} for n, i in enumerate(feats)]
    records.append({"id": "not-extracted", "label": "sad"})
    config = EmotionConfig(num_labels=3, id2label=dict(enumerate(names)), audio_dim=8, visual_dim=4)
    with pytest.warns(UserWarning, match="1 of 7"):
        ds = FeatureDataset(str(tmp_path), records, config)
    assert len(ds) == 6 and ds.missing == ["not-extracted"]
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["audio_features"].shape == (6, 9, 8) and batch["visual_features"].shape == (6, 8, 4)
    assert batch["audio_mask"].sum(1).tolist() == [5, 6, 0, 8, 9, 0]
    assert batch["visual_mask"].sum(1).tolist() == [3, 0, 5, 6, 0, 8]
    assert batch["labels"].tolist() == [0, 1, 2, 0, 1, 2]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=FeatureDataset.collate, num_workers=0)
    assert [len(b["ids"]) for b in loader] == [4, 2]


def test_dataset_without_any_cached_clip_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="vavl extract"), pytest.warns(UserWarning):
        FeatureDataset(tmp_path, [{"id": "x"}])

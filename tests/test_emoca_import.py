"""`vavl convert emoca-features`: the AuxFormer authors' EMOCA layout (one folder per clip, one .npy
vector per frame) -> a feature cache that the official AuxFormer config trains on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vavl.cli import main
from vavl.core.errors import DataError
from vavl.data import read_manifest
from vavl.data.cache import FeatureCache
from vavl.data.emoca import import_emoca

from test_finetune import CLASSES, ROOT, finetune, make_corpus, tiny_overrides


def emoca_folder(root, records, frames=lambda i: 3 + i % 4):
    """Per clip: frames 00000.npy, 00001.npy, ... of 50 values (a class signal in dimension c)."""
    g = np.random.default_rng(0)
    want = {}
    for i, r in enumerate(records):
        x = g.standard_normal((frames(i), 50)).astype(np.float32)
        x[:, CLASSES.index(r["label"])] += 2.0
        (root / r["id"]).mkdir(parents=True)
        for t, row in enumerate(x):
            np.save(root / r["id"] / f"{t:05d}.npy", row)
        want[r["id"]] = x
    return want


def test_emoca_features_import_into_a_cache_the_official_auxformer_config_trains_on(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    records = read_manifest(corpus / "manifest.jsonl")
    want = emoca_folder(tmp_path / "emoca", records[:-2])          # two clips without EMOCA features
    out = tmp_path / "emoca_cache"
    assert main(["convert", "emoca-features", str(tmp_path / "emoca"), "--manifest", str(corpus / "manifest.jsonl"),
                 "--audio-cache", str(corpus / "cache"), "--out", str(out)]) == 0
    cache, source = FeatureCache(out), FeatureCache(corpus / "cache")
    assert cache.settings["visual_dim"] == 50 and len(cache.ids()) == len(records)
    for r in records[-2:]:   # no EMOCA folder: audio kept, video missing
        assert cache.read(r["id"])["visual_features"] is None and cache.read(r["id"])["audio_features"] is not None
    for r in records[:-2]:
        clip = cache.read(r["id"])
        assert torch.equal(clip["visual_features"], torch.from_numpy(want[r["id"]]))   # frames in order
        assert torch.equal(clip["audio_features"], source.read(r["id"])["audio_features"])
    config = ROOT / "recipes/configs/crema_d/auxformer_official.yaml"
    cfg = finetune.load_config(config, tiny_overrides(config, corpus, tmp_path / "run")
                               + [f"data.cache={out}", "train.max_steps=2", "evaluate.dev=false", "evaluate.test=false"])
    run = finetune.setup(cfg)
    try:
        model = run["accelerator"].unwrap_model(run["model"])
        assert model.config.visual_dim == 50 and model.config.official_batching
        summary = finetune.train(run)
        assert summary["step"] == 2
    finally:
        run["accelerator"].end_training()


def test_bad_emoca_folders_are_data_errors(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=6)
    records = read_manifest(corpus / "manifest.jsonl")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no folder named as a manifest clip id"):
        import_emoca(corpus / "manifest.jsonl", tmp_path / "none", tmp_path / "c1")
    bad = tmp_path / "bad" / records[0]["id"]
    bad.mkdir(parents=True)
    np.save(bad / "00000.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="not a numeric .npy"):
        import_emoca(corpus / "manifest.jsonl", tmp_path / "bad", tmp_path / "c2")
    assert main(["convert", "emoca-features", str(tmp_path / "missing"), "--manifest", str(corpus / "manifest.jsonl"),
                 "--out", str(tmp_path / "c3")]) == 2

"""`vavl extract`'s GPU code paths, run on the CPU with tiny encoders: faces found in the main
process on the frames of several clips, clips sorted into length buckets, decoding workers, the
background cache writer and bfloat16 autocast give every clip the features it gets alone."""
import json
import os
import threading

import pytest
import torch

from test_encoders import tiny_speech_dir
from vavl.data import read_manifest, write_manifest
from vavl.data.cache import FeatureCache
from vavl.data.extract import extract
from vavl.data.extract_batches import chunks
from vavl.data.prepare import prepare
from vavl.data.synthetic import make_corpus
from vavl.core.errors import DataError

QUIET = open(os.devnull, "w")
BF16_RELATIVE = 0.02   # --bf16 vs fp32, per clip and modality: |b - r| / |r| (as `vavl extract --help` states; measured 0.008)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 clips of three lengths (0.7, 1.0, 1.3 s), one without video and one without audio; a
    layer-norm and a group-norm tiny wav2vec2, a tiny timm face encoder."""
    root = tmp_path_factory.mktemp("batched")
    records = []
    for seconds in (0.7, 1.0, 1.3):
        make_corpus("custom", root / f"c{seconds}", n_speakers=1, clips_per_class=1, duration=seconds)
        prepare("custom", root / f"c{seconds}", root / f"m{seconds}.jsonl", log=QUIET)
        records += [{**r, "id": f"{seconds}/{r['id']}"} for r in read_manifest(root / f"m{seconds}.jsonl")]
    records[0]["video"], records[5]["audio"] = None, None
    write_manifest(records, root / "m.jsonl")
    from vavl.encoders import build_encoder

    build_encoder("test_convnext", image_size=64, pretrained=False).save_pretrained(root / "visual")
    return {"manifest": root / "m.jsonl", "root": root, "visual": str(root / "visual"),
            "layer-norm": tiny_speech_dir(root / "audio-ln", stable=True),
            "group-norm": tiny_speech_dir(root / "audio-gn", stable=False)}


def features(folder):
    cache = FeatureCache(folder)
    return {i: cache.read(i) for i in cache.ids()}


def alone(corpus, audio, out, **kw):
    """Today's path: each clip alone, faces in the loader."""
    return extract(corpus["manifest"], out, audio, corpus["visual"], fps=4, batch_size=1, progress=False, log=QUIET, **kw)


def batched(corpus, audio, out, **kw):
    """The GPU path on the CPU: two decoding workers, faces of a window of clips in this process,
    length buckets of 3, the background writer."""
    return extract(corpus["manifest"], out, audio, corpus["visual"], fps=4, batch_size=3, workers=2, faces_in_main=True,
                   progress=False, log=QUIET, **kw)


def test_group_norm_speech_encoders_run_each_length_on_its_own_so_padding_changes_no_feature(corpus):
    from vavl.encoders import build_encoder

    g = torch.Generator().manual_seed(0)
    short, long = torch.randn(1, 8000, generator=g), torch.randn(1, 12000, generator=g)
    wave = torch.zeros(2, 12000)
    wave[0, :8000], wave[1] = short[0], long[0]
    mask = wave != 0
    gaps = {}
    for kind in ("layer-norm", "group-norm"):
        enc = build_encoder(corpus[kind]).eval()
        with torch.no_grad():
            padded, fmask = enc(wave, mask)
            own = enc(short)[0][0]
        gaps[kind] = (padded[0][fmask[0]] - own).abs().max().item(), enc.batch_invariant
    assert gaps["layer-norm"][0] < 1e-5 and gaps["layer-norm"][1] is True
    assert gaps["group-norm"][0] < 1e-5 and gaps["group-norm"][1] is True
    # the group-norm network itself does normalise over padding: run on the padded batch in one go, the short clip changes
    enc = build_encoder(corpus["group-norm"]).eval()
    with torch.no_grad():
        padded, fmask = enc.encode(wave, mask)
        own = enc(short)[0][0]
    assert (padded[0][fmask[0]] - own).abs().max().item() > 1e-3


def test_length_buckets_start_anew_where_an_encoder_needs_one_length():
    lengths = [5, 5, 5, 7, 7, 9, 9, 9, 9]
    assert chunks(list(range(9)), 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert chunks(list(range(9)), 3, key=lambda i: lengths[i]) == [[0, 1, 2], [3, 4], [5, 6, 7], [8]]


@pytest.mark.parametrize("audio", ["layer-norm", "group-norm"])
def test_the_batched_path_gives_each_clip_its_own_features(corpus, tmp_path, audio):
    # face_batch=1: MTCNN sees each frame alone on both paths, so the crops are bit-identical and
    # any difference would come from batching, bucketing, the workers or the writer
    ref = alone(corpus, corpus[audio], tmp_path / "alone", face_batch=1)
    new = batched(corpus, corpus[audio], tmp_path / "batched", face_batch=1)
    assert ref["cached"] == new["cached"] == 12 and new["failed"] == 0
    a, b = features(tmp_path / "alone"), features(tmp_path / "batched")
    assert a.keys() == b.keys()
    for clip in a:
        assert {k: a[clip]["meta"][k] for k in ("frames", "face_frames")} == {k: b[clip]["meta"][k] for k in ("frames", "face_frames")}
        for m in ("audio_features", "visual_features"):
            x, y = a[clip][m], b[clip][m]
            assert (x is None) == (y is None), (clip, m)
            if x is not None:
                assert x.shape == y.shape and (x - y).abs().max() <= 1e-4, (clip, m, (x - y).abs().max())
    assert sum(f["audio_features"] is not None for f in a.values()) == 11      # one clip has no audio
    assert sum(f["visual_features"] is not None for f in a.values()) >= 6       # faces in most of the 11 videos


def test_bf16_autocast_stays_within_the_stated_tolerance_and_is_a_cache_setting(corpus, tmp_path):
    alone(corpus, corpus["layer-norm"], tmp_path / "fp32")
    summary = batched(corpus, corpus["layer-norm"], tmp_path / "bf16", precision="bf16-autocast")
    assert summary["cached"] == 12
    assert FeatureCache(tmp_path / "bf16").settings["precision"] == "bf16-autocast"
    ref, low = features(tmp_path / "fp32"), features(tmp_path / "bf16")
    worst = 0.0
    for clip in ref:
        for m in ("audio_features", "visual_features"):
            if ref[clip][m] is not None:
                r, b = ref[clip][m], low[clip][m]
                assert b.dtype == torch.float32 and b.shape == r.shape
                worst = max(worst, ((b - r).norm() / r.norm()).item())
    assert 0 < worst <= BF16_RELATIVE, worst           # not fp32 in disguise, and close to it
    with pytest.raises(DataError, match="precision"):  # an fp32 cache is not extended at another precision
        batched(corpus, corpus["layer-norm"], tmp_path / "fp32", precision="bf16-autocast")


def test_the_background_writer_writes_off_the_main_thread_and_a_failed_write_costs_one_clip(corpus, tmp_path, monkeypatch):
    real_write, threads = FeatureCache.write, set()
    victim = read_manifest(corpus["manifest"])[3]["id"]

    def write(self, clip_id, *args):
        threads.add(threading.current_thread().name)
        if clip_id == victim:
            raise OSError(28, "No space left on device")
        return real_write(self, clip_id, *args)

    monkeypatch.setattr(FeatureCache, "write", write)
    summary = batched(corpus, corpus["layer-norm"], tmp_path / "cache")
    assert threads == {"vavl-cache-writer"}
    assert summary["written"] == 11 and summary["failed"] == 1 and summary["cached"] == 11
    errors = [json.loads(x) for x in (tmp_path / "cache" / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == [victim] and "No space left on device" in errors[0]["error"]
    assert victim not in FeatureCache(tmp_path / "cache").index()


def test_cli_gpu_options_are_checked_before_any_work(corpus, tmp_path, capsys):
    from vavl.cli import main

    base = ["extract", "--manifest", str(corpus["manifest"]), "--out", str(tmp_path / "cache"), "--audio-encoder",
            corpus["layer-norm"]]
    for extra, says in ((["--bf16", "--precision", "fp16"], "--bf16"), (["--face-device", "nowhere"], "--face-device"),
                        (["--face-device", "cuda:3"], "--face-device cuda:3")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err, err
    with pytest.raises(SystemExit):
        main([*base, "--face-batch", "0"])
    assert not (tmp_path / "cache").exists()

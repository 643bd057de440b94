"""Synthetic corpora in every layout -> manifest -> `vavl extract` (tiny encoders) -> dataset -> batch;
resuming a killed run; bad clips; two processes under accelerate."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from vavl.data import collate, read_manifest, write_manifest
from vavl.data.cache import FeatureCache, FeatureDataset
from vavl.data.extract import extract
from vavl.data.prepare import prepare
from vavl.data.synthetic import make_corpus
from vavl.models.base import EmotionConfig

from launch_utils import free_port, launch

ROOT = Path(__file__).resolve().parents[1]
QUIET = open(os.devnull, "w")


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """A tiny wav2vec2 (transformers save_pretrained) and a tiny timm face backbone (vavl save_pretrained)."""
    from tiny_encoders import tiny_wav2vec2_dir
    from vavl.encoders import build_encoder

    root = tmp_path_factory.mktemp("encoders")
    tiny_wav2vec2_dir(root / "audio")
    build_encoder("test_convnext", image_size=64, pretrained=False, seed=5).save_pretrained(root / "visual")
    return str(root / "audio"), str(root / "visual")


def make(layout, root, **kw):
    kw = {"n_speakers": 2, "clips_per_class": 1, "duration": 1.0, **kw}
    make_corpus(layout, root / "corpus", **kw)
    prepare(layout, root / "corpus", root / "m.jsonl", log=QUIET)
    return root / "m.jsonl"


LABELS = {"crema-d": ("angry", "disgust", "fear", "happy", "neutral", "sad"),
          "ravdess": ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
          "msp-improv": ("angry", "happy", "neutral", "sad"), "custom": ("angry", "happy", "neutral", "sad")}


@pytest.mark.parametrize("layout", ["crema-d", "ravdess", "msp-improv", "custom"])
def test_every_layout_goes_from_corpus_to_batches(tmp_path, encoders, layout):
    manifest = make(layout, tmp_path, n_speakers=1)
    records = read_manifest(manifest)
    summary = extract(manifest, tmp_path / "cache", *encoders, fps=4, batch_size=3, progress=False, log=QUIET)
    assert summary["cached"] == len(records) and summary["failed"] == 0
    cache = FeatureCache(tmp_path / "cache")
    assert cache.settings["visual_dim"] == 64 and cache.settings["processor"]["face_size"] == 64
    config = EmotionConfig(id2label=dict(enumerate(LABELS[layout])), num_labels=len(LABELS[layout]),
                           audio_dim=32, visual_dim=64)
    ds = FeatureDataset(cache, records, config)
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["audio_features"].shape[:1] == (len(records),) and batch["audio_features"].shape[2] == 32
    assert batch["visual_features"].shape[2] == 64
    # 1 s of 16 kHz audio at stride 80 -> ~199 frames; a clip without audio/video has an all-false row
    has_audio = torch.tensor([r["audio"] is not None for r in ds.records])
    assert torch.equal(batch["audio_mask"].any(1), has_audio)
    assert (batch["audio_mask"].sum(1)[has_audio] > 150).all()
    has_video = torch.tensor([r["video"] is not None for r in ds.records])
    assert not batch["visual_mask"].any(1)[~has_video].any()
    assert batch["visual_mask"].any(1)[has_video].float().mean() > 0.7        # faces found in the synthetic clips
    assert batch["labels"].tolist() == [LABELS[layout].index(r["label"]) for r in ds.records]


def test_bad_clips_are_reported_and_skipped(tmp_path, encoders):
    manifest = make("custom", tmp_path, n_speakers=1)
    records = read_manifest(manifest)[:3]
    (tmp_path / "junk.mp4").write_bytes(b"\x00not a video" * 100)
    records.append({"id": "junk", "audio": str(tmp_path / "junk.mp4"), "video": str(tmp_path / "junk.mp4"), "folds": {}})
    write_manifest(records, tmp_path / "bad.jsonl")
    summary = extract(tmp_path / "bad.jsonl", tmp_path / "cache", encoders[0], None, progress=False, log=QUIET)
    assert summary["cached"] == 3 and summary["failed"] == 1
    errors = [json.loads(x) for x in (tmp_path / "cache" / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["id"] == "junk" and "junk.mp4" in errors[0]["error"]


def run_cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "vavl.cli", "extract", *args, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, **kw)


def test_a_killed_run_resumes_without_recomputing(tmp_path, encoders):
    manifest = make("crema-d", tmp_path)
    n = len(read_manifest(manifest))
    args = ["--manifest", str(manifest), "--out", str(tmp_path / "cache"), "--audio-encoder", encoders[0],
            "--visual-encoder", encoders[1], "--fps", "3", "--batch-size", "1"]
    clips = tmp_path / "cache" / "clips"
    proc = run_cli(*args)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list(clips.glob("*.safetensors"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in clips.glob("*.safetensors")}
    assert 2 <= len(first) < n, "the run should have been killed part way"
    done = run_cli(*args)
    assert done.wait() == 0, done.stderr.read()
    after = {p.name: p.stat().st_mtime_ns for p in clips.glob("*.safetensors")}
    assert len(after) == n and all(after[k] == v for k, v in first.items())   # nothing recomputed
    assert not list(clips.glob(".*.tmp"))
    for path in clips.glob("*.safetensors"):                                # every file loads
        with safe_open(str(path), framework="pt") as f:
            assert f.get_tensor("audio").shape[1] == 32
    index = [json.loads(x) for x in (tmp_path / "cache" / "index.jsonl").read_text().splitlines()]
    assert len(index) == n


@pytest.mark.xdist_group("multiprocess")
def test_two_processes_share_one_cache(tmp_path, encoders):
    manifest = make("custom", tmp_path, n_speakers=1)
    n = len(read_manifest(manifest))
    launcher = str(Path(sys.executable).parent / "accelerate")
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", "vavl.cli", "extract", "--manifest", str(manifest),
           "--out", str(tmp_path / "cache"), "--audio-encoder", encoders[0], "--no-progress"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = launch(cmd, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    index = FeatureCache(tmp_path / "cache").rebuild_index()
    assert len(index) == n and {e["meta"]["rank"] for e in index.values()} == {0, 1}


def test_a_rank_that_starts_late_still_gets_its_own_clips(tmp_path, encoders, monkeypatch):
    """Two ranks as threads; rank 0 leaves the first barrier only after rank 1 has written its clips.
    Each rank's clips must follow from the manifest alone: had rank 0 chosen its share among the
    clips not yet cached, rank 1's new files would have moved clips out of both shares."""
    import threading

    import vavl.data.extract as extract_module

    manifest = make("custom", tmp_path, n_speakers=1)
    records = read_manifest(manifest)
    cache, gate, calls = FeatureCache(tmp_path / "cache"), threading.Barrier(2, timeout=300), []

    def late_barrier():
        gate.wait()
        if not calls:   # the first barrier: wait for rank 1's share to be on disk
            calls.append(1)
            deadline = time.monotonic() + 300
            while sum(cache.has(r["id"]) for r in records[1::2]) < len(records[1::2]) and time.monotonic() < deadline:
                time.sleep(0.05)

    ranks = {"rank0": (0, 2, late_barrier), "rank1": (1, 2, gate.wait)}
    monkeypatch.setattr(extract_module, "_dist", lambda device: ranks[threading.current_thread().name])
    results = {}

    def run(name):
        results[name] = extract(manifest, tmp_path / "cache", encoders[0], None, progress=False, log=QUIET)

    threads = [threading.Thread(target=run, args=(name,), name=name) for name in ranks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert set(results) == set(ranks)
    assert results["rank0"]["cached"] == len(records) and results["rank0"]["failed"] == 0
    assert {e["meta"]["rank"] for e in cache.rebuild_index().values()} == {0, 1}


def test_cache_records_the_weights_and_refuses_other_weights(tmp_path, encoders):
    manifest = make("custom", tmp_path, n_speakers=1)
    settings = {"fps": 3, "progress": False, "log": QUIET}
    first = extract(manifest, tmp_path / "cache", None, "test_convnext", random_init=True, **settings)
    saved = FeatureCache(tmp_path / "cache").settings["visual_weights"]
    assert saved["weights"] == "random-init" and saved["source"].startswith("timm/test_convnext")
    again = extract(manifest, tmp_path / "cache", None, "test_convnext", random_init=True, **settings)
    assert again["skipped"] == first["cached"] and again["written"] == 0   # seeded: the same network, resumable
    from vavl.encoders import build_encoder
    from vavl.core.errors import DataError

    assert saved["seed"] == 0
    other = build_encoder("test_convnext", pretrained=False, seed=1)       # same architecture, other weights
    with pytest.raises(DataError, match="visual_weights"):
        extract(manifest, tmp_path / "cache", None, other, **settings)
    folder = extract(manifest, tmp_path / "folder", None, encoders[1], **settings)
    weights = FeatureCache(tmp_path / "folder").settings["visual_weights"]
    assert folder["failed"] == 0 and weights["weights"] == "folder" and weights["source"] == str(Path(encoders[1]).resolve())
    assert len(weights["sha256"]) == 64 and weights["sha256"] != saved["sha256"]


def test_untrained_encoders_are_those_extract_made_whatever_the_global_random_state(tmp_path):
    """build_encoder(pretrained=False) and create_model(pretrained_encoders=False) draw the weights
    `vavl extract --random-init` draws: a model built in code has the cache's encoder."""
    import vavl
    from vavl.encoders import build_encoder
    from vavl.encoders.build import weights_identity

    manifest = make("custom", tmp_path, n_speakers=1)
    extract(manifest, tmp_path / "cache", None, "test_convnext", random_init=True, fps=3, progress=False, log=QUIET)
    cached = FeatureCache(tmp_path / "cache").settings["visual_weights"]
    torch.manual_seed(123)
    built = weights_identity(build_encoder("test_convnext", pretrained=False))
    assert built == cached and built["seed"] == 0
    torch.manual_seed(7)
    full = vavl.create_model("auxformer", visual_encoder="test_convnext", pretrained_encoders=False,
                             hidden_size=16, num_layers=1, num_heads=2)
    assert weights_identity(full.visual_encoder)["sha256"] == cached["sha256"]
    assert full.config.visual_encoder["weights"] == "random-init" and full.config.visual_encoder["seed"] == 0
    other = weights_identity(build_encoder("test_convnext", pretrained=False, seed=1))
    assert other["sha256"] != cached["sha256"] and other["seed"] == 1


def test_offline_with_an_empty_hub_cache_exits_2_and_writes_nothing(tmp_path):
    manifest = make("custom", tmp_path, n_speakers=1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-m", "vavl.cli", "extract", "--manifest", str(manifest), "--out",
                           str(tmp_path / "cache"), "--audio-encoder", "wav2vec2-base", "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "facebook/wav2vec2-base" in lines[0] and "hf download" in lines[0] and "--random-init" in lines[0]
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("quiet", [False, True])
def test_command_line_runs_silence_huggingface_hub_retry_warnings(quiet):
    """Offline without HF_HUB_OFFLINE, huggingface_hub warns "Retrying in 1s" five times before the
    error; the vavl commands that load models call quiet_hub() so that only vavl's one line is left."""
    code = ("from huggingface_hub.utils import logging\n"
            + ("from vavl.encoders.hf import quiet_hub; quiet_hub()\n" if quiet else "")
            + "logging.get_logger('huggingface_hub.utils._http').warning('Retrying in 1s [Retry 1/5].')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("Retrying" in done.stderr) is not quiet, done.stderr


def test_a_clip_that_fails_for_any_reason_costs_only_that_clip(tmp_path, encoders, monkeypatch):
    from vavl.cli import main
    import vavl.data.extract as ex

    manifest = make("custom", tmp_path, n_speakers=1)
    ids = [r["id"] for r in read_manifest(manifest)]
    real_decode, real_encode = ex.ClipLoader.decode, ex.encode_batch

    def decode(self, rec):
        if rec["id"] == ids[0]:
            raise ZeroDivisionError("a bug in decoding")
        return real_decode(self, rec)

    def encode(items, *args):
        names = [it["record"]["id"] for it in items]
        if ids[1] in names:
            raise RuntimeError("the encoder broke")
        feats = real_encode(items, *args)
        return [[a * float("nan"), v] if n == ids[2] else [a, v] for n, (a, v) in zip(names, feats)]

    monkeypatch.setattr(ex.ClipLoader, "decode", decode)
    monkeypatch.setattr(ex, "encode_batch", encode)
    code = main(["extract", "--manifest", str(manifest), "--out", str(tmp_path / "cache"), "--audio-encoder",
                 encoders[0], "--batch-size", "3", "--no-progress"])
    assert code == 3                                            # some clips failed, the rest are cached
    cache = tmp_path / "cache"
    errors = {e["id"]: e["error"] for e in map(json.loads, (cache / "errors.jsonl").read_text().splitlines())}
    assert set(errors) == set(ids[:3]) and set(FeatureCache(cache).index()) == set(ids[3:])
    assert errors[ids[0]] == f"{ids[0]}: unexpected error (ZeroDivisionError: a bug in decoding); traceback in {cache / 'errors.log'}"
    assert "RuntimeError: the encoder broke" in errors[ids[1]] and "non-finite" in errors[ids[2]]
    log = (cache / "errors.log").read_text()
    assert f"==== {ids[0]}" in log and "Traceback" in log and "ZeroDivisionError" in log and f"==== {ids[1]}" in log


def test_a_damaged_clip_file_is_named_then_removed_and_recomputed(tmp_path, encoders, capsys):
    from vavl.core.errors import DataError

    manifest = make("custom", tmp_path, n_speakers=1)
    kw = {"progress": False, "log": sys.stderr}
    extract(manifest, tmp_path / "cache", encoders[0], **kw)
    cache = FeatureCache(tmp_path / "cache")
    victim = sorted(cache.clips.glob("*.safetensors"))[0]
    victim.write_bytes(victim.read_bytes()[:20])
    with pytest.raises(DataError, match=victim.name):
        FeatureCache(tmp_path / "cache").rebuild_index()
    capsys.readouterr()
    summary = extract(manifest, tmp_path / "cache", encoders[0], **kw)
    assert summary["written"] == 1 and summary["cached"] == len(read_manifest(manifest))
    assert f"unreadable or damaged (truncated, a checksum mismatch, NaN / inf values) and were removed, to be extracted again: " \
           f"{victim.name}" in capsys.readouterr().err


def test_cli_bad_arguments_are_one_line_before_any_work(tmp_path, encoders, capsys):
    from vavl.cli import main

    manifest = make("custom", tmp_path, n_speakers=1)
    base = ["extract", "--manifest", str(manifest), "--out", str(tmp_path / "cache"), "--audio-encoder", encoders[0]]
    for extra, says in ((["--device", "bogus"], "not a device"), (["--device", "cuda:7"], "--device cuda:7"),
                        (["--workers", "-1"], "--workers -1")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err
    for extra in (["--batch-size", "0"], ["--fps", "-5"], ["--max-seconds", "nan"]):
        with pytest.raises(SystemExit) as stop:
            main([*base, *extra])
        assert stop.value.code == 2 and extra[0] in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()

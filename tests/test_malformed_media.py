"""Sixty-odd malformed and unusual media files (tests/malformed_media.py) through `vavl predict DIR`
and `vavl extract`, run as a user runs them: no traceback, every file accounted for (scored, reported
with no prediction and why, or failed with its one-line reason), no unexpected error in the log."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from malformed_media import REPAIRED, ROTATED, TRUNCATED, UNREADABLE, make_malformed_folder
from vavl.data import write_manifest
from vavl.data.cache import FeatureCache
from vavl.media.decode import is_media_file
from tiny_encoders import tiny_wav2vec2_dir

ROOT = Path(__file__).resolve().parents[1]
AUDIO_SUFFIXES = (".wav", ".mp3")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    files = make_malformed_folder(tmp_path_factory.mktemp("malformed") / "media")
    assert len(files) >= 60 and all(is_media_file(p) for p in files.values())
    return files


@pytest.fixture(scope="module")
def model_dir(tiny_full_model_dir):
    return Path(tiny_full_model_dir)


def vavl(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "vavl.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=ROOT, env=env)


def strict_json(line: str) -> dict:
    def refuse(constant):
        raise AssertionError(f"not valid JSON: {constant} in {line[:200]}")

    return json.loads(line, parse_constant=refuse)


def test_predict_folder_accounts_for_every_file(media, model_dir, tmp_path):
    folder = next(iter(media.values())).parent
    log, table = tmp_path / "errors.log", tmp_path / "scores.csv"
    done = vavl("predict", folder, "--model", model_dir, "--json", "--csv", table, "--log", log,
                "--window", "3", "--step", "0.5")   # 3 s windows: the longer files go through the windowed path
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    rows = {Path(r["file"]).name: r for r in map(strict_json, done.stdout.splitlines())}
    assert set(rows) == set(media)                       # every file once; notes.txt is not media
    failed = {name for name, r in rows.items() if "error" in r}
    assert failed == UNREADABLE, done.stderr[-3000:]
    assert done.returncode == 3 and not log.exists()     # some failed; none with an unexpected error
    for name in failed:
        assert name in rows[name]["error"] and "\n" not in rows[name]["error"]
        assert f"vavl predict: error: {rows[name]['error']}" in done.stderr
    for name, r in rows.items():
        if name in failed:
            continue
        if r["scores"] is None:
            assert "no usable audio or face in the clip: no prediction" in r["notes"], name
        else:
            assert all(math.isfinite(v) for v in r["scores"].values()) and r["modalities"], name
            assert all(math.isfinite(v) for e in r["timeline"] if e["scores"] for v in e["scores"].values())
    for name in TRUNCATED:
        assert rows[name]["scores"] is not None and rows[name]["decoded"] < rows[name]["duration"] - 0.5
        assert any(n.startswith("decoded ") and "truncated or corrupt" in n for n in rows[name]["notes"]), name
    for name in REPAIRED:
        assert any("NaN or infinite" in n or "beyond full scale" in n for n in rows[name]["notes"]), name
    for name in ROTATED | {"face.mp4", "face.flv", "face.avi", "two_faces.mp4", "link_to_face.mp4"}:
        assert rows[name]["face_frames"] > 0 and "visual" in rows[name]["modalities"], name
    for name in ("scene_coffee.mp4", "scene_chelsea.mp4", "passer_by.mp4", "tiny16.mp4", "black.mp4"):
        assert rows[name]["face_frames"] == 0 and rows[name]["modalities"] == ["audio"], name
    for name in ("scene_rocket_mute.mp4", "tiny16_mute.mp4", "black_mute.mp4"):
        assert rows[name]["scores"] is None and rows[name]["modalities"] == [], name
    unscored = sum(r.get("scores", 0) is None for r in rows.values())
    assert (f"vavl predict: {len(media)} files: {len(media) - len(failed) - unscored} scored, {unscored} with no "
            f"prediction, {len(failed)} failed") in done.stderr
    assert len(table.read_text().strip().splitlines()) == len(media) + 1


def test_extract_accounts_for_every_clip(media, tmp_path):

    from vavl.encoders import build_encoder

    tiny_wav2vec2_dir(tmp_path / "a")
    build_encoder("test_convnext", image_size=64, pretrained=False).save_pretrained(tmp_path / "v")
    records = [{"id": name, "audio": str(path), "video": None if name.endswith(AUDIO_SUFFIXES) else str(path),
                "folds": {}} for name, path in sorted(media.items())]
    write_manifest(records, tmp_path / "m.jsonl")
    cache = tmp_path / "cache"
    done = vavl("extract", "--manifest", tmp_path / "m.jsonl", "--out", cache, "--audio-encoder", tmp_path / "a",
                "--visual-encoder", tmp_path / "v", "--fps", "4", "--batch-size", "4", "--no-progress")
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert done.returncode == 3, done.stderr[-3000:]
    index = FeatureCache(cache).index()
    errors = [json.loads(line) for line in (cache / "errors.jsonl").read_text().splitlines()]
    assert {e["id"] for e in errors} == UNREADABLE and not set(index) & UNREADABLE
    assert set(index) | UNREADABLE == set(media)        # every clip: cached or failed with its reason
    assert all(e["id"] in e["error"] and "\n" not in e["error"] for e in errors)
    assert not (cache / "errors.log").exists()           # no unexpected error
    for clip_id in index:
        clip = FeatureCache(cache).read(clip_id)
        assert all(torch.isfinite(x).all() for x in (clip["audio_features"], clip["visual_features"]) if x is not None)
    for name in TRUNCATED:
        assert any(n.startswith("decoded ") for n in index[name]["meta"]["notes"]), name
    assert index["rotated90.mp4"]["visual_frames"] > 0 and index["scene_coffee.mp4"]["visual_frames"] == 0
    assert f"{len(index)} of {len(media)} clips cached" in done.stderr

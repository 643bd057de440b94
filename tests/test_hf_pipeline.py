"""transformers.pipeline("audio-visual-emotion-recognition") after `import vavl`: every input kind,
the same records as `vavl predict --json`, batch_size and device as in other pipelines."""
from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import pipeline

import vavl  # noqa: F401  (registers the task)
from media_utils import tone, write_face_clip
from vavl.cli import main
from vavl.core.errors import ConfigError
from vavl.media import decode, write_clip

TASK = "audio-visual-emotion-recognition"
STABLE = ("label", "scores", "modalities", "head", "frames", "face_frames", "task")   # timings differ run to run


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_full_model_dir):
    clip = write_face_clip(tmp_path_factory.mktemp("pipe") / "face.mp4", seconds=1.5, fps=10)
    return {"model": tiny_full_model_dir, "clip": str(clip), "classify": pipeline(TASK, model=tiny_full_model_dir)}


def cli_record(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["predict", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def same(a: dict, b: dict, keys=STABLE) -> None:
    for k in keys:
        if k == "scores":
            assert a[k].keys() == b[k].keys() and all(abs(a[k][c] - b[k][c]) < 1e-5 for c in a[k]), (a[k], b[k])
        else:
            assert a[k] == b[k], (k, a[k], b[k])


def test_a_path_gives_the_vavl_predict_record(setup, capsys):
    out = setup["classify"](setup["clip"])
    ref = cli_record(capsys, setup["clip"], "--model", setup["model"])
    same(out, ref)
    assert out["modalities"] == ["audio", "visual"] and "timeline" not in out
    with_timeline = setup["classify"](setup["clip"], return_timeline=True)
    assert [(e["start"], e["end"]) for e in with_timeline["timeline"]] == [(e["start"], e["end"]) for e in ref["timeline"]]


def test_a_list_with_any_batch_size_keeps_order_and_records(setup, tmp_path):
    wav = write_clip(tmp_path / "voice.wav", audio=tone(1.0), sample_rate=16000)   # an audio file
    files = [setup["clip"], str(wav), setup["clip"]]
    one = setup["classify"](files)
    for size in (2, 3):
        batched = setup["classify"](files, batch_size=size)
        assert [r["file"] for r in batched] == files
        for a, b in zip(one, batched):
            same(a, b)
    assert one[1]["modalities"] == ["audio"]


def test_arrays_are_read_as_the_file_would_be(setup):
    clip = decode(setup["clip"], fps=10, sample_rate=16000)
    from_file = setup["classify"](setup["clip"])
    both = setup["classify"]({"audio": clip.audio, "sampling_rate": 16000, "frames": clip.frames, "fps": 10.0})
    same(both, from_file, ("label", "modalities", "frames", "face_frames"))
    assert all(abs(both["scores"][c] - from_file["scores"][c]) < 1e-3 for c in both["scores"])
    audio = setup["classify"]({"audio": tone(1.0, 44100), "sampling_rate": 44100})   # resampled to 16 kHz
    frames = setup["classify"]({"frames": clip.frames, "fps": 10.0})
    assert audio["modalities"] == ["audio"] and frames["modalities"] == ["visual"]
    assert abs(sum(audio["scores"].values()) - 1) < 1e-5 and frames["face_frames"] > 0


def test_bad_inputs_and_models_are_one_line_errors(setup, tmp_path):
    classify = setup["classify"]
    with pytest.raises(ConfigError, match="unknown keys"):
        classify({"wave": np.zeros(100)})
    with pytest.raises(vavl.MediaError, match="uint8"):
        classify({"frames": np.zeros((3, 8, 8, 3), np.float32), "fps": 5})
    with pytest.raises(ConfigError, match="window"):
        classify(setup["clip"], window=0)
    features_only = vavl.create_model("auxformer", audio_dim=8, visual_dim=6, num_labels=3, hidden_size=8, num_heads=2,
                                      num_layers=1)
    features_only.save_pretrained(tmp_path / "fusion")
    with pytest.raises(ConfigError, match="model with encoders"):
        pipeline(TASK, model=str(tmp_path / "fusion"))


def test_device_is_the_pipelines(setup):
    classify = pipeline(TASK, model=setup["model"], device="cpu")
    assert str(classify.device) == "cpu" and next(classify.model.parameters()).device.type == "cpu"
    assert classify(setup["clip"])["label"] == setup["classify"](setup["clip"])["label"]

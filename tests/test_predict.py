"""Raw clip -> prediction: full models (encoders + fusion), save / AutoModel round trip,
`vavl.predict` on every kind of input, and the `vavl predict` command line."""
import csv
import json

import numpy as np
import pytest
import torch
from transformers import AutoModel

import vavl
from media_utils import tone, write_face_clip
from tiny_encoders import LABELS, tiny_full_model
from vavl.cli import main
from vavl.media import write_clip
from vavl.models.with_encoders import AudioVisualModel

UNTRAINED = "the visual encoder has untrained (random) weights: these scores carry no meaning"
UNTRAINED_FUSION = ("the fusion model (its classification heads) is untrained: these scores carry no meaning; "
                    "train it (recipes/finetune.py) or load a trained folder")


@pytest.fixture(scope="module")
def model_dir(tiny_full_model_dir):
    return tiny_full_model_dir


@pytest.fixture(scope="module")
def model(model_dir):
    from vavl.inference.predict import load_model

    return load_model(model_dir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "face.mp4": write_face_clip(d / "face.mp4", seconds=2.0, fps=10, sample_rate=48000, channels=2),
        "face.flv": write_face_clip(d / "face.flv", seconds=1.0, fps=10, sample_rate=44100),
        "surround.mkv": write_face_clip(d / "surround.mkv", seconds=1.0, fps=10, sample_rate=48000, channels=6),
        "speech.wav": write_clip(d / "speech.wav", audio=tone(1.5), sample_rate=16000),
        "speech.mp3": write_clip(d / "speech.mp3", audio=tone(1.0, 44100, 2), sample_rate=44100),
        "mute.mp4": write_face_clip(d / "mute.mp4", seconds=1.0, fps=10, audio=False),
        "noface.mp4": write_clip(d / "noface.mp4", np.full((10, 96, 128, 3), 60, np.uint8), fps=10, audio=tone(1.0)),
        "short.mp4": write_face_clip(d / "short.mp4", seconds=0.2, fps=10),
        "silent_black.mp4": write_clip(d / "silent_black.mp4", np.zeros((10, 64, 80, 3), np.uint8), fps=10,
                                       audio=np.zeros(16000, np.float32)),
    }


def test_full_model_takes_raw_and_feature_inputs_and_round_trips(tmp_path, model_dir):
    m = AutoModel.from_pretrained(model_dir).eval()
    assert isinstance(m, AudioVisualModel) and m.fusion.config.audio_dim == 32
    # the config says where the encoders' weights came from: a folder's, and an untrained timm network
    assert m.config.audio_encoder["weights"] == "folder" and m.config.visual_encoder["weights"] == "random-init"
    assert m.fusion.config.visual_dim == m.visual_encoder.output_dim and m.processor.face_size == 64
    assert m.config.id2label[1] == "happy" and m.label_names == ["angry", "happy", "neutral"]
    wave, crops = torch.randn(2, 8000), torch.randn(2, 4, 3, 64, 64)
    mask, pmask = torch.ones(2, 8000, dtype=torch.bool), torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = m(input_values=wave, attention_mask=mask, pixel_values=crops, pixel_mask=pmask, labels=torch.tensor([0, 2]))
        assert out.heads_used() == ["heads_mean", "audio"] and torch.isfinite(out.loss)  # "auxformer": the official rule
        feats = m.encode(wave, mask, crops, pmask)
        again = m(**feats)  # feature-level inputs go straight to the fusion model
        assert torch.allclose(again.logits, out.logits, atol=1e-5)
    m.save_pretrained(tmp_path / "again")
    reloaded = AutoModel.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_values=wave, pixel_values=crops, pixel_mask=pmask).logits,
                              m(input_values=wave, pixel_values=crops, pixel_mask=pmask).logits, atol=1e-5)


def test_predict_audio_visual_clip(model, clips):
    r = vavl.predict(clips["face.mp4"], model=model)
    assert r["modalities"] == ["audio", "visual"] and r["head"] == "fused"
    assert r["label"] in LABELS.values() and abs(sum(r["scores"].values()) - 1) < 1e-4
    assert r["frames"] == 8 and r["face_frames"] == 8 and abs(r["duration"] - 2.0) < 0.1  # 4 fps
    assert [x for e in r["timeline"] for x in (e["start"], e["end"])] == pytest.approx([0, 1, 1, 2], abs=0.05)
    assert all(e["modalities"] == ["audio", "visual"] for e in r["timeline"])
    assert set(r["timings"]) == {"decode", "faces", "audio_encoder", "visual_encoder", "fusion"}
    assert r["notes"] == [UNTRAINED_FUSION, UNTRAINED] and r["decoded"] == pytest.approx(r["duration"], abs=0.1)


@pytest.mark.parametrize("name,modalities,note", [
    ("face.flv", ["audio", "visual"], None), ("surround.mkv", ["audio", "visual"], None),
    ("speech.wav", ["audio"], "no video stream"), ("speech.mp3", ["audio"], "no video stream"),
    ("mute.mp4", ["visual"], "no audio stream"), ("noface.mp4", ["audio"], "no face found"),
    ("short.mp4", ["audio", "visual"], None), ("silent_black.mp4", ["audio"], "silent")])
def test_predict_handles_every_kind_of_clip(model, clips, name, modalities, note):
    r = vavl.predict(clips[name], model=model)
    assert r["modalities"] == modalities and r["label"] in LABELS.values()
    notes = [n for n in r["notes"] if n not in (UNTRAINED, UNTRAINED_FUSION)]
    assert (note is None and not notes) or any(note in n for n in notes)
    assert r["timeline"] and all(set(e["modalities"]) <= set(modalities) for e in r["timeline"])
    if "visual" not in modalities and name.endswith(".mp4") and name != "mute.mp4":
        assert r["frames"] > 0 and r["face_frames"] == 0


def test_regression_model_reports_attribute_values(tmp_path, clips):
    m = tiny_full_model(tmp_path, task="regression", id2label=None).eval()
    r = vavl.predict(clips["face.flv"], model=m)
    assert r["label"] is None and list(r["scores"]) == ["arousal", "valence", "dominance"]


def test_long_clip_is_decoded_in_windows(tmp_path, model, monkeypatch):
    path = write_clip(tmp_path / "long.wav", audio=np.tile(tone(1.0), 120), sample_rate=16000)  # 2 minutes
    spans = []
    decode = model.processor.decode

    def spy(p, start=0.0, end=None, **kw):
        spans.append((start, end))
        return decode(p, start=start, end=end, **kw)

    monkeypatch.setattr(model.processor, "decode", spy)
    r = vavl.predict(path, model=model, window=20.0, step=5.0)
    assert len(spans) == 6 and all(e is None or e - s <= 20.0 for s, e in spans)
    assert len(r["timeline"]) == 24 and r["timeline"][-1]["end"] == pytest.approx(120.0, abs=0.1)
    assert r["modalities"] == ["audio"] and abs(r["duration"] - 120.0) < 0.1


def test_cli_json_csv_timeline_and_batch_with_failures(tmp_path, model_dir, clips, capsys):
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("face.flv", "speech.wav"):
        (folder / name).write_bytes(clips[name].read_bytes())
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("not a video")
    (folder / "readme.txt").write_text("ignored: not a media suffix")
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    code = main(["predict", str(folder), "--model", model_dir, "--json", "--csv", str(tmp_path / "out.csv"),
                 "--timeline", str(tmp_path / "t.png")])
    out, err = capsys.readouterr()
    assert code == 3 and "Traceback" not in err   # 3: some files failed, the others were scored
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert sorted(r["file"].split("/")[-1] for r in rows) == ["empty.mp4", "face.flv", "gone.wav", "notes.mp4", "speech.wav"]
    for r in rows:
        keys = {"file", "error"} if r["file"].endswith(("empty.mp4", "notes.mp4", "gone.wav")) else \
            {"file", "label", "scores", "modalities", "frames", "face_frames", "duration", "decoded", "timeline"}
        assert keys <= set(r)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 3 and any("empty.mp4" in e for e in errors) and any("notes.mp4" in e for e in errors)
    assert any("gone.wav" in e and "broken symbolic link" in e for e in errors)
    assert "5 files: 2 scored, 0 with no prediction, 3 failed" in err
    table = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert len(table) == 5 and sum(bool(r["error"]) for r in table) == 3 and all(r["error"] or r["label"] for r in table)
    assert (tmp_path / "t_face.png").stat().st_size > 1000 and (tmp_path / "t_speech.png").exists()


def test_cli_checks_its_arguments_before_any_work(tmp_path, model_dir, clips, capsys):
    clip = str(clips["speech.wav"])
    for args, says in [(["--csv", str(tmp_path / "missing" / "out.csv")], "does not exist"),
                       (["--timeline", str(tmp_path)], "is a folder"), (["--device", "bogus"], "not a device"),
                       (["--device", "cuda:7"], "--device cuda:7")]:
        assert main(["predict", clip, "--model", model_dir, *args]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
    for option, says in (("--window", "outside 1..3600 seconds"), ("--step", "outside 0.1..3600 seconds")):
        with pytest.raises(SystemExit) as stop:
            main(["predict", clip, "--model", model_dir, option, "0"])
        assert stop.value.code == 2 and says in capsys.readouterr().err


def test_cli_refuses_damaged_or_pickled_model_folders(tmp_path, model_dir, clips, capsys):
    import shutil

    cut, pickled = tmp_path / "cut", tmp_path / "pickled"
    shutil.copytree(model_dir, cut)
    weights = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    shutil.copytree(model_dir, pickled)
    model = AutoModel.from_pretrained(model_dir)
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    capsys.readouterr()
    for folder, says in ((cut, "cannot load the model"), (pickled, "no model.safetensors")):
        assert main(["predict", str(clips["speech.wav"]), "--model", str(folder)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err and str(folder) in err


@pytest.mark.parametrize("content", [b"", b"plain text\n" * 10, None])
def test_cli_single_bad_file_is_one_line_and_exit_2(tmp_path, model_dir, capsys, content):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    assert main(["predict", str(path), "--model", model_dir]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and "bad.mp4" in lines[0] and "Traceback" not in err


def test_cli_human_readable_line(model_dir, clips, capsys):
    assert main(["predict", str(clips["noface.mp4"]), "--model", model_dir]) == 0
    out = capsys.readouterr().out
    assert "noface.mp4" in out and "audio" in out and "no face found" in out


def test_an_unexpected_error_costs_one_file_and_leaves_its_traceback_in_the_log(tmp_path, model_dir, clips, capsys,
                                                                              monkeypatch):
    import vavl.inference.predict as pipeline

    real = pipeline.predict_clip

    def flaky(path, *args):
        if path.endswith("speech.wav"):
            raise IndexError("a bug somewhere inside")
        return real(path, *args)

    monkeypatch.setattr(pipeline, "predict_clip", flaky)
    log = tmp_path / "tracebacks.log"
    files = [str(clips[n]) for n in ("speech.wav", "face.flv", "speech.mp3")]
    assert main(["predict", *files, "--model", model_dir, "--log", str(log), "--csv", str(tmp_path / "t.csv")]) == 3
    out, err = capsys.readouterr()
    assert "Traceback" not in err and len(out.strip().splitlines()) == 2     # the other two are scored
    line = f"{files[0]}: unexpected error (IndexError: a bug somewhere inside); traceback in {log}"
    assert f"vavl predict: error: {line}" in err and f"tracebacks of 1 unexpected errors in {log}" in err
    text = log.read_text()
    assert text.startswith(f"==== {files[0]}\nTraceback") and "IndexError: a bug somewhere inside" in text
    assert main(["predict", files[0], "--model", model_dir, "--log", str(log)]) == 2   # nothing usable
    assert capsys.readouterr().err.strip() == f"vavl predict: error: {line}"


def test_a_clip_shorter_than_one_encoder_frame_is_scored(tmp_path, model):
    for ms in (1, 5):
        path = write_clip(tmp_path / f"{ms}ms.wav", audio=tone(ms / 1000), sample_rate=16000)
        r = vavl.predict(path, model=model)
        assert r["modalities"] == ["audio"] and r["label"] in LABELS.values() and r["timeline"][0]["scores"]


def test_an_untrained_fusion_model_says_so_even_with_trained_encoders(tmp_path, clips):
    """create_model builds the fusion heads untrained: with encoders from a folder (their own weights)
    every prediction still says the scores mean nothing; a trained model (provenance recorded) does not."""
    from tiny_encoders import tiny_speech_dir

    speech = tiny_speech_dir(tmp_path / "speech")
    m = vavl.create_model("auxformer", audio_encoder=speech, id2label=LABELS, hidden_size=16, num_heads=2, num_layers=1)
    assert m.config.audio_encoder["weights"] == "folder"
    r = vavl.predict(clips["speech.wav"], model=m)
    assert r["notes"][-1] == UNTRAINED_FUSION and r["label"] in LABELS.values()
    m.save_pretrained(tmp_path / "saved")
    assert UNTRAINED_FUSION in vavl.predict(clips["speech.wav"], model=str(tmp_path / "saved"))["notes"]
    m.fusion.config.provenance = {"weights": "trained", "trained_by": "a test"}
    assert not any("untrained" in n for n in vavl.predict(clips["speech.wav"], model=m)["notes"])

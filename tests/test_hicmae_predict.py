"""A converted HiCMAE on a user's clip: `vavl predict` (scores in HiCMAE's class order, the mean of
the views' softmax), missing streams, and `vavl export onnx` of the folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from media_utils import tone, write_face_clip
from vavl.cli import main as cli
from vavl.inference.export import torch_can_export
from vavl.media import write_clip
from vavl.models.loading import load_model

CHECKPOINT = Path(__file__).parent / "fixtures" / "reference-parity" / "hicmae" / "checkpoint-best.pth"
ORDER = ["angry", "disgust", "fear", "happy", "neutral", "sad"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("hicmae") / "model"
    assert cli(["convert", "hicmae", str(CHECKPOINT), "--corpus", "crema-d", "--num-heads", "4", "--out", str(out)]) == 0
    settings = json.loads((out / "preprocessor_config.json").read_text())
    assert settings["fps"] == 30.0
    settings["fps"] = 15.0   # half the face tracking of the default 30 fps: a faster test, the same code paths
    (out / "preprocessor_config.json").write_text(json.dumps(settings))
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {"face": write_face_clip(d / "face.mp4", seconds=1.2, fps=30),
            "speech": write_clip(d / "speech.wav", audio=tone(1.5), sample_rate=16000),
            "noface": write_clip(d / "noface.mp4", np.full((20, 96, 128, 3), 60, np.uint8), fps=30, audio=tone(0.7))}


def test_predict_scores_a_face_clip_in_hicmae_order(folder, clips, capsys):
    assert cli(["predict", str(clips["face"]), "--model", str(folder), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(r["scores"]) == ORDER and r["label"] == max(r["scores"], key=r["scores"].get)
    assert abs(sum(r["scores"].values()) - 1) < 1e-5
    assert r["modalities"] == ["audio", "visual"] and r["head"] == "fused" and r["face_frames"] >= 15
    assert len(r["timeline"]) == 2   # the two official temporal views
    # the clip score is the mean over the views of softmax(logits), computed here from the processor's views
    model = load_model(folder)
    views = model.processor(str(clips["face"]))
    assert views["pixel_values"].shape == (2, 8, 3, 48, 48) and views["input_features"].shape == (2, 256, 128)
    with torch.no_grad():
        probs = model(pixel_values=views["pixel_values"], input_features=views["input_features"]).logits.softmax(-1)
    expected = dict(zip(ORDER, probs.mean(0).tolist()))
    assert all(abs(r["scores"][k] - v) < 1e-5 for k, v in expected.items())


def test_transformers_pipeline_takes_the_converted_folder(folder):
    from transformers import pipeline

    import vavl  # noqa: F401  (registers the task)

    classify = pipeline("audio-visual-emotion-recognition", model=str(folder))
    g = np.random.default_rng(0)
    r = classify({"audio": (0.1 * g.standard_normal(16000)).astype(np.float32), "sampling_rate": 16000})
    assert list(r["scores"]) == ORDER and r["modalities"] == ["audio"] and "timeline" not in r


def test_predict_without_faces_or_video_uses_the_other_modality(folder, clips, capsys):
    assert cli(["predict", str(clips["speech"]), str(clips["noface"]), "--model", str(folder), "--json"]) == 0
    speech, noface = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert speech["modalities"] == ["audio"] and "no video stream: visual modality missing" in speech["notes"]
    assert noface["modalities"] == ["audio"] and any("no face found" in n for n in noface["notes"])
    assert list(speech["scores"]) == ORDER


def test_export_onnx_of_the_converted_folder(folder, tmp_path, capsys):
    if not torch_can_export():   # the lower end: one line, nothing written
        assert cli(["export", "onnx", "--model", str(folder), "--out", str(tmp_path / "hicmae.onnx"), "--no-optimize"]) == 2
        assert "needs torch >= 2.14" in capsys.readouterr().err and not (tmp_path / "hicmae.onnx").exists()
        return
    assert cli(["export", "onnx", "--model", str(folder), "--out", str(tmp_path / "hicmae.onnx"), "--no-optimize"]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(tmp_path / "hicmae.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values", "input_features"]
    g = torch.Generator().manual_seed(3)
    video, fbank = torch.randn(4, 8, 3, 48, 48, generator=g), torch.randn(4, 256, 128, generator=g)
    with torch.no_grad():
        ref = load_model(folder)(pixel_values=video, input_features=fbank).logits
    got = session.run(["logits"], {"pixel_values": video.numpy(), "input_features": fbank.numpy()})[0]
    assert np.abs(got - ref.numpy()).max() <= 1e-4


def test_evaluate_runs_the_missing_modality_conditions_on_raw_clips(folder, tmp_path):
    """`vavl evaluate` on a converted fold: the conditions change the raw waveform / face frames, then the
    model cuts its views; the "av" logits are the log of the clip score `vavl predict` gives."""
    from vavl.data import write_manifest
    from vavl.inference.predict import predict

    records = []
    for i in range(6):
        path = write_face_clip(tmp_path / f"clip{i}.mp4", seconds=0.8, fps=30)
        records.append({"id": f"clip{i}", "speaker": f"s{i % 2}", "video": path.name, "audio": path.name, "label": ORDER[i]})
    write_manifest(records, tmp_path / "manifest.jsonl")
    code = cli(["evaluate", "--model", str(folder), "--manifest", str(tmp_path / "manifest.jsonl"), "--conditions",
                "av,audio,video,drop-frames:0.5,noise-snr:10", "--batch-size", "3", "--bootstrap", "20",
                "--split", "all", "--out", str(tmp_path / "report")])
    assert code == 0
    res = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(res["conditions"]) == {"av", "audio", "video", "drop-frames:0.5", "noise-snr:10"}
    assert all(c["fused"]["n"] == 6 for c in res["conditions"].values())
    model = load_model(folder)
    clip = model.processor.decode(tmp_path / "clip0.mp4")
    raw = model.processor.raw_inputs(clip)
    with torch.no_grad():
        merged = model(**raw).logits.exp()[0]
        audio_only = model(input_values=raw["input_values"], attention_mask=raw["attention_mask"])
    scores = predict(tmp_path / "clip0.mp4", model)["scores"]
    assert np.allclose(merged.numpy(), [scores[k] for k in ORDER], atol=1e-5)
    assert audio_only.modalities_used() == [["audio"]]

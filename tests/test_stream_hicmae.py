"""`vavl stream` with a HiCMAE model (tiny, random weights): each window scored by the model's test
views, its one head reported under predict's head name, its face tracked across windows."""
import json

import numpy as np
import pytest
import torch

from media_utils import face_frames, tone, write_face_clip
from test_hicmae_model import TINY
from vavl.cli import main
from vavl.inference.predict import predict_clip, prepare_model
from vavl.inference.stream import stream_windows
from vavl.media.arrays import ArrayClip
from vavl.media.live import array_events
from vavl.models.hicmae import HiCMAEConfig, HiCMAEForEmotionRecognition

LABELS = {0: "angry", 1: "happy", 2: "sad"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hicmae_stream") / "model"
    HiCMAEForEmotionRecognition(HiCMAEConfig(**TINY, id2label=LABELS)).eval().save_pretrained(out)
    settings = json.loads((out / "preprocessor_config.json").read_text())
    settings["fps"] = 10.0   # the clips' rate: every frame a face frame, fewer to track
    (out / "preprocessor_config.json").write_text(json.dumps(settings))
    return str(out)


def test_a_hicmae_model_streams_a_file_with_its_head_and_face_track(folder, tmp_path, one_thread):
    clip = write_face_clip(tmp_path / "face.mp4", seconds=2.5, fps=10)
    out = tmp_path / "lines.jsonl"
    assert main(["stream", str(clip), "--model", folder, "--window", "1", "--hop", "0.5", "--out", str(out)]) == 0
    *windows, end = [json.loads(x) for x in out.read_text().splitlines()]
    assert end["event"] == "end" and len(windows) == 4   # 0-1, 0.5-1.5, 1-2, 1.5-2.5
    for w in windows:
        assert w["modalities"] == ["audio", "visual"] and list(w["scores"]) == list(LABELS.values())
        assert w["heads"] == {"fused": w["scores"]} and w["label"] == max(w["scores"], key=w["scores"].get)
        assert w["face_frames"] > 0 and w["face"]["track"] == 0   # one face, followed across the windows
    assert windows[0]["face"]["box"][0] < windows[2]["face"]["box"][0]   # it moves right
    assert len({json.dumps(w["scores"]) for w in windows}) > 1   # each window scored on its own media


def test_hicmae_windows_equal_predict_on_the_same_arrays_and_a_window_without_face_says_so(folder, one_thread):
    model = prepare_model(folder)
    fps = model.processor.fps
    frames = face_frames(int(2 * fps))
    frames[int(fps):] = 60   # the second second: no face
    chunks = sorted([("audio", i / 10, tone(0.1)) for i in range(20)] +
                    [("video", j / fps, f) for j, f in enumerate(frames)], key=lambda c: c[1])
    first, second, end = stream_windows(array_events(iter(chunks)), model, window=1.0, hop=1.0, stall=30,
                                        catch_up=False)   # all at once: every window, however late
    with torch.inference_mode():   # as stream scores
        alone = predict_clip(ArrayClip(audio=np.concatenate([c[2] for c in chunks if c[0] == "audio"][:10]),
                                       sample_rate=16000, frames=frames[: int(fps)], fps=fps), model)
    assert first["scores"] == alone["scores"] and first["label"] == alone["label"]   # the window is a clip of its own
    assert second["modalities"] == ["audio"] and set(second["heads"]) == {"audio"} and second["face"] is None
    assert any(n.startswith("no face found in") for n in second["notes"])
    assert end["event"] == "end" and end["windows"] == 2

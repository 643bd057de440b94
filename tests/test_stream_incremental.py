"""`vavl stream --incremental` (vavl.inference.stream_blocks): each audio block of one hop and each
frame is worked on once across overlapping windows, a window's answer is the fusion model on the
concatenation of its blocks' and frames' features, gaps / silence / no face say so, the caches
hold only the window's span, and encoders that cannot work on blocks are refused in one line."""
import json
import time

import numpy as np
import pytest
import torch
from media_utils import face_frames, paced_audio, tone, write_face_clip
from tiny_encoders import LABELS, speech_videomae_model, tiny_whisper_dir

import vavl
from vavl.cli import main
from vavl.inference import stream_blocks
from vavl.inference.predict import prepare_model
from vavl.inference.stream import stream_windows
from vavl.inference.stream_blocks import IncrementalError, check_incremental
from vavl.media.live import array_events
from vavl.models.with_encoders import AudioVisualModel

SR = 16000


@pytest.fixture(scope="module")
def model(tiny_full_model_dir):
    return prepare_model(tiny_full_model_dir)


def _chunks(fps: float, seconds: float = 4.0, wave=None, frames=None, audio_gap=None):
    """A device-like source: 0.1 s of audio and one frame at a time (a face moving across the frames).
    audio_gap (a, b): no audio chunks between media times a and b."""
    frames = face_frames(int(seconds * fps)) if frames is None else frames
    wave = np.concatenate([tone(0.1)] * int(seconds * 10)) if wave is None else wave
    chunks = [("audio", i / 10, wave[i * SR // 10:(i + 1) * SR // 10]) for i in range(int(seconds * 10))
              if audio_gap is None or not (audio_gap[0] <= i / 10 < audio_gap[1] - 1e-9)]
    chunks += [("video", j / fps, f) for j, f in enumerate(frames)]
    return sorted(chunks, key=lambda c: c[1]), wave


def _run(model, chunks, incremental=True, **kw):
    return list(stream_windows(array_events(iter(chunks)), model, window=2.0, hop=0.5, stall=30, catch_up=False,
                               incremental=incremental, **kw))


def _calls(module, seen: list):
    """A forward hook recording the input length (samples or frames) of each call."""
    return module.register_forward_hook(lambda m, args, out: seen.append(int(args[1].sum())))


def test_each_block_and_each_frame_is_encoded_once(model, one_thread):
    fps = model.processor.fps
    chunks, _ = _chunks(fps)
    audio, visual = [], []
    hooks = [_calls(model.audio_encoder, audio), _calls(model.visual_encoder, visual)]
    try:
        lines = _run(model, chunks)
    finally:
        for h in hooks:
            h.remove()
    windows = lines[:-1]
    assert [(w["start"], w["end"]) for w in windows] == [(s, s + 2.0) for s in (0.0, 0.5, 1.0, 1.5, 2.0)]
    assert all(w["incremental"] is True and w["modalities"] == ["audio", "visual"] for w in windows)
    # 4 s of sound: eight blocks of 0.5 s, each through the speech encoder once (not 5 windows x 2 s)
    assert audio == [SR // 2] * 8
    # 16 frames, each face crop encoded once: the first window all 8, each later one the 2 new frames
    assert sum(visual) == 16 and visual == [8, 2, 2, 2, 2]
    first, later = windows[0]["reuse"], [w["reuse"] for w in windows[1:]]
    assert first == {"blocks_encoded": 4, "blocks_reused": 0, "frames_detected": 4, "detections_reused": 0,
                     "frames_encoded": 8, "features_reused": 0}
    assert all(c == {"blocks_encoded": 1, "blocks_reused": 3, "frames_detected": 1, "detections_reused": 3,
                     "frames_encoded": 2, "features_reused": 6} for c in later)
    # the same fields as the exact mode's lines
    exact = _run(model, chunks, incremental=False)
    assert all(set(w) - {"incremental"} == set(e) for w, e in zip(windows, exact[:-1]))
    assert all("incremental" not in e for e in exact)


def test_a_windows_answer_is_the_fusion_model_on_its_blocks_and_frames(model, one_thread, monkeypatch):
    fps = model.processor.fps
    chunks, wave = _chunks(fps)
    crops = {}   # per window: the crops of its frames (fixed once, the first time a window held them)
    real = stream_blocks.StreamBlocks.score

    def score(self, buf, a, b):
        r = real(self, buf, a, b)
        crops[a] = [self.frames[(t, id(f))]["crop"] for t, f in buf.frames if a <= t < b]
        return r

    monkeypatch.setattr(stream_blocks.StreamBlocks, "score", score)
    windows = _run(model, chunks)[:-1]
    with torch.inference_mode():
        for w in windows:
            a = w["start"]
            blocks = []
            for k in range(int(a / 0.5), int(a / 0.5) + 4):   # each block through the encoder on its own
                x = torch.from_numpy(wave[k * SR // 2:(k + 1) * SR // 2]).unsqueeze(0)
                f, m = model.audio_encoder(x, torch.ones_like(x, dtype=torch.bool))
                blocks.append(f[0, m[0]])
            audio = torch.cat(blocks).unsqueeze(0)
            assert audio.shape[1] == 4 * 25   # the tiny wav2vec2: 25 frames per 0.5 s block
            pixels = model.processor.normalize(np.stack(crops[a])).unsqueeze(0)   # all 8 frames in one batch
            vmask = torch.ones(pixels.shape[:2], dtype=torch.bool)
            visual, vm = model.visual_encoder(pixels, vmask)
            out = model(audio_features=audio, audio_mask=torch.ones(audio.shape[:2], dtype=torch.bool),
                        visual_features=visual, visual_mask=vm)
            for head, logits in (("fused", out.fused_logits), ("audio", out.audio_logits), ("visual", out.visual_logits)):
                expected = torch.softmax(logits[0].float(), -1).tolist()
                got = [w["heads"][head][n] for n in LABELS.values()]
                assert np.allclose(got, expected, atol=2e-5), (a, head)


def test_a_gap_silence_and_no_face_say_so(model, one_thread):
    fps = model.processor.fps
    # a gap in the sound from 1.0 to 1.5 s: block 2 has no samples, the windows holding it use three blocks
    chunks, _ = _chunks(fps, audio_gap=(1.0, 1.5))
    windows = _run(model, chunks)[:-1]
    gap = [w for w in windows if w["start"] <= 1.0 < w["end"]]
    assert [w["start"] for w in gap] == [0.0, 0.5, 1.0]
    assert all("no sound in 1 of the window's 4 blocks of 0.5 s" in w["notes"] for w in gap)
    assert all(w["modalities"] == ["audio", "visual"] for w in windows)
    assert not any("no sound" in n for w in windows if w not in gap for n in w["notes"])
    # silent sound and frames without a face: the notes and modalities of the exact mode
    blank = np.full((16, 120, 160, 3), 90, np.uint8)
    chunks, _ = _chunks(fps, wave=np.zeros(4 * SR, np.float32), frames=blank)
    inc, exact = _run(model, chunks)[:-1], _run(model, chunks, incremental=False)[:-1]
    for w, e in zip(inc, exact):
        assert w["modalities"] == e["modalities"] == ["audio"] and w["face"] is None and w["face_frames"] == 0
        assert w["notes"] == e["notes"]
        assert "audio is silent" in w["notes"] and "no face found in 8 frames: visual modality missing" in w["notes"]
    # no sound at all (a camera without a microphone): audio missing, as in the exact mode
    chunks = [c for c in _chunks(fps)[0] if c[0] == "video"]
    inc = list(stream_windows(array_events(iter(chunks), audio=False), model, window=2.0, hop=0.5, stall=30,
                              catch_up=False, incremental=True))[:-1]
    exact = list(stream_windows(array_events(iter(chunks), audio=False), model, window=2.0, hop=0.5, stall=30,
                                catch_up=False))[:-1]
    assert [w["modalities"] for w in inc] == [e["modalities"] for e in exact] == [["visual"]] * 5
    assert all("no audio stream: audio modality missing" in w["notes"] for w in inc + exact)


def test_the_caches_hold_only_the_windows_span(model, one_thread, monkeypatch):
    kept = []   # before each window: its start, the blocks and frames held
    real = stream_blocks.StreamBlocks.score

    def score(self, buf, a, b):
        kept.append((a, sorted(self.blocks), sorted(k[0] for k in self.frames), sorted(k[0] for k in self.detections)))
        return real(self, buf, a, b)

    monkeypatch.setattr(stream_blocks.StreamBlocks, "score", score)
    lines = _run(model, _chunks(model.processor.fps, seconds=6.0)[0])
    assert len(lines) == 10 and len(kept) == 9
    for a, blocks, frames, detections in kept[1:]:
        assert blocks == [round(a / 0.5) + k for k in range(4)]   # the window's blocks (the last one just completed)
        assert min(frames) >= a and min(detections) >= a and len(frames) == 6 and len(detections) == 3


def test_incremental_through_the_cli(tiny_full_model_dir, tmp_path, one_thread):
    clip = write_face_clip(tmp_path / "face.mp4", seconds=3.0, fps=10)
    out = tmp_path / "lines.jsonl"
    assert main(["stream", str(clip), "--model", tiny_full_model_dir, "--incremental", "--window", "2", "--hop", "0.5",
                 "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    windows = lines[:-1]
    assert lines[-1]["event"] == "end" and [w["start"] for w in windows] == [0.0, 0.5, 1.0]
    assert all(w["incremental"] is True and w["modalities"] == ["audio", "visual"] for w in windows)
    assert [w["reuse"]["blocks_encoded"] for w in windows] == [4, 1, 1]


def test_a_window_rate_visual_encoder_keeps_the_per_window_path(tmp_path, one_thread):
    model = speech_videomae_model(tmp_path)
    chunks, _ = _chunks(model.processor.fps, seconds=3.0)
    inc, exact = _run(model, chunks)[:-1], _run(model, chunks, incremental=False)[:-1]
    assert len(inc) == 3 and all(w["modalities"] == ["audio", "visual"] for w in inc)
    assert [w["reuse"]["blocks_encoded"] for w in inc] == [4, 1, 1]
    assert all(w["reuse"]["frames_encoded"] == w["face_frames"] > 0 and w["reuse"]["features_reused"] == 0 for w in inc)
    for w, e in zip(inc, exact):   # the visual side is the exact mode's: same crops, the encoder on the window
        assert w["face_frames"] == e["face_frames"]
        assert np.allclose(list(w["heads"]["visual"].values()), list(e["heads"]["visual"].values()), atol=1e-5)


def test_a_face_only_model_streams_incrementally(model, one_thread):
    """A model without an audio encoder: no blocks, each frame encoded once, no audio timing made up."""
    face_only = AudioVisualModel.from_parts(model.fusion, None, model.visual_encoder).eval()
    chunks, _ = _chunks(face_only.processor.fps, seconds=3.0)
    windows = _run(face_only, chunks)[:-1]
    assert len(windows) == 3 and all(w["modalities"] == ["visual"] and "visual" in w["heads"] for w in windows)
    assert all(w["reuse"]["blocks_encoded"] == 0 and w["timings"]["audio_encoder"] == 0.0 for w in windows)
    assert [w["reuse"]["frames_encoded"] for w in windows] == [w["face_frames"] for w in windows[:1]] + [2, 2]


def test_encoders_that_cannot_work_on_blocks_are_refused_in_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    model = vavl.create_model("auxformer", audio_encoder=tiny_whisper_dir(tmp_path / "whisper"),
                              visual_encoder="test_efficientnet", pretrained_encoders=False, id2label=LABELS,
                              hidden_size=16, num_heads=2, num_layers=1)
    with pytest.raises(IncrementalError, match="Whisper's encoder takes a fixed 30 s input"):
        check_incremental(model)
    model.save_pretrained(tmp_path / "model")
    assert main(["stream", "x.mp4", "--model", str(tmp_path / "model"), "--incremental"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--incremental: the audio encoder (whisper)" in err


def test_a_stream_that_fell_behind_encodes_blocks_only_for_the_windows_it_scores(model, one_thread, monkeypatch):
    real = stream_blocks.StreamBlocks._encode_block

    def slow(self, buf, k):   # a block takes longer than a hop: encoding every block as it comes cannot keep up
        time.sleep(0.3)
        real(self, buf, k)

    monkeypatch.setattr(stream_blocks.StreamBlocks, "_encode_block", slow)
    lines = list(stream_windows(array_events(paced_audio(6.0), video=False), model, window=1.0, hop=0.25, stall=30,
                                incremental=True))
    assert lines[-1]["event"] == "end"
    windows = [w for w in lines[:-1] if not w.get("partial")]
    # it catches up instead of encoding the blocks of windows it passes over: windows keep being scored, each whole
    assert len(windows) >= 3 and windows[-1]["start"] >= 4.0 and windows[-1]["skipped_windows"] > 0
    assert all(w["reuse"]["blocks_encoded"] + w["reuse"]["blocks_reused"] == 4 for w in windows)
    assert all(w["modalities"] == ["audio"] and not any("no sound" in n for n in w["notes"]) for w in windows)

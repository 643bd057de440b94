"""`vavl stream` keeps what overlapping windows share (vavl.inference.stream_cache): the lines equal
those of scoring each window alone, the face detector and a per-frame visual encoder see fewer
frames, and an encoder that mixes frames (VideoMAE's windows) is never given features from before."""
import time

import numpy as np
import pytest
from media_utils import face_frames, paced_audio, tone
from tiny_encoders import speech_videomae_model

from vavl.inference.predict import prepare_model
from vavl.inference.stream import stream_windows
from vavl.media.live import array_events

EXACT = ("start", "end", "label", "modalities", "face_frames", "frames", "face", "notes", "partial")


@pytest.fixture(scope="module")
def model(tiny_full_model_dir):
    return prepare_model(tiny_full_model_dir)


def _chunks(fps: float, seconds: float = 4.0):
    """A device-like source: 0.1 s of audio and one frame at a time, a face moving across the frames."""
    frames = face_frames(int(seconds * fps))
    chunks = [("audio", i / 10, tone(0.1)) for i in range(int(seconds * 10))]
    chunks += [("video", j / fps, f) for j, f in enumerate(frames)]
    return sorted(chunks, key=lambda c: c[1])


def _frames_seen(module, counter: list):
    """A forward hook adding the face frames each call of `module` gets."""
    return module.register_forward_hook(lambda m, args, out: counter.append(int(args[1].sum())))


def _lines(model, chunks, reuse: bool):
    seen: list[int] = []
    hook = _frames_seen(model.visual_encoder, seen)
    try:
        lines = list(stream_windows(array_events(iter(chunks)), model, window=2.0, hop=0.5, stall=30, reuse=reuse,
                                    catch_up=False))   # a whole recording at once: every window, however late
    finally:
        hook.remove()
    return lines, sum(seen)


def _assert_same(reused: list[dict], alone: list[dict]) -> None:
    assert len(reused) == len(alone)
    for r, a in zip(reused, alone):
        if "event" in a:
            assert r["event"] == a["event"] and r["windows"] == a["windows"]
            continue
        assert {k: r.get(k) for k in EXACT} == {k: a.get(k) for k in EXACT}
        assert set(r["heads"]) == set(a["heads"]) and set(r["scores"]) == set(a["scores"])
        for head in a["heads"]:
            for name, p in a["heads"][head].items():
                assert abs(r["heads"][head][name] - p) <= 1e-5, (r["start"], head, name)


def test_reused_windows_give_the_lines_of_each_window_scored_alone(model, one_thread):
    chunks = _chunks(model.processor.fps)
    alone, encoded_alone = _lines(model, chunks, reuse=False)
    reused, encoded_reused = _lines(model, chunks, reuse=True)
    windows = reused[:-1]
    assert [(w["start"], w["end"]) for w in windows] == [(s, s + 2.0) for s in (0.0, 0.5, 1.0, 1.5, 2.0)]
    assert all(w["modalities"] == ["audio", "visual"] and w["face_frames"] == 8 for w in windows)
    _assert_same(reused, alone)
    assert "reuse" not in alone[0]
    # the first window works on every frame; each later one detects only the frames new to it
    first, later = windows[0]["reuse"], [w["reuse"] for w in windows[1:]]
    assert first == {"frames_detected": 5, "detections_reused": 0, "frames_encoded": 8, "features_reused": 0}
    assert all(c["frames_detected"] == 2 and c["detections_reused"] == 3 for c in later)
    assert all(c["features_reused"] > 0 and c["frames_encoded"] + c["features_reused"] == 8 for c in later)
    # the encoder was given what the lines say: fewer frames than scoring each window alone
    assert encoded_alone == 8 * len(windows)
    assert encoded_reused == sum(w["reuse"]["frames_encoded"] for w in windows) < encoded_alone


def test_a_window_rate_encoder_is_not_given_features_from_before(tmp_path, one_thread):
    model = speech_videomae_model(tmp_path)
    assert not model.visual_encoder.per_frame
    chunks = _chunks(model.processor.fps, seconds=3.0)
    alone, encoded_alone = _lines(model, chunks, reuse=False)
    reused, encoded_reused = _lines(model, chunks, reuse=True)
    _assert_same(reused, alone)
    windows = reused[:-1]
    assert len(windows) == 3 and all(w["modalities"] == ["audio", "visual"] for w in windows)
    assert all(w["reuse"]["features_reused"] == 0 and w["reuse"]["frames_encoded"] == w["face_frames"] for w in windows)
    assert encoded_reused == encoded_alone == sum(w["face_frames"] for w in windows)
    assert sum(w["reuse"]["detections_reused"] for w in windows) > 0   # the detector's work is still shared


def test_the_caches_hold_only_the_frames_still_in_the_buffer(model, one_thread, monkeypatch):
    import vavl.inference.stream_cache as cache

    kept = []   # before each window: its first frame's time, the earliest frame each cache holds, their sizes

    def window(self, times, _window=cache.WindowReuse.window):
        kept.append((times[0][0], min((k[0] for k in self.detections), default=np.inf),
                     min((k[0] for k in self.features), default=np.inf),
                     len(self.detections), len(self.features)))
        _window(self, times)

    monkeypatch.setattr(cache.WindowReuse, "window", window)
    lines = list(stream_windows(array_events(iter(_chunks(model.processor.fps, seconds=6.0))), model, window=2.0,
                                hop=0.5, stall=30, catch_up=False))
    assert len(lines) == 10 and len(kept) == 9
    fps = model.processor.fps
    assert all(det >= first and feat >= first for first, det, feat, _, _ in kept)   # nothing before the window
    assert all(n_det <= 2 * fps and n_feat <= 2 * fps for *_, n_det, n_feat in kept)
    assert all(n_det > 0 and n_feat > 0 for *_, n_det, n_feat in kept[1:])


def test_a_scorer_that_falls_behind_jumps_to_the_newest_window(model, one_thread, monkeypatch):
    import vavl.inference.stream as stream

    slow, real = 0.5, stream._heads   # every window takes half a second more: two hops of 0.25 s

    took = []   # each window's scoring seconds (the sleep and the model: slower on a loaded machine)

    def heads(*args, **kwargs):
        t0 = time.perf_counter()
        time.sleep(slow)
        out = real(*args, **kwargs)
        took.append(time.perf_counter() - t0)
        return out

    monkeypatch.setattr(stream, "_heads", heads)
    runs = {}
    for catch_up in (False, True):
        lines = list(stream_windows(array_events(paced_audio(3.0), video=False), model, window=1.0, hop=0.25, stall=30,
                                    catch_up=catch_up))
        assert lines[-1]["event"] == "end"
        runs[catch_up] = [w for w in lines[:-1] if not w.get("partial")]   # not a last partial window
    late, caught = runs[False], runs[True]
    # scoring every window, however late: all 9 windows, each later than the one before
    assert [w["start"] for w in late] == [0.25 * k for k in range(9)] and "skipped_windows" not in late[-1]
    assert late[-1]["latency"] > 2.0
    # catching up: windows are passed over and counted; every line scored whole audio, soon after its data came
    starts = [w["start"] for w in caught]
    assert len(caught) < len(late) and any(b - a > 0.25 for a, b in zip(starts, starts[1:]))
    assert caught[-1]["skipped_windows"] == round(caught[-1]["start"] / 0.25) - (len(caught) - 1)
    assert all(w["modalities"] == ["audio"] and w["end"] - w["start"] == 1.0 for w in caught)
    # bounded by one window's scoring and the hops that came in meanwhile, whatever the machine's load;
    # without catching up it grows with every window instead
    assert max(w["latency"] for w in caught) < max(took) + 2 * 0.25 + 0.5 < late[-1]["latency"]

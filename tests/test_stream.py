"""`vavl stream`: a file at --realtime through the command line, a device-like generator whose windows
lose the face or the sound, a pipe that stalls, and sources that end or break off mid-window."""
import json
import os
import threading
import time

import numpy as np
import pytest

from media_utils import face_frames, tone, write_face_clip
from vavl.cli import main
from vavl.inference.predict import prepare_model
from vavl.inference.stream import EXIT_FAILED, EXIT_STALLED, exit_code, stream_windows
from vavl.media.live import array_events, av_events

UNTRAINED = ["the fusion model (its classification heads) is untrained: these scores carry no meaning; "
             "train it (recipes/finetune.py) or load a trained folder",
             "the visual encoder has untrained (random) weights: these scores carry no meaning"]


@pytest.fixture(scope="module")
def model(tiny_full_model_dir):
    return prepare_model(tiny_full_model_dir)


def test_a_file_at_realtime_gives_one_line_per_window_then_the_end(tiny_full_model_dir, tmp_path, one_thread, capsys):
    clip = write_face_clip(tmp_path / "face.mp4", seconds=2.6, fps=10)
    out = tmp_path / "lines.jsonl"
    t0 = time.perf_counter()
    code = main(["stream", str(clip), "--model", tiny_full_model_dir, "--realtime", "--window", "1", "--hop", "1",
                 "--out", str(out)])
    elapsed = time.perf_counter() - t0
    assert code == 0 and elapsed >= 2.4   # played at its own pace: not before the media's time
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    windows, end = lines[:-1], lines[-1]
    assert [(w["start"], w["end"]) for w in windows[:2]] == [(0.0, 1.0), (1.0, 2.0)]
    assert windows[2]["partial"] is True and windows[2]["start"] == 2.0 and 2.5 <= windows[2]["end"] <= 2.8  # ended mid-window (+ one processor frame)
    assert end == {"event": "end", "after": end["after"], "windows": 3, "message": "the source ended",
                   "seconds": end["seconds"]}
    for w in windows:
        assert w["modalities"] == ["audio", "visual"] and w["label"] in ("angry", "happy", "neutral")
        assert set(w["heads"]) == {"fused", "audio", "visual"}
        assert all(abs(sum(h.values()) - 1) < 1e-4 for h in w["heads"].values())
        assert w["latency"] >= 0 and w["face_frames"] > 0 and w["notes"] == UNTRAINED
    assert len({w["face"]["track"] for w in windows}) == 1   # one face, followed across the windows
    assert windows[0]["face"]["box"][0] < windows[1]["face"]["box"][0]   # it moves right in face_frames
    assert "the source ended after" in capsys.readouterr().err


def _device_like(seconds_audio: float, seconds_video: float, fps: float, face_until: float, face_from: float):
    """Chunks as a capture device delivers them: 0.1 s of audio and one frame at a time."""
    frames = face_frames(int(seconds_video * fps))
    blank = np.full_like(frames[0], 60)
    chunks = []
    for i in range(int(seconds_audio * 10)):
        chunks.append(("audio", i / 10, tone(0.1)))
    for j, f in enumerate(frames):
        t = j / fps
        chunks.append(("video", t, f if t < face_until or t >= face_from else blank))
    return sorted(chunks, key=lambda c: c[1])


def test_a_device_like_source_scores_each_window_with_what_it_has_and_says_so(model, one_thread):
    fps = model.processor.fps
    chunks = _device_like(seconds_audio=2.0, seconds_video=3.0, fps=fps, face_until=1.0, face_from=2.0)
    lines = list(stream_windows(array_events(iter(chunks)), model, window=1.0, hop=1.0, stall=30,
                                catch_up=False))   # all at once, as no device delivers: every window, however late
    both, no_face, no_sound, end = lines
    assert both["modalities"] == ["audio", "visual"] and both["face"]["track"] == 0
    assert no_face["modalities"] == ["audio"] and set(no_face["heads"]) == {"audio"} and no_face["face"] is None
    assert any(n.startswith("no face found in") for n in no_face["notes"]) and no_face["label"] is not None
    assert no_sound["partial"] and no_sound["modalities"] == ["visual"] and set(no_sound["heads"]) == {"visual"}
    assert "no audio stream: audio modality missing" in no_sound["notes"]
    assert no_sound["face"]["track"] == 1   # the face came back after a window without it: a new track
    assert end["event"] == "end" and end["windows"] == 3 and exit_code(end) == 0


def test_a_source_that_breaks_off_mid_window_says_so_in_one_line(model, one_thread):
    def broken():
        yield ("audio", 0.0, tone(1.5))
        raise OSError("Connection reset by peer")

    lines = list(stream_windows(array_events(broken(), video=False), model, window=1.0, hop=1.0, stall=30))
    assert lines[0]["modalities"] == ["audio"] and (lines[0]["start"], lines[0]["end"]) == (0.0, 1.0)
    assert lines[1]["partial"] and lines[1]["start"] == 1.0   # the half window that had arrived
    assert lines[2] == {"event": "failed", "after": 1.5, "windows": 2, "seconds": lines[2]["seconds"],
                        "message": "the source broke off: Connection reset by peer"}
    assert exit_code(lines[2]) == EXIT_FAILED


def test_a_pipe_that_stalls_ends_with_one_line_and_its_exit_code(model, tmp_path, one_thread):
    clip = write_face_clip(tmp_path / "face.mkv", seconds=3.0, fps=10)
    data = clip.read_bytes()
    r, w = os.pipe()
    writer = os.fdopen(w, "wb")

    def feed():   # a live stream that delivers its first part and then nothing, without closing
        writer.write(data[: len(data) * 2 // 3])
        writer.flush()

    threading.Thread(target=feed, daemon=True).start()
    p = model.processor
    try:
        events = av_events(f"pipe:{r}", format="matroska", fps=p.fps, sample_rate=p.sample_rate, max_side=p.max_side,
                           options={"analyzeduration": "200000", "probesize": "4096"}, open_timeout=30)
        t0 = time.perf_counter()
        lines = list(stream_windows(events, model, window=1.0, hop=0.5, stall=1.0))
    finally:
        writer.close()   # the reader thread, blocked in read, gets the end of the pipe (and then lets go of it)
    *windows, last = lines
    assert windows and all(w["modalities"] == ["audio", "visual"] for w in windows)
    assert last["event"] == "stalled" and last["message"] == "no data from the source for 1 s"
    assert last["windows"] == len(windows) and 0 < last["after"] < 3.0 and exit_code(last) == EXIT_STALLED
    assert time.perf_counter() - t0 < 60


def test_a_pipe_that_never_delivers_is_one_line_at_opening(tmp_path):
    from vavl.core.errors import MediaError

    r, w = os.pipe()
    try:
        with pytest.raises(MediaError, match="nothing to read within 0.5 s of opening"):
            av_events(f"pipe:{r}", format="matroska", open_timeout=0.5)
    finally:
        os.close(w)


def test_bad_arguments_and_unopenable_sources_are_one_line_exit_2(tiny_full_model_dir, tmp_path, capsys):
    assert main(["stream", str(tmp_path / "missing.mp4"), "--model", tiny_full_model_dir]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vavl stream: error: {tmp_path / 'missing.mp4'}: cannot open (") and len(err.splitlines()) == 1
    assert main(["stream", "x.mp4", "--model", tiny_full_model_dir, "--window", "1", "--hop", "2"]) == 2
    assert "--hop 2 is longer than --window 1" in capsys.readouterr().err
    assert main(["stream", "x.mp4", "--model", tiny_full_model_dir, "--option", "novalue"]) == 2
    assert "--option 'novalue': give KEY=VALUE" in capsys.readouterr().err


def test_the_reader_queue_is_bounded_live_sources_drop_their_oldest_chunks_files_wait():
    from vavl.media.live import Reader

    chunks = [("audio", i / 10, tone(0.1)) for i in range(20)]
    live = Reader(iter(chunks), live=True, size=4)
    deadline = time.time() + 30
    while live.dropped < 16 and time.time() < deadline:   # nobody reads: all but the newest 4 are dropped
        time.sleep(0.01)
    got = [live.get(timeout=5) for _ in range(5)]
    assert live.dropped == 16 and [g[1] for g in got[:4]] == [c[1] for c in chunks[-4:]] and got[4] == ("end",)
    waiting = Reader(iter(chunks), live=False, size=4)
    time.sleep(0.2)
    assert waiting.queue.qsize() == 4 and waiting.dropped == 0   # it waits for the consumer
    got = [waiting.get(timeout=5) for _ in range(21)]
    assert [g[1] for g in got[:20]] == [c[1] for c in chunks] and got[20] == ("end",)


def test_a_live_reader_never_waits_for_a_full_queue():
    from vavl.media.live import Reader

    chunks = [("audio", i / 100, tone(0.01)) for i in range(3000)]   # 30 s of 10 ms chunks, nobody reading
    live = Reader(iter(chunks), live=True, size=4)
    deadline = time.time() + 20   # a reader that waited ~0.1 s per dropped chunk would need ~300 s
    while live.dropped < 2996 and time.time() < deadline:
        time.sleep(0.05)
    assert live.dropped == 2996 and [live.get(timeout=5)[1] for _ in range(4)] == [c[1] for c in chunks[-4:]]
    assert live.get(timeout=5) == ("end",)


def test_windows_skip_ahead_over_a_gap_in_a_live_source(model, one_thread):
    chunks = [("audio", i / 10, tone(0.1)) for i in list(range(10)) + list(range(40, 55))]   # 1 s, 3 s lost, 1.5 s
    lines = list(stream_windows(array_events(iter(chunks), video=False), model, window=1.0, hop=0.5, stall=30,
                                catch_up=False))
    assert [(w["start"], w["end"]) for w in lines[:-1]] == [(0.0, 1.0), (4.0, 5.0), (4.5, 5.5)]
    assert all(w["modalities"] == ["audio"] for w in lines[:-1]) and lines[-1]["event"] == "end"


def test_windows_nothing_arrived_for_are_skipped_and_counted_not_scored_empty(model, one_thread):
    fps = model.processor.fps
    frames = face_frames(int(6.5 * fps))
    chunks = [("audio", i / 10, tone(0.1)) for i in list(range(10)) + list(range(50, 65))]   # 0-1 s, 5-6.5 s
    chunks += [("video", j / fps, f) for j, f in enumerate(frames) if j / fps < 1 or j / fps >= 5]
    lines = list(stream_windows(array_events(iter(sorted(chunks, key=lambda c: c[1]))), model, window=1.0, hop=0.5,
                                stall=30, catch_up=False))
    *windows, end = lines
    assert [(w["start"], w["end"]) for w in windows] == [(0.0, 1.0), (0.5, 1.5), (5.0, 6.0), (5.5, 6.5)]
    assert all(w["modalities"] for w in windows)   # no line for a window without media
    assert "skipped_windows" not in windows[1] and [w["skipped_windows"] for w in windows[2:]] == [8, 8]   # starts 1.0 to 4.5
    assert end["event"] == "end" and end["windows"] == 4


def test_reconnect_opens_the_source_again_after_it_breaks_off(tiny_full_model_dir, tmp_path, monkeypatch, one_thread):
    import vavl.cli.stream as command

    def broken():
        yield ("audio", 0.0, tone(1.0))
        raise OSError("Connection reset by peer")

    opened = []

    def fake_open(args, processor):
        opened.append(args.source)
        good = [("audio", 0.0, tone(1.0))]
        return array_events(broken() if len(opened) == 1 else iter(good), video=False)

    monkeypatch.setattr(command, "open_events", fake_open)
    out = tmp_path / "lines.jsonl"
    args = ["stream", "rtsp://camera", "--model", tiny_full_model_dir, "--window", "1", "--hop", "1", "--out", str(out)]
    assert main(args + ["--reconnect", "1"]) == 0 and len(opened) == 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [line.get("event") for line in lines] == [None, "failed", None, "end"]
    assert "connection" not in lines[1] and lines[2]["connection"] == lines[3]["connection"] == 1
    opened.clear()
    assert main(args) == EXIT_FAILED and len(opened) == 1   # without --reconnect: one try, exit 5

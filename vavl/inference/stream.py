"""Streaming prediction: sliding windows over a live source, one JSON line per window.

    for line in stream_windows(av_events("clip.mp4", realtime=True, ...), model, window=2.0, hop=0.5):
        print(json.dumps(line))

Each window of `window` seconds (every `hop` seconds) goes through `predict_clip`, the function
`vavl predict`, its timeline and the transformers pipeline run: the processor (faces), the encoders
and the fusion model on that window alone, with the same result; what overlapping windows share
(face detections of a frame, a per-frame visual encoder's features of a crop) is kept while the
frames are in the buffer and not computed again (vavl.inference.stream_cache; a line's `reuse`
counts it), and the fusion model runs once per window (no timeline). A line holds the span, the
label, the probabilities of each head the window allows (fused: both modalities; audio; visual),
the modalities used, the face (a track id carried across windows while the face box overlaps the
previous window's, and its box), the notes of predict (no face, silent audio, ...) and the latency:
seconds from the moment the window's last chunk came from the source (into the reader's queue) to
the line. Windows for which nothing arrived (a gap, chunks dropped by a consumer that fell behind)
are skipped, not scored; `skipped_windows` and `dropped_chunks` count them (from the first one on).
A window without a face or without sound is scored with what it has and says so; one with neither
gets a line with no prediction.

Incremental (`incremental=True`, `vavl stream --incremental`, opt-in): each audio block of `hop`
seconds goes through the audio encoder once and each frame's face is tracked along the stream, cropped
and encoded once; windows are assembled from them (vavl.inference.stream_blocks). Faster, but a
window's answer differs from scoring it alone (the speech encoder saw `hop`-second blocks, not the
window; face boxes come from tracking along the stream): docs/predict.md has the measured difference.
Lines add "incremental": true. AST / Whisper audio encoders and HiCMAE are refused (IncrementalError).

Falling behind (`catch_up`, live sources): when the window about to be scored became complete more
than a hop ago (its last chunk waited in the reader's queue) and the source has already given a
later complete window, the windows in between are passed over (counted in `skipped_windows`) and
the newest complete one is scored, so latency stays about one window's compute plus one hop and
each window keeps its whole audio. A file read as fast as possible (live=False) never skips.

Memory is bounded: only the current window's audio and frames (and the caches of their
detections and features) are kept, and the reader's queue is bounded (a live reader drops its
oldest chunks when full: the last resort). The source ending, stalling (nothing for `stall`
seconds) or failing ends the generator with an event line ({"event": "end" | "stalled" | "failed",
...}); `exit_code(event)` maps it to the command's exit status (EXIT_CODES).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import numpy as np

from ..core.errors import MediaError
from ..media.arrays import ArrayClip
from ..media.live import END, FAILED, Reader
from .predict import predict_clip
from .scores import head_scores
from .stream_blocks import StreamBlocks
from .stream_cache import WindowReuse

GAP = 0.25   # seconds of audio missing between chunks (dropped, or a source that skipped) that restart the audio
EXIT_END, EXIT_STALLED, EXIT_FAILED = 0, 4, 5   # `vavl stream`'s exit status per event (its --help lists them)


def exit_code(event: dict[str, Any]) -> int:
    return {"end": EXIT_END, "stalled": EXIT_STALLED, "failed": EXIT_FAILED}[event["event"]]


class _Faces:
    """A face track id carried across windows: the same while the window's first box overlaps the
    previous window's last box (IoU >= 0.3), a new one otherwise."""

    def __init__(self):
        self.last, self.next_id, self.current = None, 0, None

    def __call__(self, boxes) -> dict[str, Any] | None:
        if boxes is None or not len(boxes) or np.isnan(boxes).all():
            self.last = None
            return None
        valid = boxes[~np.isnan(boxes).any(1)]
        first, last = valid[0], valid[-1]
        if self.last is None or _iou(self.last, first) < 0.3:
            self.current, self.next_id = self.next_id, self.next_id + 1
        self.last = last
        return {"track": self.current, "box": [round(float(x), 1) for x in np.median(valid, 0)]}


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class _Buffer:
    """The audio samples and video frames not yet behind the next window's start."""

    def __init__(self, sample_rate: int, fps: float):
        self.sr, self.fps = sample_rate, fps
        self.audio_start: float | None = None
        self.audio = np.zeros(0, np.float32)
        self.frames: list[tuple[float, np.ndarray]] = []
        self.arrived = 0.0   # wall clock of the latest chunk

    def add(self, kind: str, t: float, data: np.ndarray, arrived: float | None = None) -> None:
        self.arrived = time.perf_counter() if arrived is None else arrived
        if kind == "audio":
            if self.audio_start is None or t > self.audio_start + len(self.audio) / self.sr + GAP:
                self.audio_start, self.audio = t, np.zeros(0, np.float32)   # after a gap (dropped chunks): anew
            self.audio = np.concatenate([self.audio, data])
        else:
            self.frames.append((t, data))

    def until(self, streams: dict[str, bool]) -> float:
        """Media time up to which every stream the source carries has arrived."""
        ends = []
        if streams.get("audio"):
            ends.append(self.audio_start + len(self.audio) / self.sr if self.audio_start is not None else 0.0)
        if streams.get("video"):
            ends.append(self.frames[-1][0] + 1.0 / self.fps if self.frames else 0.0)
        return min(ends) if ends else 0.0

    def first(self) -> float | None:
        """The earliest media time still held."""
        starts = ([self.audio_start] if self.audio_start is not None and len(self.audio) else [])
        starts += [self.frames[0][0]] if self.frames else []
        return min(starts) if starts else None

    def end(self) -> float:
        ends = [self.audio_start + len(self.audio) / self.sr] if self.audio_start is not None else []
        return max(ends + ([self.frames[-1][0] + 1.0 / self.fps] if self.frames else []) + [0.0])

    def clip(self, start: float, end: float) -> ArrayClip | None:
        wave = frames = None
        if self.audio_start is not None:
            a = max(int(round((start - self.audio_start) * self.sr)), 0)
            b = max(int(round((end - self.audio_start) * self.sr)), 0)
            wave = self.audio[a:b] if min(b, len(self.audio)) > a else None
        picked = [f for t, f in self.frames if start <= t < end]
        if picked:
            frames = np.stack(picked)
        if wave is None and frames is None:
            return None
        return ArrayClip(audio=wave, sample_rate=self.sr if wave is not None else None, frames=frames,
                         fps=self.fps if frames is not None else None, name=f"window {start:.2f}-{end:.2f} s")

    def frame_keys(self, start: float, end: float) -> list[tuple[float, int]]:
        """(media time, id of the frame array) of each frame `clip(start, end)` holds, in order: the
        same key means the same frame while it is held (a source whose times repeat or go back
        gives new keys)."""
        return [(t, id(f)) for t, f in self.frames if start <= t < end]

    def next_from(self, t: float) -> float | None:
        """The earliest media time >= t that is held (audio or a frame); None when nothing is."""
        times = [f for f, _ in self.frames if f >= t][:1]
        if self.audio_start is not None and self.audio_start + len(self.audio) / self.sr > t:
            times.append(max(self.audio_start, t))
        return min(times) if times else None

    def drop_before(self, t: float) -> None:
        if self.audio_start is not None and t > self.audio_start:
            cut = min(int(round((t - self.audio_start) * self.sr)), len(self.audio))
            self.audio = self.audio[cut:].copy()
            self.audio_start += cut / self.sr
        self.frames = [(ft, f) for ft, f in self.frames if ft >= t]


def _heads(model, clip, device: str, reuse: WindowReuse | None = None) -> dict[str, Any]:
    """predict_clip on one window, plus the probabilities of every head the window allows and its face boxes.
    A model scored by views (HiCMAE) has one head, fed zeros for a missing modality: its scores come
    under the name predict's record gives it ("fused" with both modalities, else the one present)."""
    import torch

    extras: dict[str, Any] = {}
    with torch.inference_mode():   # no autograd graph: scoring only (and less memory per window)
        r = predict_clip(clip, model, device, window=1e9, step=1e9, extras=extras, reuse=reuse, with_timeline=False)
    outs, heads = extras.get("outputs") or [None], {}
    out = outs[0]
    if getattr(model, "takes_views", False):
        if r["scores"] is not None:
            heads[r["head"]] = dict(r["scores"])
    elif out is not None and r["scores"] is not None:
        heads = head_scores(model, out)
    r["heads"] = heads
    boxes = [b for b in extras.get("face_boxes") or [] if b is not None]
    r["face_boxes"] = np.concatenate(boxes) if boxes else None
    return r


def _ready(buf: _Buffer, streams: dict[str, bool], window: float) -> float:
    """Media time every stream has reached; a stream more than two windows behind the others (a
    camera without a microphone's data, say) is not waited for: its part of the window is missing."""
    ready, latest = buf.until(streams), buf.end()
    return latest if latest - ready > 2 * window else ready


def stream_windows(events: Iterator[tuple], model, window: float = 2.0, hop: float = 0.5, device: str = "cpu",
                   live: bool = True, stall: float = 10.0, queue_size: int = 256,
                   on_reader: Callable[[Reader], None] | None = None, reuse: bool = True,
                   catch_up: bool = True, incremental: bool = False) -> Iterator[dict[str, Any]]:
    """Window lines, then one event line (end / stalled / failed). `events`: from vavl.media.live.
    reuse: keep face detections and per-frame visual features across overlapping windows
    (vavl.inference.stream_cache; same lines, less work); False scores each window from scratch.
    catch_up (live sources only): a scorer that fell behind jumps to the newest complete window
    (module docstring); False scores every window, however late. incremental: each audio block of
    `hop` seconds and each frame worked on once, windows assembled from them (vavl.inference.stream_blocks:
    faster, and a window's answer differs from scoring it alone); IncrementalError (a ConfigError) for
    encoders that cannot."""
    if not (window > 0 and 0 < hop <= window):
        raise MediaError(f"--window {window} --hop {hop}: give window > 0 and 0 < hop <= window")
    p = model.processor
    blocks = StreamBlocks(model, hop, device) if incremental else None   # checks the encoders before any reading
    reader = Reader(events, live=live, size=queue_size)
    if on_reader:
        on_reader(reader)
    buf, faces = _Buffer(p.sample_rate, p.fps), _Faces()
    kept = WindowReuse() if reuse and not incremental and not getattr(model, "takes_views", False) else None   # HiCMAE: views, no reuse
    streams: dict[str, bool] = {}
    start, count, skipped, t_open = 0.0, 0, 0, time.perf_counter()

    def score(a: float, b: float, partial: bool = False) -> dict[str, Any]:
        clip = buf.clip(a, b)
        line: dict[str, Any] = {"start": round(a, 3), "end": round(b, 3)}
        if partial:
            line["partial"] = True
        if incremental:
            line["incremental"] = True
        if clip is None:
            line.update(label=None, scores=None, heads={}, modalities=[], face=None,
                        notes=["no audio and no video arrived for this window: no prediction"])
        else:
            if kept is not None:
                kept.window(buf.frame_keys(a, b))
            try:
                r = blocks.score(buf, a, b) if blocks is not None else _heads(model, clip, device, kept)
            except MediaError as e:   # e.g. an audio-only model and a window with frames only
                r = {"label": None, "scores": None, "heads": {}, "modalities": [], "face_frames": 0, "frames": 0,
                     "notes": [str(e)], "timings": {}}
            line.update(label=r["label"], scores=r["scores"], heads=r["heads"], modalities=r["modalities"],
                        face_frames=r.get("face_frames", 0), frames=r.get("frames", 0),
                        face=faces(r.get("face_boxes")), notes=r["notes"], timings=r.get("timings", {}))
            if kept is not None or blocks is not None:
                line["reuse"] = r["reuse"] if blocks is not None else kept.counts()
        line["latency"] = round(time.perf_counter() - buf.arrived, 3)
        if reader.dropped:
            line["dropped_chunks"] = reader.dropped
        if skipped:
            line["skipped_windows"] = skipped
        return line

    def forget(t: float) -> None:   # media before t: dropped from the buffer and the caches
        buf.drop_before(t)
        if kept is not None:
            kept.forget_before(t)
        if blocks is not None:
            blocks.forget_before(t)

    def skip_to(t: float) -> None:
        """Pass over the windows before the last one that starts at or before `t` (whole hops), counted."""
        nonlocal start, skipped
        hops = int(np.floor((t - start) / hop + 1e-9))
        start, skipped = start + hops * hop, skipped + hops
        forget(start)

    def late() -> bool:   # the chunk just taken waited in the reader's queue more than a hop
        return time.perf_counter() - buf.arrived > hop

    def behind(a: float) -> bool:
        """The window starting at `a` became complete more than a hop ago (its last chunk waited in
        the reader's queue) and the source has already given a later complete window."""
        return late() and reader.latest is not None and reader.latest - (a + window) >= hop - 1e-9

    try:
        while True:
            event = reader.get(timeout=stall)
            if event is None:
                yield {"event": "stalled", "after": round(buf.end(), 3), "windows": count,
                       "message": f"no data from the source for {stall:g} s"}
                return
            if event[0] == "streams":
                streams = event[1]
                if not any(streams.values()):
                    yield {"event": "failed", "windows": 0, "message": "the source has neither audio nor video"}
                    return
                continue
            if event[0] in (END, FAILED):
                covered = start - hop + window if count else start   # media time the windows so far reached
                if buf.end() - covered >= hop / 2:   # the rest, if it is at least half a hop: one partial window
                    yield score(start, buf.end(), partial=True)
                    count += 1
                ended = {"event": "end", "after": round(buf.end(), 3), "windows": count,
                         "message": "the source ended", "seconds": round(time.perf_counter() - t_open, 3)}
                if event[0] == FAILED:
                    ended.update(event="failed", message=f"the source broke off: {event[1]}")
                yield ended
                return
            kind, t, data = event
            buf.add(kind, float(t), data, arrived=reader.arrived)
            if blocks is not None and kind == "audio" and not (catch_up and live and late()):
                blocks.audio_arrived(buf, start)   # each block encoded once whole (when behind: once a window needs it)
            while _ready(buf, streams, window) >= start + window:
                held = buf.next_from(start)
                if held is None:   # everything held is behind: wait for more
                    break
                if held >= start + window:   # nothing arrived for this window (chunks dropped, a gap): skip ahead
                    skip_to(held)
                    continue
                if catch_up and live and behind(start):   # jump to the newest complete window
                    skip_to(reader.latest - window)
                    continue
                yield score(start, start + window)
                count += 1
                start += hop
                forget(start)
    finally:
        reader.stop()

"""Live sources for `vavl stream`: a camera / microphone (PyAV device inputs), a URL, a pipe, a file
played at its own pace or as fast as it decodes, or any Python iterable of chunks.

Every source yields events, with times in seconds from the start of the source:
    ("streams", {"audio": bool, "video": bool})   first: what the source carries
    ("audio", t, samples)     float32 mono at the processor's sample rate, contiguous
    ("video", t, frame)       (h, w, 3) uint8 RGB, longer side <= max_side, at most `fps` frames per second

    events = av_events("clip.mp4", fps=5, sample_rate=16000, max_side=640, realtime=True)
    events = av_events("/dev/video0", format="v4l2", ...)       # a camera; "default" with format="pulse" / "alsa"
    events = av_events("rtsp://host/stream", options={"rtsp_transport": "tcp"}, ...)

A reader thread (`Reader`) moves events into a bounded queue so that a source that stalls is seen
(no event for `stall` seconds) and memory stays bounded: a live source whose consumer falls behind
loses its oldest chunks (counted in `dropped`), a file or pipe read as fast as possible waits.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from typing import Any, Iterable, Iterator

import av
import numpy as np

from ..core.errors import MediaError
from .decode import scaled_size

END, FAILED = "end", "failed"


def av_events(source, format: str | None = None, options: dict[str, str] | None = None, fps: float = 5.0,
              sample_rate: int = 16000, max_side: int | None = 640, audio: bool = True, video: bool = True,
              realtime: bool = False, open_timeout: float = 10.0) -> Iterator[tuple]:
    """Events of one PyAV input (a path, URL, device name with `format`, or a readable binary file
    object). The input is opened now (MediaError when it cannot be); it is read as the events are taken."""
    box: dict[str, Any] = {}

    def opening():   # in a thread: a device or pipe that delivers nothing would block av.open for ever
        try:
            box["container"] = av.open(source, format=format, options=options or {}, timeout=(open_timeout, None))
        except Exception as e:
            box["error"] = e

    thread = threading.Thread(target=opening, daemon=True, name="vavl-stream-open")
    thread.start()
    thread.join(open_timeout)
    if thread.is_alive():
        raise MediaError(f"{describe_source(source)}: nothing to read within {open_timeout:g} s of opening; check that "
                         "the device, URL or pipe delivers data")
    if "error" in box:
        e = box["error"]
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MediaError(f"{describe_source(source)}: cannot open ({reason}); check the path, URL or device "
                         "(and --format for devices)") from None
    container = box["container"]
    return _events(container, fps, sample_rate, max_side, audio, video, realtime)


def _events(container, fps, sample_rate, max_side, audio, video, realtime) -> Iterator[tuple]:
    try:
        a = container.streams.audio[0] if audio and container.streams.audio else None
        v = container.streams.video[0] if video and container.streams.video else None
        yield ("streams", {"audio": a is not None, "video": v is not None})
        if a is None and v is None:
            return
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate) if a is not None else None
        origin, wall0, next_frame, size = None, time.monotonic(), 0.0, None
        for packet in container.demux([s for s in (a, v) if s is not None]):
            for frame in packet.decode():
                if frame.time is None:
                    continue
                origin = frame.time if origin is None else origin
                t = float(frame.time - origin)
                if realtime:   # a file at its own pace: nothing is handed on before its time
                    ahead = t - (time.monotonic() - wall0)
                    if ahead > 0:
                        time.sleep(ahead)
                if isinstance(frame, av.AudioFrame):
                    for f in resampler.resample(frame):
                        yield ("audio", t, np.ascontiguousarray(f.to_ndarray().reshape(-1), dtype=np.float32))
                elif t + 1e-6 >= next_frame:
                    size = size or scaled_size(frame.width, frame.height, max_side)
                    yield ("video", t, frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray())
                    next_frame = (math.floor(t * fps + 1e-6) + 1) / fps
    finally:
        container.close()


def array_events(chunks: Iterable[tuple], audio: bool = True, video: bool = True) -> Iterator[tuple]:
    """Events from a Python iterable of ("audio", t, samples) / ("video", t, frame) chunks (already at the
    processor's rate and size): a generator standing in for a device, or an application's own capture."""
    yield ("streams", {"audio": audio, "video": video})
    yield from chunks


class Reader:
    """Runs an event iterator in a daemon thread into a bounded queue. `get(timeout)` -> an event,
    ("end",) when the source ended, ("failed", message) when reading raised, or None after `timeout`
    seconds without anything (a stall); `arrived`: when that event came from the source (time.perf_counter);
    `latest`: the media time of the newest chunk the source has given (None before the first), taken or not.
    live=True: when the queue is full the oldest event is dropped at once (the source never waits)."""

    def __init__(self, events: Iterator[tuple], live: bool, size: int = 256):
        self.events, self.live = events, live
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.dropped = 0
        self.latest: float | None = None
        self.arrived = time.perf_counter()   # when the event `get` returned last came from the source
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="vavl-stream-reader")
        self.thread.start()

    def _put(self, event: tuple) -> None:
        item = (event, time.perf_counter())
        if self.live and event[0] not in (END, FAILED):   # never wait: room is made by dropping the oldest chunk
            while not self.stopped.is_set():
                try:
                    self.queue.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
            return
        while not self.stopped.is_set():   # a file read as fast as possible, and the end: wait for room
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def _run(self) -> None:
        try:
            for event in self.events:
                if self.stopped.is_set():
                    return
                if event[0] in ("audio", "video"):
                    self.latest = float(event[1]) if self.latest is None else max(self.latest, float(event[1]))
                self._put(event)
            self._put((END,))
        except Exception as e:   # the source broke off: the consumer reports it in one line
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            self._put((FAILED, reason))

    def get(self, timeout: float) -> tuple | None:
        try:
            event, self.arrived = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return event

    def stop(self) -> None:
        self.stopped.set()


def describe_source(source: Any) -> str:
    return str(getattr(source, "name", source))


def merge_events(*sources: Iterator[tuple]) -> Iterator[tuple]:
    """Several inputs (a camera and a microphone) as one: their "streams" events joined first, then the
    chunks as they come; it ends when every input has ended, and fails when one fails."""
    q: queue.Queue = queue.Queue(maxsize=256)

    def pump(events):
        try:
            for e in events:
                q.put(e)
            q.put((END,))
        except Exception as e:
            q.put((FAILED, str(e).splitlines()[0] if str(e) else type(e).__name__))

    for events in sources:
        threading.Thread(target=pump, args=(events,), daemon=True).start()
    streams, pending, running = {"audio": False, "video": False}, [], len(sources)
    declared = 0
    while running:
        e = q.get()
        if e[0] == "streams":
            streams = {k: streams[k] or bool(e[1].get(k)) for k in streams}
            declared += 1
            if declared == len(sources):
                yield ("streams", streams)
                yield from pending
                pending = []
        elif e[0] == END:
            running -= 1
        elif e[0] == FAILED:
            raise MediaError(e[1])
        elif declared < len(sources):
            pending.append(e)
        else:
            yield e

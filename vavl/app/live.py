"""The live tab's camera and microphone: frames and sound sent by the browser, scored in windows.

    feed = LiveFeed(model)                      # starts a thread running vavl.inference.stream
    feed.frame(rgb)                             # each webcam frame as it arrives (h, w, 3) uint8
    feed.sound(sample_rate, samples)            # each microphone chunk as it arrives
    feed.lines                                  # the window lines so far (as `vavl stream` prints them)
    feed.close()

The chunks become the events of `vavl.media.live.array_events` (frames at the processor's fps and
size, sound mono at its rate), timed by one clock started with the feed: a frame at its arrival, the
sound continuously from the arrival of its first chunk (timed anew from its arrival when the
browser lost some, so that a gap stays a gap). `stream_windows` reads them like any live
source (bounded queue, oldest chunks dropped when the model falls behind).
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np

from ..media.decode import scaled_size

MAX_LINES = 200   # the lines kept for the page (the newest)
DRIFT = 0.2   # seconds: sound further than this from its arrival time is timed anew (the browser lost some)


class LiveFeed:
    def __init__(self, model, device: str = "cpu", window: float = 2.0, hop: float = 0.5, stall: float = 10.0):
        from ..inference.stream import stream_windows
        from ..media.live import array_events

        self.model, self.processor = model, model.processor
        self.t0 = time.monotonic()
        self.chunks: queue.Queue = queue.Queue(maxsize=512)
        self.next_frame, self.sound_start, self.samples = 0.0, None, 0
        self.lines: list[dict[str, Any]] = []
        self.ended: dict[str, Any] | None = None   # the event line: the camera and microphone stopped sending
        self.closed = False
        windows = stream_windows(array_events(self._chunks()), model, window=window, hop=hop, device=device,
                                 live=True, stall=stall)
        self.thread = threading.Thread(target=self._score, args=(windows,), daemon=True, name="vavl-app-live")
        self.thread.start()

    def _chunks(self):
        while not self.closed:
            try:
                item = self.chunks.get(timeout=0.5)
            except queue.Empty:
                continue
            yield item

    def _score(self, windows) -> None:
        for line in windows:
            if "event" in line:
                self.ended, self.closed = line, True
            else:
                self.lines = [*self.lines[-(MAX_LINES - 1):], line]

    def _put(self, item: tuple) -> None:
        try:
            self.chunks.put_nowait(item)
        except queue.Full:   # the reader is behind: this chunk is lost, as a live source's would be
            pass

    def now(self) -> float:
        return time.monotonic() - self.t0

    def frame(self, rgb: np.ndarray) -> None:
        """A webcam frame, taken at the processor's fps (the others are skipped) and scaled to its max side."""
        t = self.now()
        if t + 1e-6 < self.next_frame or rgb is None:
            return
        self.next_frame = t + 1.0 / self.processor.fps
        frame = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
        h, w = frame.shape[:2]
        size = scaled_size(w, h, self.processor.max_side)
        if size != (w, h):
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))
        self._put(("video", t, frame))

    def sound(self, sample_rate: int, samples: np.ndarray) -> None:
        """A microphone chunk (int or float samples, (n,) or (n, channels)) -> mono float at the processor's rate."""
        import torch

        from ..media.spectral import resample

        x = np.asarray(samples)
        if x.size == 0:
            return
        wave = x.astype(np.float32)
        if np.issubdtype(x.dtype, np.integer):   # int16 from the browser -> [-1, 1)
            wave /= np.iinfo(x.dtype).max + 1
        if wave.ndim == 2:
            wave = wave.mean(1)
        rate = self.processor.sample_rate
        wave = resample(torch.from_numpy(wave), int(sample_rate), rate).numpy()
        arrived = max(self.now() - len(wave) / rate, 0.0)   # where the chunk starts if it ends now
        if self.sound_start is None or abs(self.sound_start + self.samples / rate - arrived) > DRIFT:
            self.sound_start, self.samples = arrived, 0   # the first chunk, or sound was lost: timed anew
        t = self.sound_start + self.samples / rate
        self.samples += len(wave)
        self._put(("audio", t, np.ascontiguousarray(wave, dtype=np.float32)))

    def close(self) -> None:
        self.closed = True

"""Clips given as arrays instead of files: a waveform with its sampling rate and / or video frames
with their frame rate, turned into the same `DecodedClip` that decoding a file gives (mono audio
at the processor's rate, frames at its fps and size), so everything after decoding is shared.

    source = ArrayClip(audio=wave, sample_rate=44100, frames=video, fps=30)
    source.info.duration; source.window(0.0, 30.0, fps=5, sample_rate=16000, max_side=640)
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
import torch

from ..core.errors import MediaError
from .decode import DecodedClip, MediaInfo, scaled_size
from .spectral import resample


@dataclass
class ArrayClip:
    """audio: (n,) or (channels, n) samples in [-1, 1] at `sample_rate`; frames: (t, h, w, 3) uint8
    RGB at `fps`. Either may be None (an audio-only or a silent clip)."""

    audio: np.ndarray | None = None
    sample_rate: int | None = None
    frames: np.ndarray | None = None
    fps: float | None = None
    name: str = "<arrays>"

    def __post_init__(self):
        if self.audio is None and self.frames is None:
            raise MediaError(f"{self.name}: give a waveform ({{'audio': ..., 'sampling_rate': ...}}) or frames "
                             "({'frames': ..., 'fps': ...}) or both")
        if self.audio is not None:
            audio = np.asarray(self.audio, dtype=np.float32)
            if audio.ndim == 2:
                audio = audio.mean(0)
            if audio.ndim != 1 or not self.sample_rate or self.sample_rate <= 0:
                raise MediaError(f"{self.name}: audio must be (n,) or (channels, n) samples with a positive sampling_rate "
                                 f"(got shape {np.shape(self.audio)}, sampling_rate={self.sample_rate})")
            self.audio = audio
        if self.frames is not None:
            frames = np.asarray(self.frames)
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not self.fps or self.fps <= 0:
                raise MediaError(f"{self.name}: frames must be (t, h, w, 3) uint8 RGB with a positive fps "
                                 f"(got shape {frames.shape}, dtype {frames.dtype}, fps={self.fps})")
            self.frames = frames

    @property
    def info(self) -> MediaInfo:
        durations = [len(self.audio) / self.sample_rate] if self.audio is not None else []
        durations += [len(self.frames) / self.fps] if self.frames is not None else []
        h, w = self.frames.shape[1:3] if self.frames is not None else (None, None)
        return MediaInfo(self.name, max(durations), self.audio is not None, self.frames is not None, w, h)

    def window(self, start: float, end: float | None, fps: float, sample_rate: int, max_side: int | None,
               audio: bool = True, video: bool = True) -> DecodedClip:
        """The part between `start` and `end` seconds, resampled as `decode` resamples a file."""
        duration = self.info.duration
        end = duration if end is None else min(end, duration)
        wave, nonfinite, peak = None, 0, 0.0
        if audio and self.audio is not None:
            part = self.audio[int(start * self.sample_rate): int(end * self.sample_rate)]
            finite = np.isfinite(part)
            nonfinite = int((~finite).sum())
            part = np.where(finite, part, 0.0).astype(np.float32)
            peak = float(np.abs(part).max()) if len(part) else 0.0
            if self.sample_rate != sample_rate and len(part):
                part = resample(torch.from_numpy(part), self.sample_rate, sample_rate).numpy()
            wave = np.clip(part, -1.0, 1.0)
        frames = times = None
        if video and self.frames is not None:
            # the grid k / fps within the window and within the frames (the audio may run longer), each
            # time showing the frame on screen then (the last one that started), as decoding does
            times = np.arange(np.ceil(start * fps - 1e-6) / fps, min(end, len(self.frames) / self.fps) - 1e-9, 1.0 / fps)
            index = np.minimum(np.floor(times * self.fps + 1e-6).astype(int), len(self.frames) - 1)
            frames = np.stack([_scaled(self.frames[i], max_side) for i in index]) if len(index) else None
            times = times if frames is not None else None
        return DecodedClip(self.name, wave, sample_rate, frames, times, fps if frames is not None else None,
                           duration=end - start, start=start, decoded=end - start, nonfinite=nonfinite, peak=peak)


def _scaled(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """One RGB frame with its longer side at most `max_side`, scaled by FFmpeg as decoding does."""
    h, w = frame.shape[:2]
    size = scaled_size(w, h, max_side)
    if size == (w, h):
        return frame
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(
        width=size[0], height=size[1], format="rgb24").to_ndarray()

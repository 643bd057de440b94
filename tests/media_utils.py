"""Synthetic clips for tests: a real face (skimage's astronaut portrait) moving over a plain
background, written with vavl.media.write_clip."""
from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
from PIL import Image

from vavl.media.write import write_clip


@lru_cache(maxsize=1)
def _head() -> np.ndarray:
    """The astronaut's head and shoulders, (200, 170, 3) uint8."""
    from skimage.data import astronaut

    return astronaut()[10:210, 140:310]


def head(height: int, flip: bool = False) -> np.ndarray:
    img = Image.fromarray(_head()).resize((round(height * 170 / 200), height), Image.BILINEAR)
    arr = np.asarray(img)
    return arr[:, ::-1] if flip else arr


def face_frames(n: int, height: int = 120, width: int = 160, face: int = 80, second_face: int = 0,
                moving: bool = True) -> np.ndarray:
    """(n, height, width, 3) uint8: a grey background with one head of `face` px moving left to
    right (or still), plus an optional smaller second head on the right."""
    frames = np.full((n, height, width, 3), 90, np.uint8)
    frames[..., 2] = 120
    big = head(face)
    small = head(second_face, flip=True) if second_face else None
    span = max((width // 2 if small is not None else width) - big.shape[1], 0)
    for i in range(n):
        x = int(round(span * i / max(n - 1, 1))) if moving else 4
        y = max((height - face) // 2, 0)
        frames[i, y:y + big.shape[0], x:x + big.shape[1]] = big[: height - y, : width - x]
        if small is not None:
            sx, sy = width - small.shape[1] - 2, 4
            frames[i, sy:sy + small.shape[0], sx:sx + small.shape[1]] = small
    return frames


def tone(seconds: float, sample_rate: int = 16000, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    """(n,) or (channels, n) float32 sine with a slow amplitude wobble (speech-like envelope)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return wave if channels == 1 else np.stack([wave * (0.5 + 0.5 * c / channels) for c in range(channels)])


def paced_audio(seconds: float, step: float = 0.1):
    """A device-like microphone: `step` s of audio events at a time, each handed over when its time has come."""
    t0 = time.perf_counter()
    for i in range(int(round(seconds / step))):
        ahead = i * step + step - (time.perf_counter() - t0)
        if ahead > 0:
            time.sleep(ahead)
        yield ("audio", i * step, tone(step))


def write_face_clip(path, seconds: float = 1.0, fps: float = 10.0, audio: bool = True, sample_rate: int = 16000,
                    channels: int = 1, **frame_kwargs):
    """A moving-face clip with a tone; returns the path."""
    frames = face_frames(max(int(round(seconds * fps)), 1), **frame_kwargs)
    wave = tone(seconds, sample_rate, channels) if audio else None
    return write_clip(path, frames, fps=fps, audio=wave, sample_rate=sample_rate)

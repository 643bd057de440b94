"""Writing clips with PyAV: frames and/or audio into .mp4 .mkv .avi .flv .wav .mp3 (synthetic corpora, tests).

    write_clip("a.mp4", frames, fps=25, audio=wave, sample_rate=16000)   # frames (t, h, w, 3) uint8
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# container suffix -> (video codec, audio codec) used when none is given
DEFAULT_CODECS = {
    ".mp4": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".avi": ("mpeg4", "mp3"),
    ".flv": ("flv", "mp3"),
    ".wav": (None, "pcm_s16le"),
    ".mp3": (None, "mp3"),
}
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
# FLV stores MP3 at 44.1/22.05/11.025 kHz only; other containers keep the given rate
FLV_RATES = (44100, 22050, 11025)


def write_clip(
    path: str | os.PathLike,
    frames: np.ndarray | None = None,
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    frame_times: np.ndarray | None = None,
) -> Path:
    """Write a media file. frames: (t, h, w, 3) uint8 RGB or None; audio: (n,) or (c, n) float32
    in [-1, 1] with c in {1, 2, 6}, or None. frame_times (t,) seconds gives a variable frame rate.
    Odd frame sizes are cropped by one pixel (4:2:0 video needs even sides)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DEFAULT_CODECS:
        raise ValueError(f"{path}: unsupported suffix; use one of {sorted(DEFAULT_CODECS)}")
    default_video, default_audio = DEFAULT_CODECS[suffix]
    if frames is not None and default_video is None:
        raise ValueError(f"{path}: {suffix} holds audio only; pass frames=None")
    if frames is None and audio is None:
        raise ValueError(f"{path}: give frames, audio or both")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        vstream = astream = None
        if frames is not None:
            frames = _even(np.asarray(frames, dtype=np.uint8))
            vstream = container.add_stream(video_codec or default_video, rate=Fraction(fps).limit_denominator(1001))
            vstream.width, vstream.height = frames.shape[2], frames.shape[1]
            vstream.pix_fmt = "yuv420p"
            if frame_times is not None:
                vstream.codec_context.time_base = Fraction(1, 1000)
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))  # (c, n)
            if audio.shape[0] not in LAYOUTS:
                raise ValueError(f"{path}: audio must be (n,) or (c, n) with c in {sorted(LAYOUTS)}, got {audio.shape}")
            codec = audio_codec or default_audio
            out_rate = sample_rate
            if suffix == ".flv" and codec == "mp3" and sample_rate not in FLV_RATES:
                out_rate = 44100
            astream = container.add_stream(codec, rate=out_rate, layout=LAYOUTS[audio.shape[0]])
        if vstream is not None:
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                if frame_times is not None:
                    frame.pts, frame.time_base = int(round(float(frame_times[i]) * 1000)), Fraction(1, 1000)
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream is not None:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.clip(audio, -1, 1)), format="fltp",
                                               layout=LAYOUTS[audio.shape[0]])
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
            container.mux(astream.encode(frame))   # the codec context resamples and splits into codec frames
            container.mux(astream.encode(None))
    return path


def _even(frames: np.ndarray) -> np.ndarray:
    """(t, h, w, 3) with h and w cut down to even numbers."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (t, h, w, 3) uint8, got {frames.shape}")
    t, h, w, _ = frames.shape
    return np.ascontiguousarray(frames[:, : h - h % 2, : w - w % 2])

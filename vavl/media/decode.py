"""Decoding clips with PyAV: video frames on a fixed-rate grid, audio as mono float32 at 16 kHz.

    clip = decode("a.mp4", fps=25)          # clip.frames (t, h, w, 3) uint8, clip.audio (n,) float32
    for part in decode_windows("long.mp4", window=30): ...   # bounded memory on long clips

Times are seconds from the start of the file. Frames are sampled on the grid k / fps: each grid
point shows the latest decoded frame at or before it, so variable-frame-rate input comes out at a
constant rate, turned upright when the stream carries rotation metadata (phone videos). Audio of
any rate / layout (stereo, 5.1) is mixed down and resampled by FFmpeg; NaN / infinite samples are
set to 0 and samples beyond full scale clipped (counted in `clip.nonfinite`, `clip.peak`).
`clip.decoded` is how many seconds actually decoded: less than `clip.duration` when a file is
truncated or corrupt. `decode_notes(...)` words all of this for the user.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..core.errors import MediaError

MEDIA_SUFFIXES = (".mp4", ".flv", ".avi", ".mkv", ".mov", ".webm", ".wav", ".mp3", ".m4a", ".flac", ".ogg")
MAX_BAD_PACKETS = 50  # corrupt packets tolerated once something decoded


@dataclass
class DecodedClip:
    path: str
    audio: np.ndarray | None        # (n,) float32 mono at sample_rate; None when the file has no audio stream
    sample_rate: int
    frames: np.ndarray | None       # (t, h, w, 3) uint8 RGB sampled at `fps`; None when no video stream
    frame_times: np.ndarray | None  # (t,) float seconds of each frame
    fps: float | None
    duration: float                 # seconds covered (the whole file as its header says, or the window)
    start: float = 0.0              # seconds: where the decoded window starts
    decoded: float | None = None    # seconds that actually decoded (< duration: truncated or corrupt)
    nonfinite: int = 0              # audio samples that were NaN / inf, set to 0
    peak: float = 0.0               # largest |sample| before clipping to [-1, 1]
    gaps: float = 0.0               # seconds of video with no frame (timestamp gaps longer than a frame is held)


@dataclass
class MediaInfo:
    path: str
    duration: float
    has_audio: bool
    has_video: bool
    width: int | None = None
    height: int | None = None


def _open(path) -> av.container.InputContainer:
    path = str(path)
    if os.path.islink(path) and not os.path.exists(path):
        raise MediaError(f"{path}: broken symbolic link (to {os.readlink(path)}); fix or remove the link")
    if not os.path.exists(path):
        raise MediaError(f"{path}: no such file; check the path")
    if os.path.isdir(path):
        raise MediaError(f"{path}: is a folder, not a media file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: not readable; check its permissions")
    if os.path.getsize(path) == 0:
        raise MediaError(f"{path}: empty file; re-export or re-download it")
    try:
        container = av.open(path, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise MediaError(f"{path}: not a readable media file ({_reason(e)}); give a video or audio file "
                         f"such as {', '.join(MEDIA_SUFFIXES[:6])}") from None
    if not container.streams.video and not container.streams.audio:
        container.close()
        raise MediaError(f"{path}: has neither an audio nor a video stream")
    return container


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e).split(":")[0] or type(e).__name__


def probe(path) -> MediaInfo:
    """Streams and duration from the container header (cheap; no decoding)."""
    with _open(path) as c:
        v = c.streams.video[0] if c.streams.video else None
        duration = _header_duration(c, path)
        return MediaInfo(str(path), duration, bool(c.streams.audio), v is not None,
                         v.codec_context.width if v else None, v.codec_context.height if v else None)


def _header_duration(c, path) -> float:
    if c.duration is not None:
        seconds = c.duration / av.time_base
    else:
        durations = [float(s.duration * s.time_base) for s in c.streams if s.duration is not None and s.time_base]
        seconds = max(durations, default=0.0)
    return max(seconds, _wav_declared_seconds(path))


def _wav_declared_seconds(path) -> float:
    """Length a WAV file's RIFF header declares (FFmpeg reports what the file size allows, so a
    truncated WAV would otherwise look complete); 0.0 when not a WAV or not declared."""
    try:
        with open(path, "rb") as f:
            if f.read(12)[8:] != b"WAVE":
                return 0.0
            byte_rate = 0
            for _ in range(64):   # chunks before "data": fmt, LIST, fact, ...
                head = f.read(8)
                if len(head) < 8:
                    return 0.0
                kind, size = head[:4], struct.unpack("<I", head[4:])[0]
                if kind == b"fmt ":
                    byte_rate = struct.unpack("<I", f.read(16)[8:12])[0]
                    f.seek(size - 16 + size % 2, 1)
                elif kind == b"data":
                    return size / byte_rate if byte_rate and 0 < size < 0x7FFFFFFF else 0.0   # else: a streaming placeholder
                else:
                    f.seek(size + size % 2, 1)
    except (OSError, struct.error):
        pass
    return 0.0


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled so the longer side is at most max_side, both even (what H.264 and the
    decoders here need); unchanged when already small enough or max_side is None."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


HOLD_SECONDS, MAX_HOLD_SECONDS = 1.0, 60.0


class _FrameSampler:
    """Turns decoded video frames (any timing) into frames on the grid k / fps within [start, end).
    A frame stands for the grid times until the next frame, but for at most its declared duration
    (at least HOLD_SECONDS, at most MAX_HOLD_SECONDS): grid times in a longer timestamp gap get no
    frame (counted in `gaps`), so a file's timestamps cannot make frames, and memory, grow beyond
    what its packets hold."""

    def __init__(self, fps: float, start: float, end: float | None, max_side: int | None):
        self.fps, self.end, self.max_side = fps, end, max_side
        self.next_k = math.ceil(start * fps - 1e-6)
        self.prev = None            # (time, av.VideoFrame, held until)
        self.images: list[np.ndarray] = []
        self.times: list[float] = []
        self.step = 1.0 / fps
        self.gaps = 0.0

    @staticmethod
    def _hold(t: float, duration: float | None) -> float:
        return t + min(max(duration or 0.0, HOLD_SECONDS), MAX_HOLD_SECONDS)

    def _skip_to(self, t: float) -> None:
        """Grid times before t that no frame stands for: left out."""
        k = math.ceil(t * self.fps - 1e-6)
        if self.end is not None:
            k = min(k, math.ceil(self.end * self.fps - 1e-6))
        if k > self.next_k:
            self.gaps += (k - self.next_k) / self.fps
            self.next_k = k

    def _rgb(self, frame) -> np.ndarray:
        """The frame as (h, w, 3) RGB, scaled, and turned the way the stream says it is shown."""
        w, h = scaled_size(frame.width, frame.height, self.max_side)
        image = frame.to_ndarray(width=w, height=h, format="rgb24")
        turns = round((frame.rotation or 0) / 90) % 4   # FFmpeg's angle: counter-clockwise
        return np.ascontiguousarray(np.rot90(image, turns)) if turns else image

    def _emit_until(self, t_limit: float) -> None:
        """Emit the held frame for every grid time < t_limit (and < end, and < where its hold ends)."""
        if self.prev is None:
            return
        t_limit = min(t_limit, self.prev[2])
        image = None
        while True:
            t = self.next_k / self.fps
            if t >= t_limit - 1e-9 or (self.end is not None and t >= self.end - 1e-9):
                break
            if image is None:
                image = self._rgb(self.prev[1])
            self.images.append(image)
            self.times.append(t)
            self.next_k += 1

    def add(self, t: float, frame, duration: float | None = None) -> bool:
        """Feed one decoded frame (`duration`: what its stream declares); returns False once frames are past `end`."""
        if self.prev is None:
            # the first frame also covers grid points before it (a clip that starts late), within its hold
            self._skip_to(t - (self._hold(t, duration) - t))
            self.prev = (min(t, self.next_k / self.fps), frame, self._hold(t, duration))
        else:
            self._emit_until(t)
            self._skip_to(t)
            self.prev = (t, frame, self._hold(t, duration))
        return self.end is None or t < self.end

    def finish(self, last_duration: float) -> None:
        if self.prev is not None:
            self._emit_until(self.prev[0] + max(last_duration, 1e-6))


def decode(path, fps: float = 25.0, sample_rate: int = 16000, max_side: int | None = None,
           start: float = 0.0, end: float | None = None, audio: bool = True, video: bool = True) -> DecodedClip:
    """Frames at `fps` (scaled so the longer side is at most `max_side`) and mono audio at
    `sample_rate` between `start` and `end` seconds. Raises MediaError for unreadable files."""
    if fps <= 0:
        raise ValueError(f"fps={fps} must be > 0")
    if end is not None and end <= start:
        raise ValueError(f"end={end} must be greater than start={start}")
    path = str(path)
    with _open(path) as c:
        vs = c.streams.video[0] if (video and c.streams.video) else None
        as_ = c.streams.audio[0] if (audio and c.streams.audio) else None
        t0 = c.start_time / av.time_base if c.start_time is not None else 0.0
        if vs is not None:
            vs.thread_type = "AUTO"
        if start > 0:
            try:
                c.seek(int((start + t0) * av.time_base), backward=True, any_frame=False)
            except av.error.FFmpegError:
                pass  # unseekable: decode from the beginning and drop what comes before `start`
        sampler = _FrameSampler(fps, start, end, max_side) if vs is not None else None
        resampler = _Downmixer(sample_rate) if as_ is not None else None
        chunks: list[np.ndarray] = []
        audio_t0 = None
        video_done, audio_done = vs is None, as_ is None
        last_frame_duration = 1.0 / fps
        decoded_any, bad = False, 0
        streams = [s for s in (vs, as_) if s is not None]
        try:
            for packet in c.demux(streams):
                if packet.stream is vs and video_done or packet.stream is as_ and audio_done:
                    if video_done and audio_done:
                        break
                    continue
                try:
                    frames = packet.decode()
                except (av.error.FFmpegError, ValueError) as e:
                    bad += 1
                    if not decoded_any and bad > 5 or bad > MAX_BAD_PACKETS:
                        raise MediaError(f"{path}: corrupt or truncated ({_reason(e)}); re-export the file") from None
                    continue
                for frame in frames:
                    decoded_any = True
                    if packet.stream is vs:
                        t = _time(frame, vs) - t0
                        if frame.duration and frame.time_base:
                            last_frame_duration = float(frame.duration * frame.time_base)
                        elif vs.average_rate:
                            last_frame_duration = 1.0 / float(vs.average_rate)
                        if not sampler.add(t, frame, last_frame_duration):
                            video_done = True
                    else:
                        if audio_t0 is None:
                            audio_t0 = _time(frame, as_) - t0
                        chunks += resampler(frame)
                        if end is not None and audio_t0 + sum(map(len, chunks)) / sample_rate >= end:
                            audio_done = True
        except av.error.FFmpegError as e:
            if not decoded_any:
                raise MediaError(f"{path}: corrupt or truncated ({_reason(e)}); re-export the file") from None
        if as_ is not None and not audio_done:
            chunks += resampler(None)
        if sampler is not None:
            sampler.finish(last_frame_duration)

        header = _header_duration(c, path)
    if not decoded_any:
        raise MediaError(f"{path}: no audio or video could be decoded (empty, truncated or corrupt); re-export the file")

    wave, nonfinite, peak = None, 0, 0.0
    if as_ is not None and chunks:
        wave = _trim_audio(np.concatenate(chunks).astype(np.float32, copy=False), audio_t0 or 0.0, start, end, sample_rate)
        wave, nonfinite, peak = _repair(wave)
    frames = frame_times = None
    if sampler is not None and sampler.images:
        frames = np.stack(sampler.images)
        frame_times = np.asarray(sampler.times, dtype=np.float64)
    content_end = max(
        start + (len(wave) / sample_rate if wave is not None else 0.0),
        (sampler.prev[0] + last_frame_duration) if frame_times is not None else 0.0,
    )
    stop = max(header, content_end)
    if end is not None:
        stop = min(end, stop) if header > 0 else end
    duration = max(stop - start, 0.0)
    return DecodedClip(path=path, audio=wave, sample_rate=sample_rate, frames=frames, frame_times=frame_times,
                       fps=float(fps) if vs is not None else None, duration=duration, start=start,
                       decoded=min(max(content_end - start, 0.0), duration), nonfinite=nonfinite, peak=peak,
                       gaps=sampler.gaps if sampler is not None else 0.0)


def _repair(wave: np.ndarray) -> tuple[np.ndarray, int, float]:
    """NaN / inf samples -> 0 and samples beyond full scale -> clipped, before any encoder sees them."""
    bad = ~np.isfinite(wave)
    if bad.any():
        wave = np.where(bad, np.float32(0), wave)
    peak = float(np.abs(wave).max(initial=0.0))
    if peak > 1.0:
        wave = np.clip(wave, -1.0, 1.0)
    return wave, int(bad.sum()), peak


def decode_notes(decoded: float, duration: float, nonfinite: int = 0, samples: int = 0, peak: float = 0.0,
                 gaps: float = 0.0) -> list[str]:
    """What the user should know about a decode (one clip, or several windows added up): a file
    that decoded short of what its header promises, repaired audio samples, and video timestamp gaps."""
    notes = []
    if gaps >= 1.0:
        notes.append(f"{gaps:.1f} s of video fall in timestamp gaps with no frame (a frame stands for at most "
                     f"{HOLD_SECONDS:g} s past its timestamp, or its declared duration up to {MAX_HOLD_SECONDS:g} s): "
                     "no face there")
    if duration > 0 and decoded < duration - max(0.25, 0.05 * duration):
        notes.append(f"decoded {decoded:.2f} s of {duration:.2f} s: the file is truncated or corrupt, the rest is left out")
    if nonfinite:
        notes.append(f"{nonfinite} of {samples} audio samples were NaN or infinite: set to 0")
    if peak > 2.0:   # beyond a codec's overshoot: values that are not audio in [-1, 1]
        notes.append(f"audio samples up to {peak:.3g}, beyond full scale: clipped to [-1, 1]")
    return notes


class _Downmixer:
    """Any rate / layout -> mono float32 at `rate`: FFmpeg resamples each channel, then the
    channels are averaged (LFE left out), so a full-scale stereo or 5.1 signal stays in [-1, 1]."""

    def __init__(self, rate: int):
        self.rate, self.resampler, self.layout = rate, None, None

    def __call__(self, frame) -> list[np.ndarray]:
        if frame is not None and frame.layout.name != self.layout:
            out = self._flush()  # a layout change mid-stream: start a new resampler
            self.layout = frame.layout.name
            self.resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=self.rate)
            self.keep = [i for i, ch in enumerate(frame.layout.channels) if ch.name != "LFE"] or [0]
            return out + self._mix(self.resampler.resample(frame))
        if frame is None:
            return self._flush()
        return self._mix(self.resampler.resample(frame))

    def _flush(self) -> list[np.ndarray]:
        if self.resampler is None:
            return []
        try:
            return self._mix(self.resampler.resample(None))
        except (av.error.FFmpegError, ValueError):
            return []

    def _mix(self, frames) -> list[np.ndarray]:
        return [f.to_ndarray()[self.keep].mean(0, dtype=np.float32) for f in frames]  # (c, n) -> (n,)


def _time(frame, stream) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    if frame.time is not None:
        return float(frame.time)
    return 0.0


def _trim_audio(wave: np.ndarray, t_first: float, start: float, end: float | None, sr: int) -> np.ndarray:
    """Samples of [start, end) given that wave[0] plays at t_first (zero-padded if it starts late)."""
    offset = round((start - t_first) * sr)
    if offset < 0:
        wave = np.concatenate([np.zeros(-offset, np.float32), wave])
        offset = 0
    wave = wave[offset:]
    if end is not None:
        wave = wave[: max(round((end - start) * sr), 0)]
    return np.ascontiguousarray(wave)


def decode_windows(path, window: float = 30.0, **kwargs):
    """Yield DecodedClip parts of at most `window` seconds covering the file, one at a time: the
    windows that hold packets (vavl.media.extent), not every window the header's duration spans."""
    from .extent import content_windows

    starts = content_windows(path, window, audio=kwargs.get("audio", True), video=kwargs.get("video", True)) or [0.0]
    for i, start in enumerate(starts):
        end = None if i == len(starts) - 1 else start + window
        yield decode(path, start=start, end=end, **kwargs)


def is_media_file(path) -> bool:
    return Path(path).suffix.lower() in MEDIA_SUFFIXES

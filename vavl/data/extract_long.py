"""A long clip for `vavl extract`, a window at a time: memory bounded by the window and the
features, not by the file's length.

    feats = LongClip(record, processor, window=60.0).encode(encode_one, audio_rate)   # (audio, visual, meta)

A file longer than `window` seconds (its header says so, or its content reaches the window when
decoded) is decoded, face-processed and encoded in windows [k w, (k + 1) w), only those that hold
packets (vavl.media.extent). Audio is decoded with CONTEXT seconds more on each side and the
encoder's rows whose times fall inside the window are kept, so an encoder whose rows see less than
CONTEXT of audio on either side (mfcc, fbank, zcr-energy: 25 ms) gives the rows of the whole file
where the decoder restarts cleanly at a seek (16 kHz AAC, WAV; a 44.1 kHz MP3: within 0.04%,
docs/extract.md). Frames are those of the whole file's grid; the face track is chosen in each
window (a long recording may change speaker), so a frame-local face encoder gives the whole file's
rows where the window finds the same face box. Encoders with global context (wav2vec2, whisper,
VideoMAE windows) see one window at a time: their features differ from a whole-file pass by design;
the window is in cache.json, so one cache never mixes the two.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import torch

from ..core.errors import MediaError
from ..media.decode import DecodedClip, decode_notes, probe
from ..media.extent import content_windows

WINDOW_SECONDS = 60.0   # `vavl extract`'s default window
CONTEXT = 1.0           # seconds of audio decoded on each side of a window


def is_long(record: dict, processor, want_audio: bool, want_video: bool, window: float | None) -> bool:
    """What the header of a record's file(s) says: longer than one window."""
    if not window:
        return False
    return any(probe(p).duration > window for p in _paths(record, want_audio, want_video).values() if p)


def reaches(parts, window: float | None) -> bool:
    """A clip decoded up to `window` s whose content reaches that end: the file may go on (its
    header said it was shorter), so it is extracted in windows."""
    return bool(window) and any(c is not None and c.start + (c.decoded or 0.0) >= window - 1e-3 for c in parts)


def unbounded_duration(clip: DecodedClip, window: float) -> DecodedClip:
    """A short clip decoded with end=window as decoding it without an end describes it: a file
    whose header gives no duration gets the decoded length, not the window's."""
    if clip.duration >= window - 1e-9 and (clip.decoded or 0.0) < window - 1e-3 and probe(clip.path).duration <= 0:
        return dataclasses.replace(clip, duration=clip.decoded)
    return clip


def _paths(record: dict, want_audio: bool, want_video: bool) -> dict[str, str | None]:
    return {"audio": record.get("audio") if want_audio else None, "video": record.get("video") if want_video else None}


class LongClip:
    """One manifest record, extracted window by window."""

    def __init__(self, record: dict, processor, want_audio: bool, want_video: bool, window: float,
                 context: float = CONTEXT):
        if not window > 0:
            raise ValueError(f"window={window} must be > 0")
        self.record, self.processor, self.window, self.context = record, processor, float(window), float(context)
        self.paths = _paths(record, want_audio, want_video)

    def windows(self) -> list[float]:
        a, v = self.paths["audio"], self.paths["video"]
        if a and a == v:
            return content_windows(a, self.window) or [0.0]
        starts = set()
        for path, audio in ((a, True), (v, False)):
            if path:
                starts.update(content_windows(path, self.window, audio=audio, video=not audio))
        return sorted(starts) or [0.0]

    def _decode(self, start: float, last: bool) -> tuple[DecodedClip, list[DecodedClip]]:
        """The window [start, start + window) with CONTEXT s of audio each side; frames of the window only."""
        p, a, v = self.processor, self.paths["audio"], self.paths["video"]
        lo, hi = max(start - self.context, 0.0), None if last else start + self.window + self.context
        if a and a == v:
            parts = [p.decode(a, start=lo, end=hi)]
        else:
            parts = [p.decode(a, start=lo, end=hi, video=False) if a else None,
                     p.decode(v, start=start, end=None if last else start + self.window, audio=False) if v else None]
        av_, vv = (parts[0], parts[0]) if len(parts) == 1 else parts
        frames = times = None
        if vv is not None and vv.frames is not None:
            keep = (vv.frame_times >= start - 1e-9) & (last or vv.frame_times < start + self.window - 1e-9)
            frames, times = vv.frames[keep], vv.frame_times[keep]
        clip = DecodedClip(path=str(v or a), audio=av_.audio if av_ is not None else None, sample_rate=p.sample_rate,
                           frames=frames, frame_times=times, fps=vv.fps if vv is not None else None,
                           duration=max(c.duration for c in parts if c is not None), start=lo)
        return clip, [c for c in parts if c is not None]

    def encode(self, encode_one: Callable[[dict], tuple], audio_rate: float | None) -> tuple[Any, Any, dict[str, Any]]:
        """encode_one(processor inputs) -> (audio (t, d) or None, visual (t, d) or None) for one window.
        audio_rate: the audio encoder's rows per second. Returns the whole clip's (audio, visual, meta)."""
        starts = self.windows()
        audio, visual = [], []
        frames = face_frames = samples = nonfinite = 0
        peak = gaps = decoded = reached = 0.0
        for i, start in enumerate(starts):
            last = i + 1 == len(starts)
            try:
                clip, parts = self._decode(start, last)
            except MediaError:
                if i == 0:
                    raise
                break   # the rest of the file does not decode: the "decoded x of y s" note says so
            inputs = self.processor.batch([clip])[0]
            a, v = encode_one(inputs)
            if a is not None:
                rate = audio_rate or a.shape[0] / max(len(clip.audio) / clip.sample_rate, 1e-3)
                k0 = round((start - clip.start) * rate)
                k1 = None if last else round((start + self.window - clip.start) * rate)
                audio.append(a[k0:k1])
            if v is not None:
                visual.append(v)
            frames += inputs["frames"]
            face_frames += inputs["face_frames"]
            for c in parts:
                samples += len(c.audio) if c.audio is not None else 0
                nonfinite, peak, gaps = nonfinite + c.nonfinite, max(peak, c.peak), gaps + c.gaps
            ends = [c.start + (c.decoded or 0.0) for c in parts]
            reached = max(reached, *ends)
            decoded += max(min(max(ends), math.inf if last else start + self.window) - start, 0.0)
            del clip, parts, inputs
        declared = max(probe(p).duration for p in set(self.paths.values()) if p)
        duration = max(declared, reached)
        notes = decode_notes(decoded, duration, nonfinite, samples, peak, gaps)
        if len(starts) > 1:
            notes.append(f"extracted in {len(starts)} windows of {self.window:g} s (audio with {self.context:g} s of "
                         "context each side)")
        meta = {"duration": float(duration), "frames": int(frames), "face_frames": int(face_frames), "notes": notes,
                "window": self.window, "windows": len(starts)}
        return (torch.cat(audio) if audio else None), (torch.cat(visual) if visual else None), meta

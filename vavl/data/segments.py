"""Clips cut from longer recordings: a record whose `video_segment` is {"start", "end", "side"}
(seconds in its `video` file, and the half of the frame its speaker sits in: "left", "right" or
"full") gets a clip of its own, that stretch and that half, written to `clips_dir/<id>.mp4`.

IEMOCAP needs this: one video per dialog shows both actors side by side. The clip then holds one
face, so the face tracker, which follows the largest face of a clip, follows the speaker's.
Clips already written are kept (a stopped prepare resumes); each is written to a temporary name
and renamed, so a killed run leaves no half clip.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..core.errors import DataError, MediaError
from ..media import decode, write_clip

SIDES = ("left", "right", "full")


def crop_side(frames, side: str):
    """(t, h, w, 3) -> the left or right half (or all of it)."""
    if side not in SIDES:
        raise DataError(f"video_segment side {side!r} is not one of {SIDES}")
    half = frames.shape[2] // 2
    return frames[:, :, :half] if side == "left" else frames[:, :, half:] if side == "right" else frames


def cut_segments(records: list[dict[str, Any]], clips_dir: str | os.PathLike, fps: float = 30.0,
                 log=None) -> dict[str, list[str]]:
    """Replace each segment record's `video` with its cut clip (the source and segment stay in
    `video_source`). A segment that decodes to no frame loses its video, and is reported."""
    log = log or sys.stderr
    clips_dir = Path(clips_dir)
    written, kept, empty = [], [], []
    for rec in records:
        segment = rec.pop("video_segment", None)
        if segment is None or not rec.get("video"):
            continue
        source = rec["video"]
        start, end = float(segment["start"]), float(segment["end"])
        if end <= start:
            raise DataError(f"clip {rec['id']}: segment end {end} is not after its start {start}")
        target = clips_dir / f"{rec['id']}.mp4"
        rec["video_source"] = {"file": source, **segment}
        if target.is_file():
            kept.append(rec["id"])
            rec["video"] = str(target.resolve())
            continue
        try:
            frames = decode(source, fps=fps, start=start, end=end, audio=False).frames
        except MediaError as e:
            raise DataError(f"{source}: cannot cut clip {rec['id']} from it ({e})") from None
        if frames is None or not len(frames):
            empty.append(rec["id"])
            rec["video"] = None
            continue
        clips_dir.mkdir(parents=True, exist_ok=True)
        tmp = clips_dir / f".{rec['id']}.tmp.mp4"
        write_clip(tmp, crop_side(frames, segment.get("side", "full")), fps=fps)
        os.replace(tmp, target)
        rec["video"] = str(target.resolve())
        written.append(rec["id"])
    if written or kept:
        print(f"vavl prepare: cut {len(written)} video clips into {clips_dir}"
              + (f" ({len(kept)} already there, kept)" if kept else ""), file=log)
    if empty:
        print(f"vavl prepare: {len(empty)} segments lie outside their video (kept without video), "
              f"e.g. {', '.join(empty[:5])}", file=log)
    return {"written": written, "kept": kept, "empty": empty}

"""Where a file's content really is, read off its packets (demuxed, not decoded; ~1 s for a
2-hour file), so a long file's windows come from what it holds, not from what its header says.

    starts = content_windows("long.mp4", window=30)   # [0.0, 30.0, ...]: windows that hold a packet

A 1 kB file whose header (or one timestamp) claims 10 hours has packets in one or two windows:
those are the windows decoded. A window is listed when a packet of a chosen stream starts or
lasts in it; a packet without a timestamp counts where the one before it was.
"""
from __future__ import annotations

import math

import av

from .decode import _open

MAX_PACKET_SECONDS = 60.0   # a packet stands for at most this long, whatever its declared duration


def content_windows(path, window: float, audio: bool = True, video: bool = True) -> list[float]:
    """Start times (multiples of `window`, seconds from the file's start) of the windows that hold
    at least one packet of the chosen streams, in order. Raises MediaError for unreadable files."""
    if not window > 0:
        raise ValueError(f"window={window} must be > 0")
    hit: set[int] = set()
    with _open(path) as c:
        streams = [s for s in ((c.streams.audio[0] if audio and c.streams.audio else None),
                               (c.streams.video[0] if video and c.streams.video else None)) if s is not None]
        if not streams:
            return []
        t0 = c.start_time / av.time_base if c.start_time is not None else 0.0
        last = 0.0
        try:
            for packet in c.demux(streams):
                if packet.size == 0:   # flush packets carry no content
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                base = packet.time_base or packet.stream.time_base
                if ts is not None and base:
                    last = max(float(ts * base) - t0, 0.0)
                span = min(float(packet.duration * base), MAX_PACKET_SECONDS) if packet.duration and base else 0.0
                first, end = math.floor(last / window), math.floor(max(last + span - 1e-6, last) / window)
                hit.update(range(first, end + 1))
        except av.error.FFmpegError:
            pass   # a damaged tail: the windows found so far
    return [k * window for k in sorted(hit)]

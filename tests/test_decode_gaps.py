"""A file's timestamps cannot make decoding materialise frames without limit: a frame stands for
at most a bounded time past its timestamp; grid times in a longer gap get no frame, with a note."""
import numpy as np

import vavl.media.decode as media_decode
from vavl.media import write_clip
from vavl.media.decode import decode, decode_notes

HOLD_SECONDS = getattr(media_decode, "HOLD_SECONDS", 1.0)


def frames(n, value=60):
    out = np.full((n, 32, 32, 3), value, np.uint8)
    out[:, :, :, 0] = np.arange(n)[:, None, None] * 40   # each frame recognisable by its red channel
    return out


def test_a_long_timestamp_gap_holds_no_frames(tmp_path):
    times = np.array([0.0, 0.1, 0.2, 600.0, 600.1])           # ten minutes of nothing between two bursts
    path = write_clip(tmp_path / "gap.mkv", frames(5), fps=10, frame_times=times)
    clip = decode(path, fps=5)
    assert len(clip.frames) <= 2 * 5 * (HOLD_SECONDS + 0.5)    # what the five real frames stand for, not 3000
    assert clip.frame_times.max() >= 600.0                      # the frames after the gap are there
    assert clip.gaps > 590
    notes = decode_notes(clip.decoded, clip.duration, gaps=clip.gaps)
    assert any("timestamp gaps with no frame" in n for n in notes)


def test_ordinary_variable_frame_rates_are_unchanged(tmp_path):
    times = np.array([0.0, 0.05, 0.3, 0.35, 0.7, 0.95])        # gaps under a second: every grid time has a frame
    path = write_clip(tmp_path / "vfr.mkv", frames(6), fps=10, frame_times=times)
    clip = decode(path, fps=10)
    assert np.allclose(clip.frame_times, np.arange(len(clip.frames)) / 10) and clip.gaps == 0.0

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


def test_predict_decodes_only_the_windows_a_10_hour_header_really_fills(tmp_path, tiny_full_model_dir, monkeypatch):
    """A 1.4 kB file whose timestamps claim 10 hours: two windows hold packets, so two are decoded
    (not the ~1200 the duration spans), with a note; the timeline covers only those."""
    from vavl.inference.predict import load_model
    from vavl.media.decode import probe
    import vavl

    path = write_clip(tmp_path / "ten_hours.mkv", frames(4), fps=10, frame_times=np.array([0.0, 0.1, 0.2, 36000.0]),
                      audio=None)
    assert path.stat().st_size < 4000 and probe(path).duration > 35999
    model = load_model(tiny_full_model_dir)
    calls = []
    decode = model.processor.decode
    monkeypatch.setattr(model.processor, "decode", lambda p, **kw: calls.append(kw.get("start")) or decode(p, **kw))
    r = vavl.predict(path, model=model, window=30.0, step=10.0)
    assert calls == [0.0, 36000.0]
    assert any("hold no packets" in n and "1199" in n for n in r["notes"])
    assert len(r["timeline"]) <= 6

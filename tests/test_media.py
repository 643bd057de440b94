"""Decoding with PyAV: containers, audio layouts and rates, frame grids, windows, bad files."""
import numpy as np
import pytest

from media_utils import face_frames, tone
from vavl.core.errors import MediaError
from vavl.media import decode, decode_windows, probe, write_clip


def _numbered_frames(n, h=32, w=48):
    """Frame i is a flat grey of 20 * i + 10, so a decoded frame tells which source frame it was."""
    return np.stack([np.full((h, w, 3), 20 * i + 10, np.uint8) for i in range(n)])


def _which(frames):
    return np.round((frames.reshape(len(frames), -1).mean(1) - 10) / 20).astype(int)


@pytest.mark.parametrize("suffix,rate,channels", [(".mp4", 48000, 2), (".flv", 44100, 1), (".avi", 44100, 2),
                                                  (".mkv", 48000, 6)])
def test_containers_give_16k_mono_audio_and_frames_on_the_fps_grid(tmp_path, suffix, rate, channels):
    path = write_clip(tmp_path / f"a{suffix}", face_frames(10, 64, 80), fps=10, audio=tone(1.0, rate, channels),
                      sample_rate=rate)
    clip = decode(path, fps=5)
    assert clip.sample_rate == 16000 and clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert abs(len(clip.audio) - 16000) < 1600  # 1 s, give or take codec padding
    assert 0.05 < np.abs(clip.audio).max() <= 1.0  # downmixed, not summed past full scale
    assert clip.frames.shape[1:] == (64, 80, 3) and clip.frames.dtype == np.uint8
    assert np.allclose(np.diff(clip.frame_times), 0.2) and clip.frame_times[0] == 0.0
    assert len(clip.frames) in (5, 6) and abs(clip.duration - 1.0) < 0.15  # codecs may pad a frame


def test_audio_only_and_video_only_files(tmp_path):
    wav = decode(write_clip(tmp_path / "a.wav", audio=tone(0.5, 16000), sample_rate=16000))
    mp3 = decode(write_clip(tmp_path / "a.mp3", audio=tone(0.5, 44100, 2), sample_rate=44100))
    assert wav.frames is None and wav.frame_times is None and len(wav.audio) == 8000
    assert mp3.frames is None and abs(len(mp3.audio) - 8000) < 1200
    silent_video = decode(write_clip(tmp_path / "v.mp4", face_frames(5, 32, 48), fps=10))
    assert silent_video.audio is None and len(silent_video.frames) == 13  # 0.5 s at 25 fps
    assert probe(tmp_path / "v.mp4").has_audio is False


def test_wav_resampling_keeps_the_signal(tmp_path):
    t = np.arange(48000) / 48000
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    clip = decode(write_clip(tmp_path / "s.wav", audio=np.stack([wave, wave]), sample_rate=48000))
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert len(clip.audio) == 16000 and np.abs(clip.audio[100:-100] - ref[100:-100]).max() < 0.01


def test_variable_frame_rate_is_sampled_on_a_constant_grid(tmp_path):
    times = np.array([0.0, 0.05, 0.3, 0.35, 0.7, 0.95])  # irregular
    path = write_clip(tmp_path / "vfr.mkv", _numbered_frames(6), fps=10, frame_times=times)
    clip = decode(path, fps=10)
    assert np.allclose(clip.frame_times, np.arange(len(clip.frames)) / 10)
    expected = [np.searchsorted(times, t + 1e-9) - 1 for t in clip.frame_times]  # latest frame at or before t
    assert _which(clip.frames).tolist() == expected


def test_windows_cover_the_file_without_gaps(tmp_path):
    wave = tone(3.0, 16000)
    path = write_clip(tmp_path / "w.mp4", _numbered_frames(12), fps=4, audio=wave, sample_rate=16000)
    whole = decode(path, fps=4)
    parts = list(decode_windows(path, window=1.0, fps=4))
    assert len(parts) == 3 and all(p.duration <= 1.0 + 1e-6 for p in parts[:-1])
    assert np.allclose(np.concatenate([p.frame_times for p in parts]), whole.frame_times)
    assert np.array_equal(np.concatenate([p.frames for p in parts]), whole.frames)
    assert abs(sum(len(p.audio) for p in parts) - len(whole.audio)) < 400
    wav = write_clip(tmp_path / "w.wav", audio=wave, sample_rate=16000)
    assert np.array_equal(np.concatenate([p.audio for p in decode_windows(wav, window=1.0)]), decode(wav).audio)


def test_max_side_scales_frames(tmp_path):
    path = write_clip(tmp_path / "big.mp4", face_frames(3, 120, 160), fps=10)
    assert decode(path, fps=10, max_side=80).frames.shape[1:3] == (60, 80)


def test_very_short_clip(tmp_path):
    path = write_clip(tmp_path / "short.mp4", face_frames(2, 64, 80), fps=10, audio=tone(0.2, 16000))
    clip = decode(path, fps=25)
    assert 1 <= len(clip.frames) <= 6 and 2500 < len(clip.audio) < 4500


def _bad_files(tmp_path):
    good = write_clip(tmp_path / "good.mp4", face_frames(10, 64, 80), fps=10, audio=tone(1.0))
    data = good.read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    garbage = bytearray(data)
    rng = np.random.default_rng(0)
    garbage[200:] = rng.integers(0, 256, len(garbage) - 200, dtype=np.uint8).tobytes()
    (tmp_path / "corrupt.mp4").write_bytes(bytes(garbage))
    return ["empty.mp4", "text.mp4", "truncated.mp4", "corrupt.mp4", "missing.mp4"]


def test_bad_files_raise_media_error_naming_the_file(tmp_path):
    for name in _bad_files(tmp_path):
        with pytest.raises(MediaError, match=name):
            clip = decode(tmp_path / name)
            # a file may open yet hold nothing usable; then decode must say so rather than return garbage
            assert clip.frames is not None or clip.audio is not None
    with pytest.raises(MediaError, match="folder"):
        decode(tmp_path)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, degrees):
    from malformed_media import rotate_mp4

    upright = face_frames(6, 96, 128)
    path = rotate_mp4(tmp_path / f"r{degrees}.mp4", upright, degrees)
    stored = decode(path, fps=10).frames
    assert stored.shape == upright.shape                   # shown the way the phone meant, not as stored
    assert np.abs(stored.astype(int) - upright.astype(int)).mean() < 6
    sideways = np.rot90(upright, k=degrees // 90, axes=(1, 2))
    if degrees != 180:
        assert sideways.shape != stored.shape


def test_nonfinite_and_out_of_range_samples_are_repaired_and_counted(tmp_path):
    from malformed_media import float_wav
    from vavl.media.decode import decode_notes

    wave = tone(1.0)
    wave[100:150], wave[5000], wave[9000] = np.nan, np.inf, 1e30
    clip = decode(float_wav(tmp_path / "bad.wav", wave))
    assert np.isfinite(clip.audio).all() and np.abs(clip.audio).max() <= 1.0
    assert clip.nonfinite == 51 and clip.peak == pytest.approx(1e30, rel=1e-3)
    assert (clip.audio[100:150] == 0).all() and np.allclose(clip.audio[:100], wave[:100], atol=1e-6)
    notes = decode_notes(clip.decoded, clip.duration, clip.nonfinite, len(clip.audio), clip.peak)
    assert notes == ["51 of 16000 audio samples were NaN or infinite: set to 0",
                     "audio samples up to 1e+30, beyond full scale: clipped to [-1, 1]"]
    good = decode(float_wav(tmp_path / "good.wav", tone(1.0)))
    assert good.nonfinite == 0 and not decode_notes(good.decoded, good.duration, 0, len(good.audio), good.peak)


@pytest.mark.parametrize("suffix", [".wav", ".mkv", ".flv", ".mp3"])
def test_a_truncated_file_says_how_much_of_it_decoded(tmp_path, suffix):
    from malformed_media import float_wav
    from vavl.media.decode import decode_notes

    if suffix == ".wav":   # the header promises 4 s, the file holds 1.2 s
        path = float_wav(tmp_path / "cut.wav", tone(1.2), declared_seconds=4.0)
    else:
        full = write_clip(tmp_path / f"full{suffix}", None if suffix == ".mp3" else face_frames(40, 64, 80),
                          fps=10, audio=tone(4.0), sample_rate=16000 if suffix != ".flv" else 44100)
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.4)])
    clip = decode(path, fps=5)
    assert clip.duration > 3.5 and 0.5 < clip.decoded < 2.5
    assert probe(path).duration == pytest.approx(clip.duration, abs=0.1)
    note = decode_notes(clip.decoded, clip.duration)
    assert len(note) == 1 and note[0].startswith(f"decoded {clip.decoded:.2f} s of {clip.duration:.2f} s")
    whole = decode(write_clip(tmp_path / f"whole{suffix}", None if suffix in (".wav", ".mp3") else face_frames(10, 64, 80),
                              fps=10, audio=tone(1.0), sample_rate=44100))
    assert not decode_notes(whole.decoded, whole.duration)   # complete files get no note


def test_broken_link_is_named_as_such(tmp_path):
    (tmp_path / "link.mp4").symlink_to(tmp_path / "gone.mp4")
    with pytest.raises(MediaError, match="link.mp4: broken symbolic link"):
        probe(tmp_path / "link.mp4")

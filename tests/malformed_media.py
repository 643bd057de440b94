"""A folder of malformed and unusual media for the batch tests: odd codecs, rates, layouts and sizes,
1 ms audio, NaN samples, truncated and corrupt files, junk with media suffixes, broken links,
rotated phone-style videos, real scene photos without a face. All small, all made here."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from media_utils import face_frames, tone, write_face_clip
from vavl.media import write_clip

# files no decoder can read: they must fail, each with its own one-line reason
UNREADABLE = {"truncated_moov.mp4", "corrupt.mp4", "junk.mp4", "junk.wav", "text.mp3", "empty.mp4", "empty.flv",
              "broken_link.mp4", "header_only.wav"}
# files cut short that still decode in part: scored, with a "decoded x s of y s" note
TRUNCATED = {"truncated.mkv", "truncated.flv", "truncated.wav", "truncated.mp3"}
# files with NaN / inf / huge samples: repaired, and said so
REPAIRED = {"nan.wav", "inf.wav", "all_nan.wav", "huge.wav"}
ROTATED = {"rotated90.mp4", "rotated180.mp4", "rotated270.mp4"}


def float_wav(path, samples, rate: int = 16000, declared_seconds: float | None = None) -> Path:
    """Mono IEEE-float WAV written by hand (PyAV would not keep NaN); `declared_seconds` makes the
    header promise more data than the file holds (a truncated download)."""
    data = np.asarray(samples, np.float32).tobytes()
    size = len(data) if declared_seconds is None else int(declared_seconds * rate) * 4
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                           + b"data" + struct.pack("<I", size) + data)
    return Path(path)


def rotate_mp4(path, frames: np.ndarray, degrees: int, fps: float = 10.0, audio=None) -> Path:
    """An MP4 whose track header says "show me turned by `degrees` clockwise" (as phones write), holding
    `frames` stored turned the other way: decoded correctly, they come out as `frames`."""
    stored = np.ascontiguousarray(np.rot90(frames, k=degrees // 90, axes=(1, 2)))
    write_clip(path, stored, fps=fps, audio=audio)
    data = bytearray(Path(path).read_bytes())
    at = data.find(b"tkhd")
    if at < 0 or data[at + 4] != 0:
        raise RuntimeError(f"{path}: no version-0 tkhd box to patch")
    matrix_at = at + 4 + 4 + 20 + 8 + 8   # version/flags, times/track id/duration, reserved, layer..volume
    c, s = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", c << 16, s << 16, 0, -s << 16, c << 16, 0, 0, 0, 1 << 30)
    Path(path).write_bytes(bytes(data))
    return Path(path)


def scene_frames(name: str, n: int, height: int = 96, width: int = 128) -> np.ndarray:
    """(n, height, width, 3): a real photo from scikit-image (no face in it) panned slowly."""
    import skimage.data

    image = getattr(skimage.data, name)()
    big = np.asarray(Image.fromarray(image[..., :3]).resize((width + n * 2, height + n)))
    return np.stack([big[i:i + height, 2 * i:2 * i + width] for i in range(n)])


def passer_by_frames(n: int = 40, height: int = 96, width: int = 128, seen=range(15, 19)) -> np.ndarray:
    """A scene with a real face (skimage's cameraman) in only a few frames: a passer-by, not a speaker."""
    import skimage.data

    frames = scene_frames("coffee", n, height, width)
    cam = np.stack([skimage.data.camera()] * 3, -1)[95:215, 165:285]   # his head with some margin
    face = np.asarray(Image.fromarray(cam).resize((40, 40)))
    for i in seen:
        frames[i, 20:60, 50:90] = face
    return frames


def _cut(src: Path, dst: Path, fraction: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


def make_malformed_folder(root) -> dict[str, Path]:
    """Write the files; returns name -> path (the broken link included)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out: dict[str, Path] = {}

    def add(name: str, path=None) -> Path:
        out[name] = Path(path) if path is not None else root / name
        return out[name]

    t = tone(1.0)
    # ---- audio-only files: rates, layouts, sample formats, lengths
    for name, rate, channels in (("speech_16k.wav", 16000, 1), ("speech_8k.wav", 8000, 1),
                                 ("speech_48k_stereo.wav", 48000, 2), ("speech_44k_surround.wav", 44100, 6),
                                 ("speech_96k.wav", 96000, 1), ("speech_44k.mp3", 44100, 2), ("speech_22k.mp3", 22050, 1)):
        write_clip(add(name), audio=tone(1.0, rate, channels), sample_rate=rate)
    write_clip(add("pcm_u8.wav"), audio=t, sample_rate=16000, audio_codec="pcm_u8")
    write_clip(add("pcm_s24.wav"), audio=t, sample_rate=16000, audio_codec="pcm_s24le")
    float_wav(add("float32.wav"), t)
    write_clip(add("ms1.wav"), audio=tone(0.001), sample_rate=16000)
    write_clip(add("ms5.wav"), audio=tone(0.005), sample_rate=16000)
    float_wav(add("one_sample.wav"), t[:1])
    float_wav(add("header_only.wav"), t[:0])
    bad = t.copy()
    bad[2000:2400] = np.nan
    float_wav(add("nan.wav"), bad)
    bad = t.copy()
    bad[100:105], bad[9000] = np.inf, -np.inf
    float_wav(add("inf.wav"), bad)
    float_wav(add("all_nan.wav"), np.full(16000, np.nan))
    bad = t.copy()
    bad[4000:4010] = 1e30
    float_wav(add("huge.wav"), bad)
    write_clip(add("silence.wav"), audio=np.zeros(16000, np.float32), sample_rate=16000)
    write_clip(add("square_full_scale.wav"), audio=np.sign(np.sin(np.arange(16000) / 20)).astype(np.float32),
               sample_rate=16000)
    float_wav(add("truncated.wav"), tone(1.2), declared_seconds=4.0)
    long_mp3 = write_clip(root / ".long.mp3", audio=tone(4.0), sample_rate=16000)
    _cut(long_mp3, add("truncated.mp3"), 0.4)
    long_mp3.unlink()
    write_clip(add("audio_only.mp4"), audio=t, sample_rate=16000)
    write_clip(add("audio_only.mkv"), audio=tone(1.0, 48000, 2), sample_rate=48000)
    write_clip(add("name with spaces é.wav"), audio=t, sample_rate=16000)

    # ---- videos: containers, rates, sizes, faces or none
    write_face_clip(add("face.mp4"), seconds=1.0)
    write_face_clip(add("face.flv"), seconds=1.0, sample_rate=44100)
    write_face_clip(add("face.avi"), seconds=1.0, sample_rate=44100)
    write_face_clip(add("face_surround.mkv"), seconds=1.0, sample_rate=48000, channels=6)
    write_face_clip(add("face_60fps.mp4"), seconds=0.5, fps=60)
    write_face_clip(add("face_1fps.mp4"), seconds=2.0, fps=1)
    write_face_clip(add("face_29.97fps.mp4"), seconds=1.0, fps=30000 / 1001)
    write_face_clip(add("UPPER_CASE.MP4"), seconds=0.5)
    write_clip(add("one_frame.mp4"), face_frames(1), fps=10, audio=tone(0.1))
    write_clip(add("tiny16.mp4"), np.full((10, 16, 16, 3), 120, np.uint8), fps=10, audio=t)
    write_clip(add("tiny16_mute.mp4"), np.full((10, 16, 16, 3), 120, np.uint8), fps=10)
    write_clip(add("tiny2.mp4"), np.full((5, 2, 2, 3), 120, np.uint8), fps=10, audio=tone(0.5))
    write_clip(add("thin_640x16.mp4"), np.full((5, 16, 640, 3), 80, np.uint8), fps=10, audio=tone(0.5))
    write_clip(add("odd_47x33.mp4"), face_frames(5, 33, 47, face=24), fps=10, audio=tone(0.5))
    write_face_clip(add("mute_face.mp4"), seconds=1.0, audio=False)
    write_clip(add("silent_audio_face.mp4"), face_frames(10), fps=10, audio=np.zeros(16000, np.float32))
    write_clip(add("black.mp4"), np.zeros((10, 64, 80, 3), np.uint8), fps=10, audio=t)
    write_clip(add("black_mute.mp4"), np.zeros((10, 64, 80, 3), np.uint8), fps=10)
    write_clip(add("vfr.mkv"), face_frames(6), fps=10, frame_times=np.array([0.0, 0.05, 0.3, 0.35, 0.7, 0.95]),
               audio=t)
    write_clip(add("two_faces.mp4"), face_frames(8, 120, 200, face=90, second_face=50), fps=10, audio=tone(0.8))
    leaves = face_frames(10)
    leaves[5:] = 30
    write_clip(add("face_leaves.mp4"), leaves, fps=10, audio=t)
    write_clip(add("scene_coffee.mp4"), scene_frames("coffee", 10), fps=10, audio=t)
    write_clip(add("scene_rocket_mute.mp4"), scene_frames("rocket", 10), fps=10)
    write_clip(add("scene_chelsea.mp4"), scene_frames("chelsea", 10), fps=10, audio=t)
    write_clip(add("passer_by.mp4"), passer_by_frames(), fps=10, audio=tone(4.0))
    for degrees in (90, 180, 270):
        rotate_mp4(add(f"rotated{degrees}.mp4"), face_frames(8, 96, 128), degrees, audio=tone(0.8))

    # ---- damaged files and junk with media suffixes
    for name in ("truncated.mkv", "truncated.flv", "truncated_moov.mp4"):
        full = write_face_clip(root / f".full{Path(name).suffix}", seconds=3.0)
        _cut(full, add(name), 0.4)   # mp4 keeps its index (moov) at the end: nothing left to read
        full.unlink()
    data = bytearray(out["face.mp4"].read_bytes())
    data[200:] = rng.integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    add("corrupt.mp4").write_bytes(bytes(data))
    add("junk.mp4").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    add("junk.wav").write_bytes(b"RIFF\x00\x00" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    add("text.mp3").write_text("this is not audio\n" * 30)
    add("empty.mp4").write_bytes(b"")
    add("empty.flv").write_bytes(b"")
    os.symlink(root / "nowhere.mp4", add("broken_link.mp4"))
    os.symlink(out["face.mp4"], add("link_to_face.mp4"))
    (root / "notes.txt").write_text("not a media file: a folder run leaves it out\n")
    return out

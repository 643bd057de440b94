"""Small synthetic corpora in the real corpora's layouts, with a label that can be learned.

    make_corpus("crema-d", "demo/crema", n_speakers=4)        # then: vavl prepare crema-d --root demo/crema
    make_corpus("ravdess" | "msp-improv" | "custom", root, signal="audio")

Each clip is real media written with PyAV: a face (the astronaut photo from scikit-image, a
public-domain NASA portrait) moving over a background, and a voiced sound (harmonics of a
pitch contour, shaped by moving formants, in syllables). The class sets, per modality:
  audio: pitch level, loudness and syllable rate;   video: face tint, size and motion.
`signal="both"` puts the class in both modalities; "audio" / "video" puts it in one and draws
the other modality's settings from a random class, so that modality carries no information.
CREMA-D also gets its metadata CSVs (summaryTable.csv, tabulatedVotes.csv, VideoDemographics.csv,
SentenceFilenames.csv) in the corpus' format, with simulated raters, some of whom tie.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..media.write import write_clip

LAYOUTS = ("crema-d", "ravdess", "msp-improv", "custom")
from .prepare import SYNTHETIC_MARKER as MARKER  # noqa: E402  (in the corpus root: `vavl prepare` marks every clip "synthetic": true)
SIGNALS = ("both", "audio", "video")


@dataclass
class ClipStyle:
    """Everything that makes one clip: who speaks, and which class each modality shows."""

    speaker: int
    female: bool
    audio_class: int
    video_class: int
    n_classes: int
    seed: int


# ---- media -----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def face_patch() -> torch.Tensor:
    """The astronaut's head and shoulders, (3, 190, 170) float in [0, 1]."""
    from skimage.data import astronaut

    head = astronaut()[20:210, 140:310]
    return torch.from_numpy(head.copy()).permute(2, 0, 1).float() / 255.0


def _level(k: int, n: int, mix: int = 1) -> float:
    """Class k of n -> a level in [0, 1]; `mix` shuffles the order so cues are not collinear."""
    return ((k * mix) % n) / max(n - 1, 1)


def synth_audio(style: ClipStyle, duration: float, sample_rate: int) -> np.ndarray:
    """(n,) float32: a voiced utterance whose pitch, loudness and syllable rate follow the class."""
    rng = np.random.default_rng(style.seed)
    k, n = style.audio_class, style.n_classes
    t = np.arange(int(duration * sample_rate)) / sample_rate
    base = (205.0 if style.female else 115.0) * (1 + 0.06 * (style.speaker % 3 - 1))
    f0 = base * (0.75 + 0.6 * _level(k, n)) * (1 + 0.08 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 6))) * (1 - 0.08 * t)
    rate = 2.5 + 4.0 * _level(k, n, 5)                                  # syllables per second
    syllable = np.clip(np.sin(np.pi * rate * t + rng.uniform(0, 1)), 0, None) ** 0.7
    loudness = 0.12 + 0.5 * _level(k, n, 3)
    # formants drift between vowels, one per syllable
    vowels = np.array([(730, 1090), (270, 2290), (530, 1840), (570, 840), (440, 1020)], dtype=float)
    which = (np.floor(rate * t).astype(int) + rng.integers(0, 5)) % len(vowels)
    f1, f2 = vowels[which, 0], vowels[which, 1]
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wave = np.zeros_like(t)
    for h in range(1, int(4000 / f0.min())):
        fh = h * f0
        gain = np.exp(-((fh - f1) / 120) ** 2) + 0.6 * np.exp(-((fh - f2) / 180) ** 2) + 0.05 / h
        wave += np.where(fh < sample_rate / 2, gain, 0) * np.sin(h * phase)
    wave = wave / (np.abs(wave).max() + 1e-9) * syllable * loudness
    wave += 0.003 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def synth_frames(style: ClipStyle, duration: float, fps: float, size: tuple[int, int]) -> np.ndarray:
    """(t, h, w, 3) uint8: the face moving over a background; tint, size and motion follow the class."""
    rng = np.random.default_rng(style.seed + 1)
    k, n = style.video_class, style.n_classes
    width, height = size
    frames_n = max(1, int(round(duration * fps)))
    hue = 2 * np.pi * k / n
    tint = torch.tensor([1 + 0.45 * np.cos(hue), 1 + 0.45 * np.cos(hue - 2.1), 1 + 0.45 * np.cos(hue + 2.1)])
    face_h = int(height * (0.5 + 0.25 * _level(k, n, 5)))
    face_w = int(face_h * 170 / 190)
    patch = F.interpolate(face_patch()[None], size=(face_h, face_w), mode="bilinear", antialias=True)[0]
    patch = (patch * tint[:, None, None]).clamp(0, 1).permute(1, 2, 0).mul(255).byte().numpy()   # (fh, fw, 3)
    # background: a speaker-coloured gradient with fixed texture
    bg_rng = np.random.default_rng(style.speaker)
    colour = bg_rng.uniform(0.25, 0.75, 3)
    ramp = np.linspace(0.7, 1.1, width)[None, :, None]
    background = np.clip(colour * ramp + 0.04 * bg_rng.standard_normal((height, width, 3)), 0, 1)
    amplitude = 0.05 + 0.15 * _level(k, n, 3)                           # of the frame width
    speed = 0.4 + 1.2 * _level(k, n, 5)                                 # oscillations per second
    phase = rng.uniform(0, 2 * np.pi)
    out = np.repeat((background * 255).astype(np.uint8)[None], frames_n, axis=0)   # (t, h, w, 3)
    for i in range(frames_n):
        s = i / fps
        cx = width / 2 + amplitude * width * np.sin(2 * np.pi * speed * s + phase)
        cy = height / 2 + 0.04 * height * np.sin(2 * np.pi * 0.5 * s)
        x0, y0 = int(round(cx - face_w / 2)), int(round(cy - face_h / 2))
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + face_w, width), min(y0 + face_h, height)
        out[i, ya:yb, xa:xb] = patch[ya - y0: yb - y0, xa - x0: xb - x0]
    return out


class _Styler:
    """Chooses each clip's per-modality classes for a signal mode, reproducibly."""

    def __init__(self, n_classes: int, signal: str, seed: int):
        if signal not in SIGNALS:
            raise ConfigError(f"signal={signal!r} is not one of {SIGNALS}")
        self.n, self.signal, self.rng, self.seed = n_classes, signal, np.random.default_rng(seed), seed
        self.count = 0

    def __call__(self, label: int, speaker: int, female: bool) -> ClipStyle:
        decoy = int(self.rng.integers(self.n))
        self.count += 1
        return ClipStyle(speaker, female, decoy if self.signal == "video" else label,
                         decoy if self.signal == "audio" else label, self.n, self.seed * 100003 + self.count)


# ---- layouts ---------------------------------------------------------------------------------
CREMA_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
CREMA_VOTES = "ADFHNS"
CREMA_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
RAVDESS_EMOTIONS = 8
MSP_LETTERS = "AHNS"


def make_corpus(layout: str, root: str | os.PathLike, n_speakers: int = 4, clips_per_class: int = 2,
                duration: float = 1.5, size: tuple[int, int] = (160, 120), fps: float = 25.0,
                signal: str = "both", seed: int = 0) -> Path:
    """Write a corpus in `layout` under `root` (n_speakers x classes x clips_per_class clips) and
    return the root. Frame size is (width, height)."""
    makers = {"crema-d": _crema_d, "ravdess": _ravdess, "msp-improv": _msp_improv, "custom": _custom}
    if layout not in makers:
        raise ConfigError(f"layout={layout!r} is not one of {LAYOUTS}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    makers[layout](root, n_speakers, clips_per_class, duration, size, fps, signal, seed)
    (root / MARKER).write_text(f"Synthetic clips written by vavl.data.synthetic.make_corpus ({layout} layout, signal "
                               f"{signal}, seed {seed}): not recordings of people.\n", encoding="utf-8")
    return root


def _media(style: ClipStyle, duration, size, fps, sample_rate=16000):
    audio = synth_audio(style, duration, 16000)
    if sample_rate != 16000:   # synthesise at 16 kHz (fast), store at the corpus' rate
        from scipy.signal import resample_poly

        audio = resample_poly(audio, sample_rate, 16000).astype(np.float32)
    return synth_frames(style, duration, fps, size), audio


def _crema_d(root, n_speakers, per_class, duration, size, fps, signal, seed):
    styler = _Styler(6, signal, seed)
    rng = np.random.default_rng(seed + 7)
    clips, demographics = [], []
    for s in range(n_speakers):
        actor, female = 1001 + s, s % 2 == 1
        demographics.append((actor, 20 + 3 * s, "Female" if female else "Male"))
        for k, emotion in enumerate(CREMA_EMOTIONS):
            for j in range(per_class):
                clip_id = f"{actor}_{CREMA_SENTENCES[j % 12]}_{emotion}_XX"
                style = styler(k, s, female)
                frames, audio = _media(style, duration, size, fps)
                write_clip(root / "AudioWAV" / f"{clip_id}.wav", audio=audio, sample_rate=16000)
                write_clip(root / "VideoFlash" / f"{clip_id}.flv", frames, fps=fps, audio=audio, sample_rate=16000)
                clips.append((clip_id, style, k))
    # raters: audio-only (1), video-only (2), audio-visual (3) presentations
    votes = {}
    for clip_id, style, k in clips:
        for p, shown in (("1", style.audio_class), ("2", style.video_class), ("3", k)):
            counts = np.zeros(6, int)
            for _ in range(int(rng.integers(7, 12))):
                counts[shown if rng.random() < 0.7 else rng.integers(6)] += 1
            votes[clip_id, p] = counts
        if len(votes) % 7 == 0:   # now and then the audio-visual raters tie
            counts = votes[clip_id, "3"]
            counts[(k + 1) % 6] = counts.max()
    _write_crema_metadata(root, clips, votes, demographics)


def _write_crema_metadata(root, clips, votes, demographics):
    def vote(counts):
        return ":".join(CREMA_VOTES[i] for i in np.flatnonzero(counts == counts.max()))

    def level(counts):
        return ":".join(["60"] * int((counts == counts.max()).sum()))

    meta = root / "processedResults"
    meta.mkdir(exist_ok=True)
    quote = {"quoting": csv.QUOTE_NONNUMERIC, "lineterminator": "\n"}
    with open(root / "SentenceFilenames.csv", "w", newline="") as f:
        w = csv.writer(f, **quote)
        w.writerow(["Stimulus_Number", "Filename"])
        w.writerows([i + 1, clip_id] for i, (clip_id, *_) in enumerate(clips))
    with open(root / "VideoDemographics.csv", "w", newline="") as f:
        w = csv.writer(f, **quote)
        w.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        w.writerows([a, age, sex, "Unknown", "Not Hispanic"] for a, age, sex in demographics)
    with open(meta / "summaryTable.csv", "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
        w.writerow(["", "FileName", "VoiceVote", "VoiceLevel", "FaceVote", "FaceLevel", "MultiModalVote", "MultiModalLevel"])
        for i, (clip_id, *_) in enumerate(clips):
            row = [str(i + 1), clip_id]
            for p in "123":
                row += [vote(votes[clip_id, p]), level(votes[clip_id, p])]
            w.writerow(row)
    names = ["Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad"]
    header = ["", *CREMA_VOTES, "fileName", "numResponses", "agreement", "emoVote", "meanEmoResp",
              *[f"mean{n}Resp" for n in names], "medianEmoResp", "meanEmoRespNorm",
              *[f"mean{n}RespNorm" for n in names], "medianEmoRespNorm"]
    with open(meta / "tabulatedVotes.csv", "w", newline="") as f:
        w = csv.writer(f, **quote)
        w.writerow(header)
        for p in "123":
            for i, (clip_id, *_) in enumerate(clips):
                c = votes[clip_id, p]
                means = [60 if c[j] else -1 for j in range(6)]
                w.writerow([f"{p}{i + 1:05d}", *c.tolist(), clip_id, int(c.sum()), float(c.max() / c.sum()), vote(c), 60,
                            *means, 60, 60, *means, 60])


def _ravdess(root, n_speakers, per_class, duration, size, fps, signal, seed):
    """Actors spread over the 6 folds, both sexes. Most utterances: 01 .mp4 (AV) and 03 .wav;
    every third: 02 .mp4 (video only) and 03 .wav; every fifth: 03 .wav only."""
    styler = _Styler(RAVDESS_EMOTIONS, signal, seed)
    n = 0
    for s in range(n_speakers):
        actor = 1 + 4 * (s % 6) + s % 2 + 2 * (s // 6)    # 1, 6, 9, 14, 17, 22, ...
        for k in range(RAVDESS_EMOTIONS):
            for j in range(per_class):
                style = styler(k, s, actor % 2 == 0)
                frames, audio = _media(style, duration, size, fps, 48000)
                # neutral has no strong intensity: its takes differ by repetition instead
                intensity, repetition = (1, 1 + j % 2) if k == 0 else (1 + j % 2, 1 + (j // 4) % 2)
                tail = f"01-{k + 1:02d}-{intensity:02d}-{1 + (j // 2) % 2:02d}-{repetition:02d}-{actor:02d}"
                folder = root / f"Actor_{actor:02d}"
                write_clip(folder / f"03-{tail}.wav", audio=audio, sample_rate=48000)
                if n % 5 != 4:
                    video_only = n % 3 == 2
                    write_clip(folder / f"{'02' if video_only else '01'}-{tail}.mp4", frames, fps=fps,
                               audio=None if video_only else audio, sample_rate=48000)
                n += 1


def _msp_improv(root, n_speakers, per_class, duration, size, fps, signal, seed):
    """Sessions 1..ceil(n_speakers/2), a female and a male speaker each; Evalution.txt with
    categories and raw SAM attributes (arousal written 1 = most aroused; the reader sees that and flips it)."""
    styler = _Styler(4, signal, seed)
    rng = np.random.default_rng(seed + 11)
    # arousal / valence / dominance centres per category A H N S (1-5, 5 = most aroused)
    centres = {"A": (4.0, 1.8, 4.0), "H": (3.6, 4.3, 3.4), "N": (2.5, 3.0, 3.0), "S": (1.8, 1.7, 2.0)}
    lines = []
    for s in range(n_speakers):
        session, sex = s // 2 + 1, "FM"[s % 2]
        for k, letter in enumerate(MSP_LETTERS):
            for j in range(per_class):
                kind = "RSPT"[j % 4]
                clip = f"S{j + 1:02d}{letter}-{sex}{session:02d}-{kind}-{sex}{'MF'[s % 2]}{j + 1:02d}"
                style = styler(k, s, sex == "F")
                frames, audio = _media(style, duration, size, fps)
                folder = f"session{session}/S{j + 1:02d}{letter}/{kind}"
                write_clip(root / "Audio" / folder / f"MSP-IMPROV-{clip}.wav", audio=audio, sample_rate=16000)
                write_clip(root / "Video" / folder / f"MSP-IMPROV-{clip}.avi", frames, fps=fps, audio=audio)
                a, v, d = np.clip(np.array(centres[letter]) + rng.normal(0, 0.3, 3), 1, 5)
                lines.append(f"UTD-IMPROV-{clip}.avi; {letter}; A:{6 - a:.6f}; V:{v:.6f}; D:{d:.6f}; N:3.000000;\n\n")
    (root / "Evalution.txt").write_text("".join(lines))


def _custom(root, n_speakers, per_class, duration, size, fps, signal, seed):
    """clips/<id>.mp4 (every fourth clip audio-only .wav) and labels.csv: path,label,speaker."""
    names = ("angry", "happy", "neutral", "sad")
    styler = _Styler(len(names), signal, seed)
    rows = []
    for s in range(n_speakers):
        for k, name in enumerate(names):
            for j in range(per_class):
                clip_id = f"spk{s}_{name}_{j}"
                style = styler(k, s, s % 2 == 1)
                frames, audio = _media(style, duration, size, fps)
                if len(rows) % 4 == 3:
                    path = write_clip(root / "clips" / f"{clip_id}.wav", audio=audio)
                else:
                    path = write_clip(root / "clips" / f"{clip_id}.mp4", frames, fps=fps, audio=audio)
                rows.append((path.relative_to(root).as_posix(), name, f"spk{s}"))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "label", "speaker"])
        w.writerows(rows)

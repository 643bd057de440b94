"""HiCMAE's test-time preprocessing (sunlicai/HiCMAE kinetics_av.py, test mode), for any clip.

    processor = HiCMAEProcessor()                      # the released models' settings
    views = processor.views(frames, wave)              # face frames (N, H, W, 3) uint8, 16 kHz mono
    views["pixel_values"] (V, 16, 3, 160, 160), views["input_features"] (V, 256, 128)
    processor("clip.mp4")                              # decode, faces (vavl's face track), views

What the official test does, and so what this does:
1. every `frame_step`-th face frame (4), the list padded by repeating its last index up to
   `num_frames` (16);
2. each frame squashed to image_size x image_size by PIL's bilinear resize (antialiased when it
   shrinks; the aspect ratio is not kept);
3. `num_segments` (2) temporal views: `num_frames` consecutive sampled frames starting at
   int(k * max((len - num_frames) / (num_segments - 1), 0)); the official 2 spatial crops of each
   are identical (the resize is already square), so the clip score, the mean of softmax over the
   4 official views, equals the mean over these 2;
4. pixels / 255, then ImageNet mean / std;
5. each view's audio: from sample int(f0 / (N - 1) * n) to int(f1 / (N - 1) * n), with f0 the
   view's first frame and f1 = min(its last frame + frame_step, N - 1) (N face frames, n samples);
   a span of <= 1024 samples takes the whole waveform (official for waveforms under 2.56 s; the
   official code stops with an error for longer ones, vavl takes the whole waveform there too);
6. the span minus its mean -> Kaldi log-mel fbank (128 bins, 25 ms Hanning frames, 10 ms shift,
   dither 0) -> cut to / zero-padded at the end to 256 frames *after* the log -> (x + 4.2677393)
   / (2 * 4.5689974). Padded rows therefore hold 0.467.

Not reproduced: the official data loader multiplies each waveform by a random magnitude, Beta(10,
10) + 0.5 (`roll_mag_aug`, on by default and left on at test time by every official script; its
roll is 0 for a (1, n) waveform). Its mean is 1.0, which is what vavl uses: deterministic scores,
the official ones up to that random gain (which shifts the fbank by 2 ln(gain) before
normalisation).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.errors import ConfigError
from .processor import load_settings, save_settings
from .spectral import kaldi_fbank

MIN_AUDIO_SAMPLES = 1024    # official load_audio's min_audio_length
FBANK_MIN_SAMPLES = 400     # one 25 ms frame at 16 kHz


@dataclass
class HiCMAEProcessor:
    """num_frames / frame_step / num_segments: the test views. image_size, mean, std: the frames.
    sample_rate, num_mel_bins, target_length, norm_mean, norm_std: the fbank. fps: the rate media
    files are decoded at (every decoded frame with a face is one face frame; 30 = CREMA-D's rate,
    where the official face folders hold every video frame). max_side / face: vavl's face track."""

    num_frames: int = 16
    frame_step: int = 4
    num_segments: int = 2
    image_size: int = 160
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 256
    norm_mean: float = -4.2677393
    norm_std: float = 4.5689974
    fps: float = 30.0
    max_side: int | None = 640
    face: dict[str, Any] = field(default_factory=lambda: {"detect_every": 2, "detect_side": 256})

    def __post_init__(self):
        self.mean, self.std = tuple(float(x) for x in self.mean), tuple(float(x) for x in self.std)
        for name in ("num_frames", "frame_step", "num_segments", "image_size", "num_mel_bins", "target_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"HiCMAEProcessor: {name}={value!r} must be a positive integer")
        if self.fps <= 0:
            raise ConfigError(f"HiCMAEProcessor: fps={self.fps} must be > 0")
        self._cropper = None

    @classmethod
    def for_config(cls, config, **kwargs) -> "HiCMAEProcessor":
        """The settings a HiCMAEConfig implies (frames, crop side, fbank size)."""
        kwargs.setdefault("num_frames", config.num_frames)
        kwargs.setdefault("image_size", config.image_size)
        kwargs.setdefault("num_mel_bins", config.num_mel_bins)
        kwargs.setdefault("target_length", config.audio_target_length)
        return cls(**kwargs)

    # ---- the official steps ------------------------------------------------------------------
    def sample(self, n_frames: int) -> list[int]:
        """Step 1: the face frames the test loads."""
        index = list(range(0, n_frames, self.frame_step))
        return index + [index[-1]] * max(self.num_frames - len(index), 0)

    def segment_starts(self, n_sampled: int) -> list[int]:
        """Step 3: where each temporal view starts in the sampled list."""
        step = max((n_sampled - self.num_frames) / (self.num_segments - 1), 0) if self.num_segments > 1 else 0.0
        return [int(k * step) for k in range(self.num_segments)]

    def resize(self, frame: np.ndarray) -> np.ndarray:
        """Step 2: (H, W, 3) uint8 -> (S, S, 3) uint8, PIL bilinear."""
        from PIL import Image

        s = self.image_size
        return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).convert("RGB").resize((s, s), Image.BILINEAR))

    def normalize(self, frames: np.ndarray) -> torch.Tensor:
        """Step 4: (t, S, S, 3) uint8 -> (t, 3, S, S) float32."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255)
        mean, std = torch.tensor(self.mean).view(1, 3, 1, 1), torch.tensor(self.std).view(1, 3, 1, 1)
        return x.sub(mean).div(std)

    def audio_span(self, index: list[int], start: int, n_frames: int, n_samples: int) -> tuple[int, int]:
        """Step 5: [start, end) samples of the view starting at `start` in the sampled list."""
        if n_frames <= 1:
            return 0, n_samples
        first = index[start]
        last = min(index[min(start + self.num_frames - 1, len(index) - 1)] + self.frame_step, n_frames - 1)
        s, e = int(first / (n_frames - 1.0) * n_samples), int(last / (n_frames - 1.0) * n_samples)
        return (0, n_samples) if e - s <= MIN_AUDIO_SAMPLES else (s, e)

    def fbank(self, wave) -> torch.Tensor:
        """Step 6: a waveform span (n,) -> (target_length, num_mel_bins) normalised log-mel."""
        w = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(-1)
        if w.numel() < FBANK_MIN_SAMPLES:
            w = torch.nn.functional.pad(w, (0, FBANK_MIN_SAMPLES - w.numel()))
        w = w - w.mean()
        fb = kaldi_fbank(w, num_mel_bins=self.num_mel_bins, sample_rate=self.sample_rate)
        fb = fb[: self.target_length]
        fb = torch.nn.functional.pad(fb, (0, 0, 0, self.target_length - fb.shape[0]))
        return (fb - self.norm_mean) / (self.norm_std * 2)

    def plan(self, n_frames: int) -> tuple[list[int], list[int]]:
        """Steps 1 and 3: the sampled face-frame indices and where each view starts among them."""
        index = self.sample(n_frames)
        return index, self.segment_starts(len(index))

    def tensor_views(self, frames: torch.Tensor | None, wave: torch.Tensor | None) -> tuple:
        """The same views from tensors already cut and normalised at image_size (the raw inputs
        `raw_inputs` gives, after any evaluation condition): face frames (t, 3, S, S), waveform (n,)
        -> (pixel_values (V, T, 3, S, S) or None, input_features (V, L, mel) or None)."""
        has_audio = wave is not None and wave.numel() > 0
        if frames is None or len(frames) == 0:
            return None, (self.fbank(wave.cpu().numpy())[None].to(wave.device) if has_audio else None)
        index, starts = self.plan(len(frames))
        clip = frames[torch.as_tensor(index, device=frames.device)]
        video = torch.stack([clip[s:s + self.num_frames] for s in starts])
        if not has_audio:
            return video, None
        w = wave.cpu().numpy()
        spans = [self.audio_span(index, s, len(frames), len(w)) for s in starts]
        return video, torch.stack([self.fbank(w[a:b]) for a, b in spans]).to(frames.device)

    def views(self, frames=None, wave=None) -> dict[str, Any]:
        """Face frames (N, H, W, 3) uint8 (or a list of such arrays; None: no face) and a 16 kHz mono
        waveform (n,) (None: no audio) -> {"pixel_values": (V, T, 3, S, S) or None,
        "input_features": (V, target_length, mel) or None, "frame_indices": (V, T) face-frame
        indices, "audio_spans": (V, 2) sample spans}. Without faces there is one view: the
        waveform from its start."""
        out: dict[str, Any] = {"pixel_values": None, "input_features": None, "frame_indices": None, "audio_spans": None}
        has_audio = wave is not None and len(wave) > 0
        if frames is None or len(frames) == 0:
            if has_audio:
                out["input_features"] = self.fbank(wave)[None]
                out["audio_spans"] = np.array([[0, len(wave)]])
            return out
        index, starts = self.plan(len(frames))
        resized = {i: self.resize(frames[i]) for i in sorted(set(index))}
        clip = np.stack([resized[i] for i in index])
        out["frame_indices"] = np.array([index[s:s + self.num_frames] for s in starts])
        out["pixel_values"] = torch.stack([self.normalize(clip[s:s + self.num_frames]) for s in starts])
        if has_audio:
            spans = [self.audio_span(index, s, len(frames), len(wave)) for s in starts]
            out["audio_spans"] = np.array(spans)
            out["input_features"] = torch.stack([self.fbank(wave[a:b]) for a, b in spans])
        return out

    # ---- media files -------------------------------------------------------------------------
    @property
    def cropper(self):
        if self._cropper is None:
            from .faces import FaceCropper

            self._cropper = FaceCropper(size=self.image_size, **self.face)
        return self._cropper

    def decode(self, path, start: float = 0.0, end: float | None = None, audio: bool = True, video: bool = True):
        from .decode import decode

        return decode(path, fps=self.fps, sample_rate=self.sample_rate, max_side=self.max_side, start=start, end=end,
                      audio=audio, video=video)

    def __call__(self, clip, audio: bool = True, video: bool = True) -> dict[str, Any]:
        """A path or DecodedClip -> `views` of its face frames (vavl's face track, square crops of
        image_size; the frames where no face is found are left out, as a face folder leaves them
        out) and its audio, plus "frames", "face_frames", "frame_times" (of the face frames),
        "duration" and "face_boxes" (per decoded frame, NaN where no face; None without frames)."""
        from .decode import DecodedClip

        if not isinstance(clip, DecodedClip):
            clip = self.decode(clip, audio=audio, video=video)
        wave = clip.audio if audio and clip.audio is not None and len(clip.audio) else None
        faces, times, n, boxes = None, np.zeros(0), 0, None
        if video and clip.frames is not None and len(clip.frames):
            n = len(clip.frames)
            track = self.cropper.tracks([clip.frames])[0]
            boxes = track.boxes
            if track.face_frames:
                faces, times = track.crops[track.mask], np.asarray(clip.frame_times)[track.mask]
        out = self.views(faces, wave)
        out.update(frames=n, face_frames=0 if faces is None else len(faces), frame_times=times,
                   duration=clip.duration, start=clip.start, face_boxes=boxes)
        return out

    def raw_inputs(self, clip) -> dict[str, Any]:
        """A DecodedClip -> what vavl's evaluation conditions change before the views are cut:
        {"input_values": (1, n), "attention_mask": (1, n), "pixel_values": (1, t, 3, S, S) face crops
        (normalised, zeros where no face), "pixel_mask": (1, t) face found} (None where absent)."""
        out: dict[str, Any] = {"input_values": None, "attention_mask": None, "pixel_values": None, "pixel_mask": None}
        if clip.audio is not None and len(clip.audio):
            wave = torch.from_numpy(np.ascontiguousarray(clip.audio, dtype=np.float32))[None]
            out.update(input_values=wave, attention_mask=torch.ones_like(wave, dtype=torch.bool))
        if clip.frames is not None and len(clip.frames):
            track = self.cropper.tracks([clip.frames])[0]
            if track.face_frames:
                out.update(pixel_values=self.normalize(track.crops)[None], pixel_mask=torch.from_numpy(track.mask)[None])
        return out

    # ---- saving ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["processor_class"] = type(self).__name__
        return d

    def save_pretrained(self, directory) -> None:
        save_settings(self, directory)

    @classmethod
    def from_pretrained(cls, directory, **overrides) -> "HiCMAEProcessor":
        return load_settings(cls, directory, overrides)

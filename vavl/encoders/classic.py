"""Hand-crafted encoder presets: MFCC, log-mel filterbank, ZCR + energy for audio; small face
crops (grey / RGB), frame differences and dense optical flow for faces.

They follow the Encoder interface (base.py), so they work wherever a neural encoder does:
`vavl extract`, full models, the correspondence recipe. They have no weights; `pretrained`
is ignored. Audio: (b, n) 16 kHz waveforms -> (b, t, d) at 100 frames/s (25 ms windows).
Visual: (b, t, 3, H, W) crops normalised with the encoder's mean/std -> (b, t, d), one row per
input frame; flattened images are channel-first, (c h w), so a CNN can fold them back.
"""
from __future__ import annotations

import json
import os

import torch
from einops import rearrange

from . import features
from .base import Encoder, EncoderPreset, pad_rows, register_encoder

CONFIG_NAME = "encoder_config.json"


class ClassicEncoder(Encoder):
    """Common parts: the preset name/options (for save_pretrained)."""

    preset: str = ""

    def __init__(self, **options):
        super().__init__()
        self.options = options

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `encoder_config.json` ({"classic_preset": name, "options": {...}}): there are no weights."""
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump({"classic_preset": self.preset, "modality": self.modality, "options": self.options}, f, indent=2)


class AudioFeatureEncoder(ClassicEncoder):
    """Runs a per-waveform feature function on each sample's real samples (so padding never
    changes a feature): (b, n), (b, n) -> (b, t, d), (b, t) with t = n // hop + 1."""

    modality = "audio"
    frame_rate = 100.0

    def __init__(self, fn, output_dim: int, sample_rate: int = 16000, **options):
        super().__init__(sample_rate=sample_rate, **options)
        # fn: a plain callable (vavl.encoders.features), so the encoder has no state to save
        self.fn, self.output_dim, self.sample_rate = fn, output_dim, sample_rate
        self.frame_rate = sample_rate / features.frame_sizes(sample_rate)[1]

    @torch.no_grad()
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 2:
            raise ValueError(f"audio encoder {self.preset}: expected waveforms (b, n), got {tuple(x.shape)}")
        lengths = mask.sum(1).tolist() if mask is not None else [x.shape[1]] * x.shape[0]
        rows = [self.fn(x[i, : int(n)].float().cpu()).to(x.device) if n else x.new_zeros(0, self.output_dim)
                for i, n in enumerate(lengths)]
        return pad_rows(rows, self.output_dim, x.device)


class VisualFeatureEncoder(ClassicEncoder):
    """Un-normalises the crops to [0, 1], resizes them to `image_size`, and turns each clip's
    frames into vectors with `fn(images (t, 3, s, s) in [0, 1], valid (t,)) -> (t, d)`."""

    modality = "visual"
    frame_rate = None
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, fn, output_dim: int, image_size: int, **options):
        super().__init__(image_size=image_size, **options)
        self.fn, self.output_dim, self.image_size = fn, output_dim, image_size

    @torch.no_grad()
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"visual encoder {self.preset}: expected crops (b, t, 3, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        mask = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        out = torch.zeros(b, t, self.output_dim, device=x.device)
        for i in range(b):
            images = (x[i].float() * std + mean).clamp(0, 1)               # (t, 3, H, W) in [0, 1]
            images = features.resize(images, self.image_size) * mask[i].view(-1, 1, 1, 1)
            out[i] = self.fn(images, mask[i]) * mask[i].unsqueeze(-1)
        return out, mask


# ---- per-preset feature functions ----------------------------------------------------------
def _flat(images: torch.Tensor) -> torch.Tensor:
    return rearrange(images, "t c h w -> t (c h w)")


def _grey(images, valid):
    return _flat(features.to_grey(images))


def _rgb(images, valid):
    return _flat(images)


def _diff(images, valid):
    return _flat(features.frame_differences(features.to_grey(images), valid))


class _Flow:
    def __init__(self, grid: int):
        self.grid = grid

    def __call__(self, images, valid):
        return _flat(features.optical_flow_grid(features.to_grey(images), valid, grid=self.grid))


# ---- builders --------------------------------------------------------------------------------
def _named(encoder: ClassicEncoder, name: str) -> ClassicEncoder:
    encoder.preset = name
    return encoder


def build_mfcc(pretrained: bool = False, n_mfcc: int = 40, n_mels: int = 40, deltas: bool = False,
               sample_rate: int = 16000, name: str = "mfcc") -> Encoder:
    fn = features.MFCC(sample_rate, n_mfcc=n_mfcc, n_mels=n_mels, deltas=deltas)
    enc = AudioFeatureEncoder(fn, n_mfcc * (3 if deltas else 1), sample_rate, n_mfcc=n_mfcc, n_mels=n_mels, deltas=deltas)
    return _named(enc, name)


def build_mfcc_deltas(pretrained: bool = False, **options) -> Encoder:
    return build_mfcc(pretrained, **{"deltas": True, **options, "name": "mfcc-deltas"})


def build_fbank(pretrained: bool = False, n_mels: int = 40, sample_rate: int = 16000) -> Encoder:
    fn = features.LogMel(sample_rate, n_mels=n_mels)
    return _named(AudioFeatureEncoder(fn, n_mels, sample_rate, n_mels=n_mels), "fbank")


def build_zcr_energy(pretrained: bool = False, sample_rate: int = 16000) -> Encoder:
    return _named(AudioFeatureEncoder(lambda w: features.zcr_energy(w, sample_rate), 2, sample_rate), "zcr-energy")


def build_face_grey(pretrained: bool = False, image_size: int = 48) -> Encoder:
    return _named(VisualFeatureEncoder(_grey, image_size ** 2, image_size), "face-grey")


def build_face_rgb(pretrained: bool = False, image_size: int = 32) -> Encoder:
    return _named(VisualFeatureEncoder(_rgb, 3 * image_size ** 2, image_size), "face-rgb")


def build_frame_diff(pretrained: bool = False, image_size: int = 48) -> Encoder:
    return _named(VisualFeatureEncoder(_diff, image_size ** 2, image_size), "frame-diff")


def build_optical_flow(pretrained: bool = False, image_size: int = 64, grid: int = 4) -> Encoder:
    enc = VisualFeatureEncoder(_Flow(grid), 2 * grid ** 2, image_size, grid=grid)
    return _named(enc, "optical-flow")


AUDIO_RATE, FACE_RATE = "100 frames/s", "one per face frame"
PRESETS = [
    EncoderPreset("mfcc", "audio", build_mfcc, 40, description="40 MFCCs (40 mel bands, 25 ms / 10 ms)", rate=AUDIO_RATE),
    EncoderPreset("mfcc-deltas", "audio", build_mfcc_deltas, 120, description="40 MFCCs + deltas + delta-deltas",
                  rate=AUDIO_RATE),
    EncoderPreset("fbank", "audio", build_fbank, 40, description="40 log-mel filterbank energies", rate=AUDIO_RATE),
    EncoderPreset("zcr-energy", "audio", build_zcr_energy, 2, description="zero-crossing rate and log energy", rate=AUDIO_RATE),
    EncoderPreset("face-grey", "visual", build_face_grey, 48 * 48, description="48x48 grey face crop, flattened",
                  rate=FACE_RATE),
    EncoderPreset("face-rgb", "visual", build_face_rgb, 3 * 32 * 32, description="32x32 RGB face crop, flattened (c h w)",
                  rate=FACE_RATE),
    EncoderPreset("frame-diff", "visual", build_frame_diff, 48 * 48,
                  description="48x48 grey difference of consecutive face crops", rate=FACE_RATE),
    EncoderPreset("optical-flow", "visual", build_optical_flow, 2 * 4 * 4, rate=FACE_RATE,
                  description="pyramidal Lucas-Kanade flow between consecutive 64x64 grey crops, mean (dx, dy) on a 4x4 grid"),
]
for _preset in PRESETS:
    register_encoder(_preset)


def build_from_config(directory: str | os.PathLike, **overrides) -> Encoder:
    """Rebuild a classic encoder from a folder written by `ClassicEncoder.save_pretrained`."""
    with open(os.path.join(directory, CONFIG_NAME)) as f:
        cfg = json.load(f)
    preset = next(p for p in PRESETS if p.name == cfg["classic_preset"])
    return preset.build(False, **{**cfg["options"], **overrides})

"""The encoders of a `vavl extract` run: built by name (pretrained, or untrained and seeded) or taken as
given, checked against the modality they are passed as, their weights' identity recorded for cache.json
before any cast, then moved to the device and converted to the run's precision."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..core.errors import DataError

# the encoders' dtype per --precision (bf16-autocast and int8 keep fp32 tensors; auto is resolved before)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "bf16-autocast": torch.float32,
              "int8": torch.float32, "auto": None}


def build_encoders(audio_encoder, visual_encoder, device: str, precision: str, random_init: bool) -> tuple[dict, dict]:
    """Names or modules -> ({modality: encoder ready to run}, {modality: weights identity})."""
    from ..encoders.build import weights_identity

    encoders, weights = {}, {}
    for modality, name in (("audio", audio_encoder), ("visual", visual_encoder)):
        if not name:
            continue
        enc = name if isinstance(name, torch.nn.Module) else _build(name, random_init)
        if enc.modality != modality:
            raise DataError(f"{encoder_name(name)} is a {enc.modality} encoder; pass it as --{enc.modality}-encoder")
        weights[modality] = weights_identity(enc)   # before the cast: the weights as they came
        encoders[modality] = _convert(enc, device, precision, built=enc is not name)
    return encoders, weights


def _convert(enc, device: str, precision: str, built: bool = False):
    """The encoder on `device` at `precision` (vavl.encoders.precision for bf16 and int8), in eval mode;
    one this run `built` is quantised in place (no copy of its fp32 weights), a caller's is copied."""
    from ..encoders.precision import apply_precision

    enc = enc.to(device).eval()
    if precision in ("bf16", "int8"):
        return apply_precision(enc, precision, inplace=built)
    return enc.to(PRECISIONS[precision])


def _build(name: str, random_init: bool):
    """A named encoder with its pretrained weights, or untrained (seeded: a resumed run gets the same network)."""
    from ..encoders import build_encoder

    return build_encoder(name, pretrained=not random_init)   # untrained: seed 0, recorded in cache.json


def encoder_name(name) -> str | None:
    if isinstance(name, torch.nn.Module):
        return getattr(name, "name", None) or type(name).__name__
    if name and os.path.isdir(name):
        return str(Path(name).resolve())
    return name

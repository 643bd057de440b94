"""Training-time batch transforms: modality dropout, frame masking, feature noise.

They act on collated batches (see vavl.data.collate) in place of the masks, so a model sees a
dropped modality exactly as it sees a missing one: an all-false mask row. Cached-feature batches
use `audio_mask` / `visual_mask`; raw-clip batches `attention_mask` / `pixel_mask`.
Randomness comes from torch's global generator (seeded by the recipe, saved in checkpoints).
"""
from __future__ import annotations

from typing import Any

import torch

from ..core.errors import ConfigError
from .conditions import shut_off_draw, zero_modality

# (audio mask key, visual mask key) for each batch layout, first match wins
MASK_KEYS = (("audio_mask", "visual_mask"), ("attention_mask", "pixel_mask"))


def _masks(batch: dict[str, Any]) -> tuple[str | None, str | None]:
    for a, v in MASK_KEYS:
        if a in batch or v in batch:
            return (a if batch.get(a) is not None else None), (v if batch.get(v) is not None else None)
    return None, None


DROPOUT_MODES = ("mask", "zero")
DROPOUT_UNITS = ("sample", "batch")


def modality_dropout(batch: dict[str, Any], audio: float = 0.0, visual: float = 0.0, mode: str = "mask",
                     per: str = "sample", origins: dict | None = None) -> dict[str, Any]:
    """Hide audio with probability `audio` and video with probability `visual`.

    per="sample" (vavl's default): each sample draws on its own; a sample never loses its last
    modality (where both would go, one of them, chosen at random, stays); samples that already
    miss a modality are left as they are. per="batch": one draw for the whole batch with the
    official AuxFormer rule (`conditions.shut_off_draw`: audio, or else video, never both).
    mode="mask": the dropped modality becomes missing (mask false: its head and the fusion head
    do not see it). mode="zero": its input is multiplied by 0 and the masks stay, so the clip
    still counts as having it and every loss applies (the official AuxFormer loop); needs per="batch".
    origins: per modality, the feature frame the model maps to zero (`EmotionModel.input_origin`)."""
    for name, p in (("audio", audio), ("visual", visual)):
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"modality_dropout.{name}={p} must be in [0, 1)")
    if mode not in DROPOUT_MODES or per not in DROPOUT_UNITS:
        raise ConfigError(f"modality_dropout mode={mode!r} / per={per!r}: mode is one of {DROPOUT_MODES}, per one of {DROPOUT_UNITS}")
    if mode == "zero" and per != "batch":
        raise ConfigError("modality_dropout.mode=zero multiplies a whole batch's modality by 0: use per=batch")
    if audio == 0 and visual == 0:
        return batch
    if per == "batch":
        if audio + visual > 1:
            raise ConfigError(f"modality_dropout per batch: audio + visual = {audio + visual} must be <= 1 (one draw, one modality)")
        off = shut_off_draw(audio, visual)
        if off is None:
            return batch
        if mode == "zero":
            return zero_modality(batch, off, (origins or {}).get(off))
        key = _masks(batch)[0 if off == "audio" else 1]
        other = _masks(batch)[1 if off == "audio" else 0]
        if key is not None and other is not None:  # clips without the other modality keep this one
            batch = {**batch, key: batch[key] & ~batch[other].any(1, keepdim=True)}
        return batch
    ka, kv = _masks(batch)
    if ka is None or kv is None:
        return batch
    a_mask, v_mask = batch[ka], batch[kv]
    both = a_mask.any(1) & v_mask.any(1)                      # (b,) only these can lose one
    b = both.shape[0]
    drop_a = (torch.rand(b) < audio).to(both.device) & both
    drop_v = (torch.rand(b) < visual).to(both.device) & both
    clash = drop_a & drop_v
    keep_audio = (torch.rand(b) < 0.5).to(both.device)
    drop_a, drop_v = drop_a & ~(clash & keep_audio), drop_v & ~(clash & ~keep_audio)
    batch[ka] = a_mask & ~drop_a.unsqueeze(1)
    batch[kv] = v_mask & ~drop_v.unsqueeze(1)
    return batch


def frame_masking(batch: dict[str, Any], max_fraction: float = 0.0) -> dict[str, Any]:
    """Per sample and modality, hide one random contiguous span of up to `max_fraction` of the
    real frames (SpecAugment-style time masking on feature frames). At least one frame stays."""
    if not 0.0 <= max_fraction < 1.0:
        raise ConfigError(f"frame_masking={max_fraction} must be in [0, 1)")
    if max_fraction == 0:
        return batch
    for key in _masks(batch):
        if key is None:
            continue
        mask = batch[key].clone()
        lengths = mask.sum(1)                                     # (b,)
        for i, n in enumerate(lengths.tolist()):
            span = int(torch.randint(0, int(n * max_fraction) + 1, ()).item()) if n > 1 else 0
            span = min(span, n - 1)
            if span:
                start = int(torch.randint(0, n - span + 1, ()).item())
                real = mask[i].nonzero().squeeze(1)
                mask[i, real[start:start + span]] = False
        batch[key] = mask
    return batch


def feature_noise(batch: dict[str, Any], std: float = 0.0) -> dict[str, Any]:
    """Add N(0, std²) to cached feature frames (not to raw waveforms or pixels)."""
    if std < 0:
        raise ConfigError(f"feature_noise={std} must be >= 0")
    if std == 0:
        return batch
    for key in ("audio_features", "visual_features"):
        x = batch.get(key)
        if x is not None:
            batch[key] = x + std * torch.randn(x.shape).to(x.device, x.dtype)
    return batch


def augment(batch: dict[str, Any], audio_dropout: float = 0.0, visual_dropout: float = 0.0,
            frame_mask: float = 0.0, noise: float = 0.0, dropout_mode: str = "mask", dropout_per: str = "sample",
            origins: dict | None = None) -> dict[str, Any]:
    """All training transforms in a fixed order (noise, frame masking, modality dropout)."""
    batch = feature_noise(batch, noise)
    batch = frame_masking(batch, frame_mask)
    return modality_dropout(batch, audio_dropout, visual_dropout, dropout_mode, dropout_per, origins)

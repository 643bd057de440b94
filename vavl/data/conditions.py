"""Evaluation conditions: what a collated batch looks like with a modality removed, dropped in part
or corrupted. `vavl evaluate` runs a model under each (see vavl.evaluation.scoring).

  av               nothing removed
  audio            all visual input removed (audio only): the model answers with its audio head
  video            all audio input removed (video only): the model answers with its visual head
  zero-audio       every clip's audio input multiplied by 0, masks kept: the clips still "have"
                   audio, so the model keeps its prediction rule (e.g. AuxFormer's mean of its three
                   heads) on the zeroed input; the official AuxFormer code's only missing-audio case
  zero-video       the same for the video input
  drop-frames:p    in each clip, a fraction p of the visual frames that are present is masked out
                   (mask false, features / pixels zeroed); which ones is seeded by clip id
  drop-audio:p     in each clip, a fraction p of the audio frames is dropped: on features, frames
                   are masked out; on raw waveforms, 20 ms frames are zeroed (silence) — the
                   attention mask is left alone because speech encoders read it as a length
  noise-snr:db     white noise at `db` dB SNR (over the clip's own samples) added to the waveform;
                   raw media only
  occlude-face:p   in every face crop, a horizontal band covering a fraction p of the crop's rows
                   is set to 0 in normalised space (the mean colour); raw media only
  shut-off:p       per group of 32 consecutive clips (dataset order: the official dev batches), one
                   draw r (seeded by the group): r < p multiplies every clip's audio input by 0,
                   p <= r < 2p its video input; masks stay, so the clips still count as having both
                   modalities (official AuxFormer train.py does this to its dev batches, for
                   reproducing that selection). The groups do not follow --batch-size, so neither
                   do the results; a batch without clip indices is one group, seeded by its clip ids
noise-snr and occlude-face change signals that cached encoder features no longer hold, so on a
feature cache they raise a ConfigError before anything runs (evaluate raw media instead).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..core.errors import ConfigError

CONDITION_KINDS = {  # kind -> (takes a parameter, valid range, needs raw media)
    "av": (False, None, False),
    "audio": (False, None, False),
    "video": (False, None, False),
    "zero-audio": (False, None, False),
    "zero-video": (False, None, False),
    "drop-frames": (True, (0.0, 1.0), False),
    "drop-audio": (True, (0.0, 1.0), False),
    "noise-snr": (True, (-100.0, 200.0), True),
    "occlude-face": (True, (0.0, 1.0), True),
    "shut-off": (True, (0.0, 0.5), False),
}
VALID_CONDITIONS = "av, audio, video, zero-audio, zero-video, drop-frames:P, drop-audio:P, occlude-face:P (P in 0..1), noise-snr:DB, shut-off:P (0..0.5)"
DEFAULT_CONDITIONS = "av,audio,video,drop-frames:0.5,drop-audio:0.5"
SHUT_OFF_GROUP = 32         # shut-off draws once per this many consecutive clips (official batch_size 32)
AUDIO_FRAME_SECONDS = 0.02  # drop-audio on raw waveforms works on 20 ms frames
MODALITY_KEYS = {"visual": ("visual_features", "visual_mask", "pixel_values", "pixel_mask"),
                 "audio": ("audio_features", "audio_mask", "input_values", "attention_mask")}


@dataclass(frozen=True)
class Condition:
    kind: str
    value: float | None = None

    @property
    def name(self) -> str:
        return self.kind if self.value is None else f"{self.kind}:{self.value:g}"

    @property
    def removes(self) -> str | None:
        """The modality this condition takes away entirely."""
        return {"audio": "visual", "video": "audio"}.get(self.kind)

    @property
    def zeroes(self) -> str | None:
        """The modality this condition multiplies by 0 in every clip (masks kept)."""
        return {"zero-audio": "audio", "zero-video": "visual"}.get(self.kind)

    @property
    def needs_raw_media(self) -> bool:
        return CONDITION_KINDS[self.kind][2]

    def describe(self) -> str:
        v = f"{self.value:g}" if self.value is not None else ""
        return {"av": "audio and video as given", "audio": "all visual input removed", "video": "all audio input removed",
                "zero-audio": "every clip's audio input multiplied by 0, masks kept (the model's prediction rule)",
                "zero-video": "every clip's video input multiplied by 0, masks kept (the model's prediction rule)",
                "drop-frames": f"{v} of each clip's visual frames masked out (seeded per clip)",
                "drop-audio": f"{v} of each clip's audio frames dropped (features: masked; waveform: 20 ms frames zeroed)",
                "noise-snr": f"white noise added to the waveform at {v} dB SNR",
                "occlude-face": f"a band of {v} of each face crop's rows set to the mean colour",
                "shut-off": f"per group of {SHUT_OFF_GROUP} consecutive clips, audio (probability {v}) or video "
                            f"(probability {v}) multiplied by 0, masks kept"}[self.kind]


def parse_condition(text: str) -> Condition:
    kind, _, param = text.strip().partition(":")
    if kind not in CONDITION_KINDS:
        raise ConfigError(f"unknown condition {text!r}; valid conditions: {VALID_CONDITIONS}")
    takes, bounds, _ = CONDITION_KINDS[kind]
    if not takes:
        if param:
            raise ConfigError(f"condition {kind!r} takes no parameter (got {text!r}); valid conditions: {VALID_CONDITIONS}")
        return Condition(kind)
    try:
        value = float(param)
    except ValueError:
        raise ConfigError(f"condition {text!r} needs a number after ':', e.g. {kind}:0.5; valid conditions: {VALID_CONDITIONS}") from None
    lo, hi = bounds
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"condition {text!r}: the parameter must lie in [{lo:g}, {hi:g}]")
    return Condition(kind, value)


def parse_conditions(spec: str | Sequence[str | Condition]) -> list[Condition]:
    """"av,audio,drop-frames:0.5" or a list of names/Conditions -> Conditions (checked, no duplicates)."""
    items = [s for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out = [c if isinstance(c, Condition) else parse_condition(c) for c in items]
    if not out:
        raise ConfigError(f"no conditions given; valid conditions: {VALID_CONDITIONS}")
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"conditions repeat: {names}")
    return out


def check_conditions_for_source(conditions: Sequence[Condition], source: str) -> None:
    """source: "raw" (waveforms / face crops) or "features" (a feature cache)."""
    raw_only = [c.name for c in conditions if c.needs_raw_media]
    if source != "raw" and raw_only:
        raise ConfigError(f"conditions {raw_only} change raw media (waveform / face pixels) and cannot be applied to cached "
                          "encoder features; evaluate raw media (leave out --cache, use a model with encoders) or drop them")


def remove_modality(batch: dict[str, Any], modality: str) -> dict[str, Any]:
    """A copy of a collated batch without any `modality` ("audio" / "visual") input."""
    return {**batch, **dict.fromkeys(MODALITY_KEYS[modality])}


def zero_modality(batch: dict[str, Any], modality: str, origin: torch.Tensor | None = None) -> dict[str, Any]:
    """A copy of a collated batch whose `modality` input (features, or waveform / face pixels) is
    multiplied by 0 while its mask stays: the clips still "have" the modality, as when the
    official AuxFormer loop shuts a modality off. `origin` (d,): the feature frame that the model
    maps to zero (`EmotionModel.input_origin`, for a model that z-scores its inputs), so that the
    features are zero where the official loop zeroes them, after normalisation."""
    batch = dict(batch)
    features, raw = MODALITY_KEYS[modality][::2]
    if batch.get(features) is not None:
        x = batch[features]
        batch[features] = x * 0 if origin is None else origin.to(x.device, x.dtype).expand_as(x).clone()
    if batch.get(raw) is not None:
        batch[raw] = batch[raw] * 0
    return batch


def shut_off_draw(p_audio: float, p_visual: float, generator: torch.Generator | None = None) -> str | None:
    """One draw of the official AuxFormer rule for a batch: "audio", "visual" or None.
    r = rand(1): r < p_audio -> audio; p_audio < r < p_audio + p_visual -> visual (train.py)."""
    r = float(torch.rand(1, generator=generator))
    if r < p_audio:
        return "audio"
    return "visual" if p_audio < r < p_audio + p_visual else None


def apply_condition(batch: dict[str, Any], condition: Condition, seed: int = 0,
                    origins: dict[str, torch.Tensor | None] | None = None) -> dict[str, Any]:
    """A copy of a collated batch with the condition applied (inputs are never modified in place).

    Feature batches: audio_features/audio_mask/visual_features/visual_mask. Raw batches:
    input_values/attention_mask (b, n) and pixel_values (b, t, 3, H, W)/pixel_mask (b, t).
    origins: per modality, the frame the model maps to zero (see `zero_modality`), for shut-off.
    """
    if condition.removes:
        return remove_modality(batch, condition.removes)
    batch = dict(batch)
    kind, p = condition.kind, condition.value
    if kind == "av":
        return batch
    if condition.zeroes:
        return zero_modality(batch, condition.zeroes, (origins or {}).get(condition.zeroes))
    if condition.needs_raw_media and ("audio_features" in batch or "visual_features" in batch):
        raise ConfigError(f"condition {condition.name!r} changes raw media and cannot be applied to cached features; "
                          "evaluate without --cache (raw media) or drop this condition")
    if kind == "shut-off":
        if batch.get("index") is None:   # a batch on its own: one draw, seeded by its clips
            off = shut_off_draw(p, p, _clip_generator(seed, condition, "|".join(map(str, batch["ids"]))))
            return batch if off is None else zero_modality(batch, off, (origins or {}).get(off))
        groups = (torch.as_tensor(batch["index"]) // SHUT_OFF_GROUP).tolist()
        draws = {grp: shut_off_draw(p, p, _clip_generator(seed, condition, f"group {grp}")) for grp in set(groups)}
        for modality in ("audio", "visual"):
            rows = torch.tensor([draws[grp] == modality for grp in groups])
            if rows.any():
                batch = _zero_rows(batch, modality, rows, (origins or {}).get(modality))
        return batch
    gens = [_clip_generator(seed, condition, str(i)) for i in batch["ids"]]
    if kind == "drop-frames":
        batch["visual_features"], batch["visual_mask"] = _drop_frames(batch.get("visual_features"), batch.get("visual_mask"), p, gens)
        if batch.get("pixel_values") is not None:
            batch["pixel_values"], batch["pixel_mask"] = _drop_frames(batch["pixel_values"], batch.get("pixel_mask"), p, gens)
    elif kind == "drop-audio":
        batch["audio_features"], batch["audio_mask"] = _drop_frames(batch.get("audio_features"), batch.get("audio_mask"), p, gens)
        if batch.get("input_values") is not None:
            batch["input_values"] = _silence_audio_frames(batch["input_values"], batch.get("attention_mask"), p, gens,
                                                          int(batch.get("sample_rate", 16000) * AUDIO_FRAME_SECONDS))
    elif kind == "noise-snr" and batch.get("input_values") is not None:
        batch["input_values"] = _add_noise(batch["input_values"], batch.get("attention_mask"), p, gens)
    elif kind == "occlude-face" and batch.get("pixel_values") is not None:
        batch["pixel_values"] = _occlude(batch["pixel_values"], batch.get("pixel_mask"), p, gens)
    return batch


def _zero_rows(batch: dict[str, Any], modality: str, rows: torch.Tensor, origin: torch.Tensor | None) -> dict[str, Any]:
    """`zero_modality` on the clips `rows` (b,) bool of a batch only."""
    zeroed = zero_modality(batch, modality, origin)
    for key in MODALITY_KEYS[modality][::2]:
        if batch.get(key) is not None:
            keep = rows.to(batch[key].device).view(-1, *[1] * (batch[key].dim() - 1))
            zeroed[key] = torch.where(keep, zeroed[key], batch[key])
    return zeroed


def _clip_generator(seed: int, condition: Condition, clip_id: str) -> torch.Generator:
    """Randomness per clip, so a clip is changed the same way in any batch on any process."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{condition.name}:{clip_id}".encode()))


def _drop_frames(x: torch.Tensor | None, mask: torch.Tensor | None, p: float, gens, keep_mask: bool = False):
    """Zero a fraction p (rounded) of each row's present frames; mask them out unless keep_mask.
    x (b, t, ...), mask (b, t)."""
    if x is None:
        return x, mask
    x = x.clone()
    mask = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else mask.clone()
    for i, g in enumerate(gens):
        present = mask[i].nonzero().flatten()
        k = int(round(p * len(present)))
        drop = present[torch.randperm(len(present), generator=g)[:k]]
        x[i, drop] = 0
        if not keep_mask:
            mask[i, drop] = False
    return x, mask


def _silence_audio_frames(wave: torch.Tensor, mask, p: float, gens, frame: int) -> torch.Tensor:
    """Zero a fraction p of each clip's `frame`-sample frames. wave (b, n)."""
    b, n = wave.shape
    t = math.ceil(n / frame)
    framed = torch.nn.functional.pad(wave, (0, t * frame - n)).reshape(b, t, frame)
    fmask = None
    if mask is not None:  # a frame is present when its first sample is
        fmask = mask[:, ::frame][:, :t].bool()
    framed, _ = _drop_frames(framed, fmask, p, gens, keep_mask=True)
    return framed.reshape(b, t * frame)[:, :n]


def _add_noise(wave: torch.Tensor, mask, snr_db: float, gens) -> torch.Tensor:
    """White Gaussian noise at snr_db relative to each clip's mean power over its real samples."""
    out = wave.clone()
    mask = torch.ones_like(wave, dtype=torch.bool) if mask is None else mask.bool()
    for i, g in enumerate(gens):
        real = mask[i]
        power = out[i, real].double().pow(2).mean()
        if not real.any() or power == 0:
            continue
        std = float(torch.sqrt(power / 10 ** (snr_db / 10)))
        out[i, real] += torch.randn(int(real.sum()), generator=g).to(out.dtype) * std
    return out


def _occlude(pixels: torch.Tensor, mask, p: float, gens) -> torch.Tensor:
    """A band of round(p * H) rows at a seeded offset set to 0 in every present crop. pixels (b, t, 3, H, W)."""
    out = pixels.clone()
    h = pixels.shape[-2]
    rows = int(round(p * h))
    if rows == 0:
        return out
    for i, g in enumerate(gens):
        for j in range(pixels.shape[1]):
            if mask is not None and not mask[i, j]:
                continue
            top = int(torch.randint(0, h - rows + 1, (1,), generator=g))
            out[i, j, :, top: top + rows] = 0
    return out

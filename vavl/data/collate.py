"""Turning clips into batches the models take.

A sample is a dict: `id`, `speaker`, `audio_features` (ta, da) or None, `visual_features`
(tv, dv) or None, and `labels` (a tensor: class index, label distribution or attribute values).
A batch: `audio_features` (b, ta, da), `audio_mask` (b, ta), `visual_features`, `visual_mask`
(None when no sample in the batch has that modality), `labels`, `ids`, `speakers`.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..losses import IGNORE_INDEX

MODEL_INPUTS = ("audio_features", "audio_mask", "visual_features", "visual_mask", "labels")


def encode_labels(record: dict[str, Any], config) -> torch.Tensor:
    """A manifest record's target for a model config: class index (-100 when the clip has no
    usable label), label distribution (zeros when absent) or attribute values (NaN when absent)."""
    names = config.label_names
    if config.task == "regression":
        attrs = record.get("attributes") or {}
        return torch.tensor([float(attrs[a]) if attrs.get(a) is not None else math.nan for a in names])
    if config.task == "soft_label_classification":
        dist = record.get("label_distribution") or {}
        if not dist and record.get("label") in names:
            dist = {record["label"]: 1.0}
        return torch.tensor([float(dist.get(n, 0.0)) for n in names])
    label = record.get("label")
    return torch.tensor(names.index(label) if label in names else IGNORE_INDEX)


def pad_frames(frames: list[torch.Tensor | None]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """List of (t_i, d) or None -> (b, max t, d) zero-padded and a bool mask (b, max t).
    None entries become all-false rows. All None -> (None, None)."""
    real = [f for f in frames if f is not None]
    if not real:
        return None, None
    d, dtype = real[0].shape[-1], real[0].dtype
    t = max(max(f.shape[0] for f in real), 1)
    x = torch.zeros(len(frames), t, d, dtype=dtype)
    mask = torch.zeros(len(frames), t, dtype=torch.bool)
    for i, f in enumerate(frames):
        if f is not None and f.shape[0]:
            x[i, : f.shape[0]] = torch.as_tensor(f)
            mask[i, : f.shape[0]] = True
    return x, mask


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {"ids": [s["id"] for s in samples], "speakers": [s.get("speaker") for s in samples]}
    for m in ("audio", "visual"):
        batch[f"{m}_features"], batch[f"{m}_mask"] = pad_frames([s.get(f"{m}_features") for s in samples])
    if all(s.get("labels") is not None for s in samples):
        batch["labels"] = torch.stack([torch.as_tensor(s["labels"]) for s in samples])
    return batch


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The keys of a batch that a model's forward takes."""
    return {k: batch[k] for k in MODEL_INPUTS if batch.get(k) is not None}

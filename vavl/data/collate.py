"""Turning clips into batches the models take.

A sample is a dict: `id`, `speaker`, `labels` (a tensor: class index, label distribution or
attribute values) and its inputs, either encoder features — `audio_features` (ta, da) /
`visual_features` (tv, dv), None where missing — or raw media — `input_values` (n,) with
`attention_mask`, `pixel_values` (t, 3, H, W) with `pixel_mask` (see vavl.data.datasets).
A batch: the same keys padded to (b, max t, ...) with bool masks (b, max t) true on real frames
(None when no sample in the batch has that input), `labels`, `ids`, `speakers`, and `index` when
the samples carry one.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..nn.losses import IGNORE_INDEX

FEATURE_INPUTS = ("audio_features", "audio_mask", "visual_features", "visual_mask")
RAW_INPUTS = ("input_values", "attention_mask", "pixel_values", "pixel_mask")
# input key -> its mask key
PADDED = {"audio_features": "audio_mask", "visual_features": "visual_mask",
          "input_values": "attention_mask", "pixel_values": "pixel_mask"}


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


def pad_frames(frames: list[torch.Tensor | None], masks: list[torch.Tensor | None] | None = None
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(t_i, ...) tensors or None -> (b, max t, ...) zero-padded and a bool mask (b, max t), true
    on real frames (or the sample's own (t_i,) mask where `masks` gives one). None entries become
    all-false rows; all None -> (None, None)."""
    real = [f for f in frames if f is not None]
    if not real:
        return None, None
    masks = masks or [None] * len(frames)
    t = max(max(f.shape[0] for f in real), 1)
    x = torch.zeros((len(frames), t, *real[0].shape[1:]), dtype=real[0].dtype)
    mask = torch.zeros(len(frames), t, dtype=torch.bool)
    for i, (f, m) in enumerate(zip(frames, masks)):
        if f is not None and f.shape[0]:
            x[i, : f.shape[0]] = torch.as_tensor(f)
            mask[i, : f.shape[0]] = True if m is None else torch.as_tensor(m).bool()
    return x, mask


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples (feature or raw) -> one batch; see the module docstring."""
    batch: dict[str, Any] = {"ids": [s["id"] for s in samples], "speakers": [s.get("speaker") for s in samples]}
    raw = any(k in samples[0] for k in ("input_values", "pixel_values"))
    for key in ("input_values", "pixel_values") if raw else ("audio_features", "visual_features"):
        mask = PADDED[key]
        batch[key], batch[mask] = pad_frames([s.get(key) for s in samples], [s.get(mask) for s in samples] if raw else None)
    if raw:
        batch["sample_rate"] = samples[0].get("sample_rate", 16000)
    if all(s.get("labels") is not None for s in samples):
        batch["labels"] = torch.stack([torch.as_tensor(s["labels"]) for s in samples])
    if all("index" in s for s in samples):
        batch["index"] = torch.tensor([s["index"] for s in samples])
    return batch


def model_inputs(batch: dict[str, Any], labels: bool = True) -> dict[str, Any]:
    """The keys of a batch that a model's forward takes (features or raw media; labels unless
    labels=False). Empty when nothing is left (e.g. all audio removed from audio-only clips)."""
    keys = FEATURE_INPUTS + RAW_INPUTS + (("labels",) if labels else ())
    return {k: batch[k] for k in keys if batch.get(k) is not None}

"""Missing-modality evaluation: one trained model scored under audio+video, audio only, video only
and partly dropped or corrupted modalities -> metrics.json, report.md, robustness.png, confusion PNGs.

    vavl evaluate --model DIR --manifest M --protocol vavl-1 --split test --cache CACHE \
        --conditions av,audio,video,drop-frames:0.5,drop-audio:0.3 --out REPORT

    from vavl.evaluation import evaluate, primary_metric
    results = evaluate(model, dataset, conditions=["av", "audio", "video"])   # the metrics.json dict
    primary_metric(results)   # UA (classes) or mean CCC (attributes) of the fused head under "av"

Conditions (applied to the batch the model receives, after collation):
  av               nothing removed
  audio            all visual input removed (audio only)
  video            all audio input removed (video only)
  drop-frames:p    in each clip, a fraction p of the visual frames that are present is masked out
                   (mask false, features / pixels zeroed); which ones is seeded by clip id
  drop-audio:p     in each clip, a fraction p of the audio frames is dropped: on features, frames
                   are masked out; on raw waveforms, 20 ms frames are zeroed (silence) — the
                   attention mask is left alone because speech encoders read it as a length
  noise-snr:db     white noise at `db` dB SNR (over the clip's own samples) added to the waveform;
                   raw media only
  occlude-face:p   in every face crop, a horizontal band covering a fraction p of the crop's rows
                   is set to 0 in normalised space (the mean colour); raw media only
noise-snr and occlude-face change signals that cached encoder features no longer hold, so on a
feature cache they raise a ConfigError before anything runs (evaluate raw media instead).

Metrics per condition and head (see vavl.metrics): "fused" is the model's `logits`, the answer a
user gets (for "audio" it comes from the audio head, for "video" from the visual head); "audio"
and "visual" are the auxiliary heads on the clips where that modality is present. A head whose
modality the condition removes, or that the model lacks, gets null metrics with a "note".
Soft-label models are scored against the majority class of each clip's label distribution.

Distributed: under `accelerate launch` / `torchrun` (WORLD_SIZE > 1) the data is sharded with
Accelerate and per-sample predictions are gathered with `gather_for_metrics` (each clip counted
once); Accelerate is imported only then.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import metrics as M
from .errors import ConfigError, DataError
from .outputs import EmotionRecognitionOutput

CONDITION_KINDS = {  # kind -> (takes a parameter, valid range, needs raw media)
    "av": (False, None, False),
    "audio": (False, None, False),
    "video": (False, None, False),
    "drop-frames": (True, (0.0, 1.0), False),
    "drop-audio": (True, (0.0, 1.0), False),
    "noise-snr": (True, (-100.0, 200.0), True),
    "occlude-face": (True, (0.0, 1.0), True),
}
VALID_CONDITIONS = "av, audio, video, drop-frames:P, drop-audio:P, occlude-face:P (P in 0..1), noise-snr:DB"
DEFAULT_CONDITIONS = "av,audio,video,drop-frames:0.5,drop-audio:0.5"
AUDIO_FRAME_SECONDS = 0.02  # drop-audio on raw waveforms works on 20 ms frames
MODEL_HEADS = ("fused", "audio", "visual")


# ---- conditions --------------------------------------------------------------------------
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
    def needs_raw_media(self) -> bool:
        return CONDITION_KINDS[self.kind][2]


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


def apply_condition(batch: dict[str, Any], condition: Condition, seed: int = 0) -> dict[str, Any]:
    """A copy of a collated batch with the condition applied (inputs are never modified in place).

    Feature batches: audio_features/audio_mask/visual_features/visual_mask. Raw batches:
    input_values/attention_mask (b, n) and pixel_values (b, t, 3, H, W)/pixel_mask (b, t).
    """
    batch = dict(batch)
    kind, p = condition.kind, condition.value
    gens = [_clip_generator(seed, condition, str(i)) for i in batch["ids"]]
    if condition.removes:
        keys = {"visual": ("visual_features", "visual_mask", "pixel_values", "pixel_mask"),
                "audio": ("audio_features", "audio_mask", "input_values", "attention_mask")}[condition.removes]
        for key in keys:
            batch[key] = None
    elif kind == "drop-frames":
        batch["visual_features"], batch["visual_mask"] = _drop_frames(batch.get("visual_features"), batch.get("visual_mask"), p, gens)
        if batch.get("pixel_values") is not None:
            batch["pixel_values"], batch["pixel_mask"] = _drop_frames(batch["pixel_values"], batch.get("pixel_mask"), p, gens)
    elif kind == "drop-audio":
        batch["audio_features"], batch["audio_mask"] = _drop_frames(batch.get("audio_features"), batch.get("audio_mask"), p, gens)
        if batch.get("input_values") is not None:
            batch["input_values"] = _silence_audio_frames(batch["input_values"], batch.get("attention_mask"), p, gens,
                                                          int(batch.get("sample_rate", 16000) * AUDIO_FRAME_SECONDS))
    elif kind == "noise-snr":
        _require_raw(batch, condition)
        if batch.get("input_values") is not None:
            batch["input_values"] = _add_noise(batch["input_values"], batch.get("attention_mask"), p, gens)
    elif kind == "occlude-face":
        _require_raw(batch, condition)
        if batch.get("pixel_values") is not None:
            batch["pixel_values"] = _occlude(batch["pixel_values"], batch.get("pixel_mask"), p, gens)
    return batch


def _require_raw(batch, condition: Condition) -> None:
    if "audio_features" in batch or "visual_features" in batch:
        raise ConfigError(f"condition {condition.name!r} changes raw media and cannot be applied to cached features; "
                          "evaluate without --cache (raw media) or drop this condition")


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


# ---- data --------------------------------------------------------------------------------
class IndexedDataset(torch.utils.data.Dataset):
    """Adds each sample's position, so gathered predictions map back to clips."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return {**self.dataset[i], "index": i}


class RawClipDataset(torch.utils.data.Dataset):
    """Manifest records -> processor inputs for models with encoders (decoding on the fly)."""

    def __init__(self, records: list[dict], processor, config=None):
        self.records, self.processor, self.config = records, processor, config

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        from .data import encode_labels

        rec = self.records[i]
        inputs = self.processor(load_clip(rec, self.processor))
        sample = {"id": rec["id"], "speaker": rec.get("speaker"), "record": rec, "sample_rate": self.processor.sample_rate}
        for key in ("input_values", "attention_mask", "pixel_values", "pixel_mask"):
            value = inputs.get(key)
            sample[key] = None if value is None else torch.as_tensor(value)[0]
        if self.config is not None:
            sample["labels"] = encode_labels(rec, self.config)
        return sample


def load_clip(record: dict, processor):
    """A record's audio and video (one file, or separate files as in CREMA-D) as one DecodedClip."""
    video, audio = record.get("video"), record.get("audio")
    if not video and not audio:
        raise DataError(f"clip {record['id']!r} has neither an audio nor a video path in the manifest")
    if not video or not audio or video == audio:
        return processor.decode(video or audio)
    v, a = processor.decode(video, audio=False), processor.decode(audio, video=False)
    return replace(v, audio=a.audio, sample_rate=a.sample_rate, duration=max(v.duration, a.duration))


def _pad(items: list[torch.Tensor | None], masks: list[torch.Tensor | None]):
    """Raw inputs (n_i, ...) + optional own masks (n_i,) -> (b, max n, ...) zero-padded, (b, max n) mask."""
    real = [x for x in items if x is not None]
    if not real:
        return None, None
    n = max(x.shape[0] for x in real)
    out = torch.zeros((len(items), n, *real[0].shape[1:]), dtype=real[0].dtype)
    mask = torch.zeros(len(items), n, dtype=torch.bool)
    for i, (x, m) in enumerate(zip(items, masks)):
        if x is not None:
            out[i, : x.shape[0]] = x
            mask[i, : x.shape[0]] = True if m is None else m.bool()
    return out, mask


def collate_eval(samples: list[dict]) -> dict[str, Any]:
    """vavl.data.collate for feature samples, padding for raw samples; plus `index`."""
    from .data import collate

    if "input_values" in samples[0] or "pixel_values" in samples[0]:
        batch = {"ids": [s["id"] for s in samples], "speakers": [s.get("speaker") for s in samples],
                 "sample_rate": samples[0].get("sample_rate", 16000)}
        batch["input_values"], batch["attention_mask"] = _pad([s.get("input_values") for s in samples],
                                                              [s.get("attention_mask") for s in samples])
        batch["pixel_values"], batch["pixel_mask"] = _pad([s.get("pixel_values") for s in samples],
                                                          [s.get("pixel_mask") for s in samples])
        if all(s.get("labels") is not None for s in samples):
            batch["labels"] = torch.stack([torch.as_tensor(s["labels"]) for s in samples])
    else:
        batch = collate(samples)
    batch["index"] = torch.tensor([s["index"] for s in samples])
    return batch


FEATURE_INPUTS = ("audio_features", "audio_mask", "visual_features", "visual_mask")
RAW_INPUTS = ("input_values", "attention_mask", "pixel_values", "pixel_mask")


def model_kwargs(batch: dict[str, Any]) -> dict[str, Any]:
    """What the model's forward takes from a (conditioned) batch; labels are not passed. Empty when
    the condition left nothing (e.g. "video" on audio-only clips)."""
    return {k: batch[k] for k in FEATURE_INPUTS + RAW_INPUTS if batch.get(k) is not None}


# ---- running the model ---------------------------------------------------------------------
@dataclass
class Predictions:
    """Per-clip outputs of one pass over a dataset, in dataset order."""

    ids: list[str]
    speakers: list[str]
    labels: torch.Tensor                   # (n,) class indices / (n, c) distributions / (n, a) values
    logits: torch.Tensor                   # (n, c)
    audio_present: torch.Tensor            # (n,) bool
    visual_present: torch.Tensor           # (n,) bool
    audio_logits: torch.Tensor | None = None
    visual_logits: torch.Tensor | None = None
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (n, d)


def emotion_config(model):
    """The EmotionConfig that names the model's labels (a wrapped fusion model's, if need be)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "label_names"):
        return config
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and hasattr(cfg, "label_names"):
            return cfg
    raise ConfigError(f"{type(model).__name__} has no emotion config (label names, task); is it a vavl model?")


def takes_raw_media(model) -> bool:
    params = inspect.signature(model.forward).parameters
    return "input_values" in params or "pixel_values" in params


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def predict_dataset(model, dataset, condition: Condition | str = "av", **kwargs) -> Predictions:
    """Run `model` over `dataset` under one condition (see `predict_conditions` for the options)."""
    condition = parse_condition(condition) if isinstance(condition, str) else condition
    return predict_conditions(model, dataset, [condition], **kwargs)[condition.name]


@torch.no_grad()
def predict_conditions(model, dataset, conditions: Sequence[Condition], *, batch_size: int = 16, seed: int = 0,
                       accelerator=None, embeddings: bool = False, num_workers: int = 0,
                       progress: bool = True) -> dict[str, Predictions]:
    """One pass over `dataset`; every batch is run under each condition (media are decoded once).
    With an `accelerator` the data is sharded and predictions gathered (each clip once)."""
    from tqdm.auto import tqdm

    indexed = dataset if isinstance(dataset, IndexedDataset) else IndexedDataset(dataset)
    loader = torch.utils.data.DataLoader(indexed, batch_size=batch_size, shuffle=False, collate_fn=collate_eval,
                                         num_workers=num_workers)
    device = next(model.parameters()).device
    main = True
    if accelerator is not None:
        loader, device, main = accelerator.prepare_data_loader(loader), accelerator.device, accelerator.is_main_process
        model.to(device)
    was_training = model.training
    model.eval()
    parts: dict[str, list[dict[str, torch.Tensor]]] = {c.name: [] for c in conditions}
    names = ", ".join(parts)
    for batch in tqdm(loader, desc=f"evaluate {names}", unit="batch", disable=not (progress and main), leave=False):
        for condition in conditions:
            part = _run_batch(model, apply_condition(batch, condition, seed), device, embeddings)
            if accelerator is not None:
                part = accelerator.gather_for_metrics(part)
            parts[condition.name].append({k: v.cpu() for k, v in part.items()})
    model.train(was_training)
    return {name: _merge(p, indexed) for name, p in parts.items()}


def _run_batch(model, batch: dict[str, Any], device, embeddings: bool) -> dict[str, torch.Tensor]:
    kwargs = model_kwargs(batch)
    if kwargs:
        out = model(**{k: v.to(device) for k, v in kwargs.items()})
    else:  # no input left: no prediction (scored as "no clip has any input"); same keys on every process
        b, c = len(batch["ids"]), emotion_config(model).num_labels
        nothing = torch.zeros(b, dtype=torch.bool, device=device)
        out = EmotionRecognitionOutput(logits=torch.zeros(b, c, device=device), audio_logits=torch.zeros(b, c, device=device),
                                       visual_logits=torch.zeros(b, c, device=device), audio_present=nothing, visual_present=nothing)
    part = {"index": batch["index"].to(device), "logits": out.logits.float(),
            "audio_present": out.audio_present, "visual_present": out.visual_present}
    if "labels" in batch:
        part["labels"] = batch["labels"].to(device)
    for head in ("audio_logits", "visual_logits"):
        if getattr(out, head) is not None:
            part[head] = getattr(out, head).float()
    if embeddings:
        for name in ("fused_embedding", "audio_embedding", "visual_embedding"):
            if getattr(out, name, None) is not None:
                part[name] = getattr(out, name).float()
    return part


def _merge(parts: list[dict[str, torch.Tensor]], indexed: IndexedDataset) -> Predictions:
    """Batches (possibly gathered from several processes) -> Predictions in dataset order."""
    if not parts:
        raise DataError("the dataset to evaluate is empty")
    merged = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    order = merged["index"].argsort()
    merged = {k: v[order] for k, v in merged.items()}
    index = merged["index"].tolist()
    if index != list(range(len(indexed))):
        raise RuntimeError(f"gathered {len(index)} predictions for {len(indexed)} clips; some were counted twice or lost")
    if "labels" not in merged:
        raise DataError("the dataset gives no labels; build it with the model's config so labels are encoded")
    records = [_meta(indexed.dataset, i) for i in index]
    return Predictions(
        ids=[r[0] for r in records], speakers=[r[1] for r in records], labels=merged["labels"], logits=merged["logits"],
        audio_present=merged["audio_present"].bool(), visual_present=merged["visual_present"].bool(),
        audio_logits=merged.get("audio_logits"), visual_logits=merged.get("visual_logits"),
        embeddings={k: merged[k] for k in ("fused_embedding", "audio_embedding", "visual_embedding") if k in merged},
    )


def _meta(dataset, i: int) -> tuple[str, str]:
    """(id, speaker) of sample i without loading its features when the dataset has records."""
    records = getattr(dataset, "records", None)
    if records is not None:
        return str(records[i]["id"]), str(records[i].get("speaker"))
    s = dataset[i]
    return str(s["id"]), str(s.get("speaker"))


# ---- scoring -----------------------------------------------------------------------------
def gold_classes(labels: torch.Tensor) -> np.ndarray:
    """Class indices (n,) from indices or from label distributions (majority class; -100 without votes)."""
    if labels.dim() == 1:
        return labels.long().numpy()
    return np.where(labels.sum(-1).numpy() > 0, labels.argmax(-1).numpy(), M.IGNORE_INDEX)


def null_head(config, note: str) -> dict[str, Any]:
    keys = M.CLASS_METRICS if config.task != "regression" else [*config.label_names, "mean_ccc"]
    return {**{k: None for k in keys}, "n": 0, "ci95": None, "per_speaker": None, "note": note}


def score_head(pred: torch.Tensor, labels: torch.Tensor, speakers: list[str], config, *, bootstrap: int, seed: int) -> dict:
    """Metrics, 95% intervals and the per-speaker breakdown of one head on its clips."""
    if config.task == "regression":
        attrs = config.label_names
        p, g = pred.double().numpy(), labels.double().numpy()
        out = M.regression_metrics(p, g, attrs)
        out["n"] = len(p)
        out["ci95"] = M.regression_ci(p, g, attrs, n_resamples=bootstrap, seed=seed)
        out["per_speaker"] = M.per_speaker(lambda a, b: {"mean_ccc": M.regression_metrics(a, b, attrs)["mean_ccc"]}, speakers, p, g)
        return out
    gold, guess = gold_classes(labels), pred.argmax(-1).numpy()
    keep = gold != M.IGNORE_INDEX
    out = M.classification_metrics(gold, guess)
    out["n"] = int(keep.sum())
    out["ci95"] = M.classification_ci(gold, guess, n_resamples=bootstrap, seed=seed)
    out["confusion_matrix"] = M.confusion_matrix(gold, guess, config.num_labels).tolist()
    out["per_class_recall"] = dict(zip(config.label_names, _nan_to_none(M.per_class_recall(gold, guess, config.num_labels))))
    out["per_speaker"] = M.per_speaker(lambda a, b: {"UA": M.unweighted_accuracy(a, b), "WA": M.weighted_accuracy(a, b)},
                                       np.asarray(speakers)[keep], gold[keep], guess[keep])
    return _nan_to_none(out)


def _nan_to_none(x):
    """JSON has no NaN: undefined metrics become null."""
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, (float, np.floating)) and math.isnan(x):
        return None
    return x.item() if isinstance(x, np.generic) else x


def score_predictions(pred: Predictions, condition: Condition, config, *, bootstrap: int = 1000, seed: int = 0) -> dict:
    """{"fused": {...}, "audio": {...}, "visual": {...}} for one condition."""
    any_present = pred.audio_present | pred.visual_present
    heads = {"fused": (pred.logits, any_present), "audio": (pred.audio_logits, pred.audio_present),
             "visual": (pred.visual_logits, pred.visual_present)}
    out = {}
    for head, (logits, present) in heads.items():
        if head == condition.removes:
            out[head] = null_head(config, f"{head} removed by condition {condition.name}")
        elif logits is None:
            out[head] = null_head(config, f"the model has no {head} head")
        elif not present.any():
            out[head] = null_head(config, f"no clip has {'any input' if head == 'fused' else head} under this condition")
        else:
            keep = present.numpy()
            out[head] = score_head(logits[present], pred.labels[present], list(np.asarray(pred.speakers)[keep]), config,
                                   bootstrap=bootstrap, seed=seed)
            out[head]["n_without_input"] = int((~present).sum())
    return out


def evaluate(model, dataset, conditions: str | Sequence[str | Condition] = ("av",), *, batch_size: int = 16,
             bootstrap: int = 1000, seed: int = 0, accelerator=None, progress: bool = True, meta: dict | None = None) -> dict:
    """Score `model` on `dataset` (a FeatureDataset, a RawClipDataset or any dataset of collate-able
    samples with labels) under each condition. Returns the metrics.json dict (see module docstring)."""
    conditions = parse_conditions(conditions)
    config = emotion_config(model)
    check_conditions_for_source(conditions, data_source(dataset))
    if accelerator is None and _distributed():
        from accelerate import Accelerator  # only distributed runs need Accelerate

        accelerator = Accelerator()
    results: dict[str, Any] = {**(meta or {}), "task": config.task, "labels": config.label_names, "n_samples": len(dataset),
                               "bootstrap": {"resamples": bootstrap, "confidence": 0.95, "seed": seed},
                               "condition_semantics": {c.name: describe(c) for c in conditions}, "conditions": {}}
    preds = predict_conditions(model, dataset, conditions, batch_size=batch_size, seed=seed, accelerator=accelerator,
                               progress=progress)
    for c in conditions:
        results["conditions"][c.name] = score_predictions(preds[c.name], c, config, bootstrap=bootstrap, seed=seed)
    return results


def data_source(dataset) -> str:
    """"raw" when samples hold waveforms / face crops, "features" when they hold encoder features."""
    if isinstance(dataset, RawClipDataset):
        return "raw"
    sample = dataset[0]
    return "raw" if sample.get("input_values") is not None or sample.get("pixel_values") is not None else "features"


def check_conditions_for_source(conditions: Sequence[Condition], source: str) -> None:
    raw_only = [c.name for c in conditions if c.needs_raw_media]
    if source != "raw" and raw_only:
        raise ConfigError(f"conditions {raw_only} change raw media (waveform / face pixels) and cannot be applied to cached "
                          "encoder features; evaluate raw media (leave out --cache, use a model with encoders) or drop them")


def describe(c: Condition) -> str:
    v = f"{c.value:g}" if c.value is not None else ""
    return {"av": "audio and video as given", "audio": "all visual input removed", "video": "all audio input removed",
            "drop-frames": f"{v} of each clip's visual frames masked out (seeded per clip)",
            "drop-audio": f"{v} of each clip's audio frames dropped (features: masked; waveform: 20 ms frames zeroed)",
            "noise-snr": f"white noise added to the waveform at {v} dB SNR",
            "occlude-face": f"a band of {v} of each face crop's rows set to the mean colour"}[c.kind]


def primary_metric(results: dict, condition: str = "av", head: str = "fused") -> float:
    """The number to select checkpoints on: UA (classes) or mean CCC (attributes); NaN if undefined."""
    scores = results["conditions"][condition][head]
    value = scores.get("mean_ccc") if results["task"] == "regression" else scores.get("UA")
    return float("nan") if value is None else float(value)


# ---- checks before running -------------------------------------------------------------------
def check_labels(config, records: list[dict], manifest: str = "manifest") -> None:
    """The model's classes must be the manifest's classes (regression: its attributes must be there)."""
    names = set(config.label_names)
    if config.task == "regression":
        have = {a for r in records for a, v in (r.get("attributes") or {}).items() if v is not None}
        missing = sorted(names - have)
        if missing:
            raise ConfigError(f"{manifest}: the model predicts attributes {sorted(names)} but no clip has {missing}; "
                              "evaluate on a manifest with those attributes or use a model trained on this one")
        return
    have = {r["label"] for r in records if r.get("label") is not None}
    have |= {k for r in records for k in (r.get("label_distribution") or {})}
    if have != names:
        raise ConfigError(f"{manifest}: the manifest's labels {sorted(have)} differ from the model's {sorted(names)} "
                          f"(unknown to the model: {sorted(have - names)}, never in the manifest: {sorted(names - have)}); "
                          "evaluate the model on the corpus/label definition it was trained for")


def select_records(records: list[dict], protocol: str | None, split: str, fold: int | None) -> list[dict]:
    """The clips to score: a protocol's split (a fold's test/dev/train part), or every clip without a protocol."""
    from .data import split_records

    if protocol is None:
        if fold is not None:
            raise ConfigError("--fold needs --protocol (the k-fold protocol the fold belongs to)")
        return records
    chosen = split_records(records, protocol, fold)[split]
    if not chosen:
        raise DataError(f"protocol {protocol!r} has no {split!r} clips" + (f" for fold {fold}" if fold is not None else ""))
    return chosen


def load_model(path: str):
    """A saved vavl model folder (save_pretrained) -> model in eval mode."""
    import vavl.models  # noqa: F401  (registers the model classes with AutoModel)
    from transformers import AutoModel

    if not Path(path, "config.json").is_file():
        raise ConfigError(f"{path}: no config.json; --model must be a folder written by save_pretrained "
                          "(e.g. the output of recipes/finetune.py)")
    return AutoModel.from_pretrained(path).eval()


def build_dataset(model, model_dir: str, records: list[dict], cache: str | None):
    """FeatureDataset over a cache for feature models; decoded media for models with encoders."""
    config = emotion_config(model)
    if cache is not None:
        from .data.cache import FeatureCache, FeatureDataset

        store = FeatureCache(cache)
        missing = [r["id"] for r in records if not store.has(r["id"])]
        if missing:
            raise DataError(f"{cache}: {len(missing)} of {len(records)} clips are not in the cache (e.g. {missing[:3]}); "
                            "run `vavl extract` on this manifest first")
        first = store.read(records[0]["id"])
        for m in ("audio", "visual"):
            x = first.get(f"{m}_features")
            if x is not None and x.shape[-1] != getattr(config, f"{m}_dim"):
                raise ConfigError(f"{cache}: {m} features are {x.shape[-1]}-d but the model's {m}_dim is "
                                  f"{getattr(config, f'{m}_dim')}; use the cache made with the model's encoders")
        return FeatureDataset(store, records, config)
    if not takes_raw_media(model):
        raise ConfigError(f"{model_dir}: this model takes encoder features, not media; give --cache CACHE "
                          "(made by `vavl extract` with the model's encoders)")
    from .processing import AudioVisualProcessor

    if not Path(model_dir, "preprocessor_config.json").is_file():
        raise ConfigError(f"{model_dir}: no preprocessor_config.json; save the AudioVisualProcessor next to the model")
    return RawClipDataset(records, AudioVisualProcessor.from_pretrained(model_dir), config)


# ---- report files --------------------------------------------------------------------------
def write_report(results: dict, out_dir: str | os.PathLike) -> Path:
    """metrics.json, report.md, robustness.png and confusion_<condition>.png (classes) into out_dir."""
    from .plots import plot_confusion, plot_robustness

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "metrics.json", json.dumps(results, indent=2))
    _atomic_write(out / "report.md", markdown_report(results))
    plot_robustness(results, out / "robustness.png")
    if results["task"] != "regression":
        for name, heads in results["conditions"].items():
            cm = heads["fused"].get("confusion_matrix")
            if cm is not None:
                plot_confusion(np.asarray(cm), results["labels"], out / f"confusion_{safe_name(name)}.png",
                               title=f"fused head, condition {name}")
    return out


def safe_name(condition: str) -> str:
    return condition.replace(":", "_")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(value, ci=None, percent: bool = True) -> str:
    """A metric for the tables: ×100 with one decimal (percent) or three decimals; "—" when undefined."""
    if value is None:
        return "—"
    scale, spec = (100, ".1f") if percent else (1, ".3f")
    text = f"{scale * value:{spec}}"
    if ci and None not in ci:
        text += f" [{scale * ci[0]:{spec}}, {scale * ci[1]:{spec}}]"
    return text


def markdown_report(results: dict) -> str:
    """The tables of report.md: one row per condition and head, then the per-speaker breakdown."""
    lines = ["# Missing-modality evaluation", ""]
    for key in ("model", "manifest", "protocol", "fold", "split", "source"):
        if results.get(key) is not None:
            lines.append(f"- {key}: `{results[key]}`")
    lines += [f"- clips: {results['n_samples']}, task: {results['task']}, labels: {', '.join(results['labels'])}",
              f"- intervals: 95% percentile bootstrap, {results['bootstrap']['resamples']} resamples", ""]
    regression = results["task"] == "regression"
    attrs = results["labels"]
    if regression:
        lines += ["Per attribute: CCC / Pearson r / RMSE; mean CCC with its 95% interval.", "",
                  "| condition | head | " + " | ".join(attrs) + " | mean CCC [95% CI] | n |",
                  "|---|---|" + "---|" * (len(attrs) + 2)]
    else:
        lines += ["All numbers ×100; UA = mean per-class recall, WA = accuracy; UA with its 95% interval.", "",
                  "| condition | head | UA [95% CI] | WA | macro-F1 | micro-F1 | n |", "|---|---|---|---|---|---|---|"]
    for cond, heads in results["conditions"].items():
        for head in MODEL_HEADS:
            s = heads[head]
            ci = s.get("ci95") or {}
            if regression:
                cells = [" / ".join(_fmt(s[a][k], percent=False) for k in M.REGRESSION_METRICS) if s.get(a) else "—"
                         for a in attrs]
                cells.append(_fmt(s.get("mean_ccc"), ci.get("mean_ccc"), percent=False))
            else:
                cells = [_fmt(s.get("UA"), ci.get("UA"))] + [_fmt(s.get(k)) for k in ("WA", "macro_f1", "micro_f1")]
            n = s.get("n") if s.get("n") else (s.get("note") or 0)
            lines.append(f"| {cond} | {head} | " + " | ".join(cells) + f" | {n} |")
    lines += ["", "Conditions:", ""] + [f"- `{k}`: {v}" for k, v in results["condition_semantics"].items()]
    first = next(iter(results["conditions"]))
    speakers = results["conditions"][first]["fused"].get("per_speaker") or {}
    if speakers:
        key = "mean_ccc" if regression else "UA"
        lines += ["", f"## Per speaker (condition `{first}`, fused head, {key}{'' if regression else ' ×100'})", "",
                  "| speaker | " + key + " | n |", "|---|---|---|"]
        lines += [f"| {spk} | {_fmt(v.get(key), percent=not regression)} | {v['n']} |" for spk, v in speakers.items()]
    return "\n".join(lines) + "\n"


# ---- command line --------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="folder written by save_pretrained (recipes/finetune.py output)")
    parser.add_argument("--manifest", required=True, help="manifest (.jsonl) of the clips to score")
    parser.add_argument("--protocol", default=None, help="fold/split protocol in the manifest, e.g. vavl-1 or speaker-5fold")
    parser.add_argument("--fold", type=int, default=None, help="test fold of a k-fold protocol")
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"), help="split to score (default test)")
    parser.add_argument("--cache", default=None, help="feature cache made by `vavl extract` (feature models)")
    parser.add_argument("--conditions", default=DEFAULT_CONDITIONS, help=f"comma-separated; valid: {VALID_CONDITIONS}")
    parser.add_argument("--out", required=True, help="report folder: metrics.json, report.md, robustness.png, confusion_*.png")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the frame dropping / noise / occlusion and the bootstrap")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (single process; accelerate launch picks its own)")


def run(args: argparse.Namespace) -> int:
    conditions = parse_conditions(args.conditions)          # every check before any model runs
    from .data import read_manifest

    records = select_records(read_manifest(args.manifest), args.protocol, args.split, args.fold)
    model = load_model(args.model)
    check_labels(emotion_config(model), read_manifest(args.manifest), args.manifest)
    dataset = build_dataset(model, args.model, records, args.cache)
    check_conditions_for_source(conditions, data_source(dataset))
    if not _distributed():
        model.to(args.device)
    meta = {"model": str(args.model), "manifest": str(args.manifest), "protocol": args.protocol, "fold": args.fold,
            "split": args.split if args.protocol else "all clips", "source": "feature cache" if args.cache else "raw media"}
    results = evaluate(model, dataset, conditions, batch_size=args.batch_size, bootstrap=args.bootstrap, seed=args.seed, meta=meta)
    if int(os.environ.get("RANK", "0")) == 0:
        out = write_report(results, args.out)
        print(markdown_report(results))
        print(f"wrote {out}/metrics.json, report.md, robustness.png")
    return 0

"""Missing-modality evaluation: one trained model scored under audio+video, audio only, video only
and partly dropped or corrupted modalities (the conditions of vavl.data.conditions).

    from vavl.evaluation.scoring import evaluate, primary_metric
    results = evaluate(model, dataset, conditions=["av", "audio", "video"])   # the metrics.json dict
    primary_metric(results)   # UA (classes) or mean CCC (attributes) of the fused head under "av"

`vavl evaluate` (vavl.cli.evaluate) writes these results as a report (vavl.evaluation.reports); the fine-tune
recipe scores its dev and test splits through the same `evaluate`.

Metrics per condition and head (see vavl.evaluation.metrics): "fused" is the model's `logits`, the answer a
user gets (for "audio" it comes from the audio head, for "video" from the visual head); "audio"
and "visual" are the auxiliary heads on the clips where that modality is present. Each head also
gets the model's own training loss for that head (`EmotionModel.head_loss`) on those clips. A head
whose modality the condition removes, or that the model lacks, gets null metrics with a "note".
Soft-label models are scored against the majority class of each clip's label distribution; a clip
whose top votes tie is left out, as a tied hard label is. The 95% intervals resample speakers as
clusters by default (metrics.json names the unit under "bootstrap"), or clips. A speaker bootstrap
over fewer than MIN_BOOTSTRAP_CLUSTERS speakers is degenerate (two speakers give three distinct
resamples, and the "interval" is the range between their scores): a head scored on fewer speakers
gets the clip bootstrap instead, flagged in its "ci_unit" ("clip") and "ci_note", and report.md marks it.

Distributed: under `accelerate launch` / `torchrun` (WORLD_SIZE > 1) the data is sharded with
Accelerate and per-sample predictions are gathered with `gather_for_metrics` (each clip counted
once); Accelerate is imported only then.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from . import metrics as M
from ..data.collate import collate, model_inputs
from ..data.conditions import Condition, apply_condition, check_conditions_for_source, parse_condition, parse_conditions
from ..data.datasets import IndexedDataset, data_source
from ..core.errors import ConfigError, DataError
from ..models.outputs import EmotionRecognitionOutput

BOOTSTRAP_UNITS = ("speaker", "clip")
MIN_BOOTSTRAP_CLUSTERS = 10   # fewer speakers than this: the speaker bootstrap is degenerate (see module docstring)
EMBEDDINGS = ("fused_embedding", "audio_embedding", "visual_embedding")


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


def distributed() -> bool:
    """Whether this process is one of several (accelerate launch / torchrun)."""
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
    loader = torch.utils.data.DataLoader(indexed, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                         num_workers=num_workers)
    device = next(model.parameters()).device
    main = True
    if accelerator is not None:  # sharded; not registered with the accelerator, so never in its checkpoints
        from accelerate.data_loader import prepare_data_loader

        device, main = accelerator.device, accelerator.is_main_process
        loader = prepare_data_loader(loader, device, num_processes=accelerator.num_processes,
                                     process_index=accelerator.process_index, put_on_device=True)
        model.to(device)
    was_training = model.training
    model.eval()
    parts: dict[str, list[dict[str, torch.Tensor]]] = {c.name: [] for c in conditions}
    names = ", ".join(parts)
    origins = {m: model.input_origin(m) for m in ("audio", "visual")} if hasattr(model, "input_origin") else None
    for batch in tqdm(loader, desc=f"evaluate {names}", unit="batch", disable=not (progress and main), leave=False):
        for condition in conditions:
            part = _run_batch(model, apply_condition(batch, condition, seed, origins), device, embeddings)
            if accelerator is not None:
                part = accelerator.gather_for_metrics(part)
            parts[condition.name].append({k: v.cpu() for k, v in part.items()})
    model.train(was_training)
    return {name: _merge(p, indexed) for name, p in parts.items()}


def _run_batch(model, batch: dict[str, Any], device, embeddings: bool = False) -> dict[str, torch.Tensor]:
    """The model's outputs on one (conditioned) batch, as tensors that can be gathered."""
    kwargs = model_inputs(batch, labels=False)
    if kwargs:
        out = model(**{k: v.to(device) for k, v in kwargs.items()})
    else:  # no input left: no prediction (scored as "no clip has any input"); same keys on every process
        b, c = len(batch["ids"]), model.emotion_config.num_labels
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
    for name in EMBEDDINGS if embeddings else ():
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
        embeddings={k: merged[k] for k in EMBEDDINGS if k in merged},
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
    """Class indices (n,) from indices or from label distributions: the majority class, or -100
    (ignored) without votes or where the top votes tie, as hard-label ties are."""
    if labels.dim() == 1:
        return labels.long().numpy()
    votes = labels.numpy()
    top = votes.max(-1, keepdims=True)
    tied = (votes == top).sum(-1) > 1
    return np.where((votes.sum(-1) > 0) & ~tied, votes.argmax(-1), M.IGNORE_INDEX)


def null_head(config, note: str) -> dict[str, Any]:
    keys = M.CLASS_METRICS if config.task != "regression" else [*config.label_names, "mean_ccc"]
    return {**{k: None for k in keys}, "loss": None, "n": 0, "n_unique": 0, "ci95": None, "ci_unit": None, "per_speaker": None,
            "note": note}


def score_head(pred: torch.Tensor, labels: torch.Tensor, ids: list[str], speakers: list[str], config, *,
               bootstrap: int, seed: int, bootstrap_unit: str = "speaker") -> dict:
    """Metrics, 95% intervals and the per-speaker breakdown of one head on its clips. The intervals
    resample speakers (whole clusters; the independent units of a speaker-independent test set)
    or, bootstrap_unit="clip", clips."""
    if config.task == "regression":
        attrs = config.label_names
        p, g = pred.double().numpy(), labels.double().numpy()
        out = M.regression_metrics(p, g, attrs)
        out["n"], out["n_unique"] = len(p), len(set(ids))
        clusters = interval_unit(out, speakers, bootstrap_unit)
        out["ci95"] = M.regression_ci(p, g, attrs, n_resamples=bootstrap, seed=seed, clusters=clusters)
        out["per_speaker"] = M.per_speaker(lambda a, b: {"mean_ccc": M.regression_metrics(a, b, attrs)["mean_ccc"]}, speakers, p, g)
        return out
    gold, guess = gold_classes(labels), pred.argmax(-1).numpy()
    keep = gold != M.IGNORE_INDEX
    out = M.classification_metrics(gold, guess)
    out["n"], out["n_unique"] = int(keep.sum()), len(set(np.asarray(ids)[keep]))
    clusters = interval_unit(out, list(np.asarray(speakers)[keep]), bootstrap_unit)
    if clusters is not None:   # classification_ci takes one label per sample and drops the unlabelled itself
        clusters = speakers
    out["ci95"] = M.classification_ci(gold, guess, n_resamples=bootstrap, seed=seed, clusters=clusters)
    out["confusion_matrix"] = M.confusion_matrix(gold, guess, config.num_labels).tolist()
    out["per_class_recall"] = dict(zip(config.label_names, _nan_to_none(M.per_class_recall(gold, guess, config.num_labels))))
    out["per_speaker"] = M.per_speaker(lambda a, b: {"UA": M.unweighted_accuracy(a, b), "WA": M.weighted_accuracy(a, b)},
                                       np.asarray(speakers)[keep], gold[keep], guess[keep])
    return _nan_to_none(out)


def interval_unit(out: dict, speakers: list[str], bootstrap_unit: str) -> list[str] | None:
    """What the head's intervals resample: the speakers (returned as clusters) when asked for and
    there are at least MIN_BOOTSTRAP_CLUSTERS of them, else clips (None). Records the unit in
    out["ci_unit"] and, where a speaker bootstrap was asked for but is degenerate, why in out["ci_note"]."""
    if bootstrap_unit != "speaker":
        out["ci_unit"] = "clip"
        return None
    k = len(set(map(str, speakers)))
    if k < MIN_BOOTSTRAP_CLUSTERS:
        out["ci_unit"] = "clip"
        out["ci_note"] = (f"speaker bootstrap degenerate: {k} speaker(s), fewer than {MIN_BOOTSTRAP_CLUSTERS}; the "
                          "interval resamples clips instead, which treats a speaker's clips as independent and is too narrow")
        return None
    out["ci_unit"] = "speaker"
    return list(speakers)


def _nan_to_none(x):
    """JSON has no NaN: undefined metrics become null."""
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, (float, np.floating)) and math.isnan(x):
        return None
    return x.item() if isinstance(x, np.generic) else x


def score_predictions(pred: Predictions, condition: Condition, config, *, bootstrap: int = 1000, seed: int = 0,
                      head_loss=None, bootstrap_unit: str = "speaker") -> dict:
    """{"fused": {...}, "audio": {...}, "visual": {...}} for one condition. head_loss(logits,
    labels) -> loss tensor (the model's `head_loss`) adds each head's "loss"."""
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
            out[head] = score_head(logits[present], pred.labels[present], list(np.asarray(pred.ids)[keep]),
                                   list(np.asarray(pred.speakers)[keep]), config, bootstrap=bootstrap, seed=seed,
                                   bootstrap_unit=bootstrap_unit)
            out[head]["loss"] = None if head_loss is None else _nan_to_none(float(head_loss(logits[present], pred.labels[present])))
            out[head]["n_without_input"] = int((~present).sum())
    return out


def data_provenance(dataset) -> dict[str, Any]:
    """What the scored clips are: their corpus (or that they are synthetic) and the label field read."""
    records = getattr(dataset, "records", None) or []
    corpora = sorted({str(r.get("corpus")) for r in records if r.get("corpus")})
    return {"corpus": corpora[0] if len(corpora) == 1 else (corpora or None),
            "synthetic": bool(records) and all(r.get("synthetic") for r in records),
            "label_field": "label"}   # relabelled records carry the chosen field's value in "label"


def evaluate(model, dataset, conditions: str | Sequence[str | Condition] = ("av",), *, batch_size: int = 16,
             bootstrap: int = 1000, seed: int = 0, accelerator=None, num_workers: int = 0, progress: bool = True,
             meta: dict | None = None, bootstrap_unit: str = "speaker") -> dict:
    """Score `model` on `dataset` (a FeatureDataset, a RawClipDataset or any dataset of collate-able
    samples with labels) under each condition. Returns the metrics.json dict (see module docstring).
    bootstrap_unit: what the 95% intervals resample, "speaker" (default) or "clip"."""
    if bootstrap_unit not in BOOTSTRAP_UNITS:
        raise ConfigError(f"bootstrap unit {bootstrap_unit!r} must be one of {BOOTSTRAP_UNITS}")
    conditions = parse_conditions(conditions)
    config = model.emotion_config
    check_conditions_for_source(conditions, data_source(dataset))
    if accelerator is None and distributed():
        from accelerate import Accelerator  # only distributed runs need Accelerate

        accelerator = Accelerator()
    from ..models.provenance import model_provenance

    results: dict[str, Any] = {**(meta or {}), "model_provenance": model_provenance(model), "data": data_provenance(dataset),
                               "task": config.task, "labels": config.label_names, "n_samples": len(dataset),
                               "bootstrap": {"resamples": bootstrap, "confidence": 0.95, "seed": seed, "unit": bootstrap_unit,
                                             "min_clusters": MIN_BOOTSTRAP_CLUSTERS},
                               "condition_semantics": {c.name: c.describe() for c in conditions}, "conditions": {}}
    preds = predict_conditions(model, dataset, conditions, batch_size=batch_size, seed=seed, accelerator=accelerator,
                               num_workers=num_workers, progress=progress)
    head_loss = getattr(model, "head_loss", None)
    for c in conditions:
        results["conditions"][c.name] = score_predictions(preds[c.name], c, config, bootstrap=bootstrap, seed=seed,
                                                          head_loss=head_loss, bootstrap_unit=bootstrap_unit)
    return results


def primary_metric(results: dict, condition: str = "av", head: str = "fused") -> float:
    """The number to select checkpoints on: UA (classes) or mean CCC (attributes); NaN if undefined."""
    scores = results["conditions"][condition][head]
    value = scores.get("mean_ccc") if results["task"] == "regression" else scores.get("UA")
    return float("nan") if value is None else float(value)


def headline(results: dict, condition: str = "av", head: str = "fused") -> dict[str, float | int | None]:
    """One head's single-number metrics under one condition, flat: n, n_unique, loss and UA / WA /
    macro_f1 / micro_f1 (classes) or ccc (mean) and ccc_<attribute> (attributes)."""
    s = results["conditions"][condition][head]
    row = {"n": s["n"], "n_unique": s["n_unique"], "loss": s["loss"]}
    if results["task"] == "regression":
        row["ccc"] = s["mean_ccc"]
        row.update({f"ccc_{a}": (s[a] or {}).get("ccc") for a in results["labels"]})
    else:
        row.update({k: s[k] for k in M.CLASS_METRICS})
    return row

"""Fine-tune a vavl fusion model on a manifest, with Accelerate: setup -> train -> evaluate -> save.

    python recipes/finetune.py --config recipes/configs/crema_d/auxformer.yaml train.epochs=5
    accelerate launch recipes/finetune.py --config recipes/configs/crema_d/auxformer.yaml
    python recipes/finetune.py --config ... --resume latest      # continue where a run stopped

Two data paths, chosen by `data.cache`:
- cached features (fast path): frozen-encoder features written by `vavl extract` into a
  FeatureCache; the model sees (b, t, d) frames.
- end to end (`data.cache: null`): raw clips through the processor and an AudioVisualModel whose
  encoders are fine-tuned (layer-wise learning-rate decay, frozen CNN feature encoder).
Two schedules: `joint` (one loss, one optimiser step per batch) and `vavl` (VAVL's published
loop: per batch a visual-branch update, an acoustic-branch update, then a fusion update).
Everything the recipe does is in this file; the demo (`vavl demo`) imports it by path.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

import vavl
from vavl import losses
from vavl.data import model_inputs, read_manifest, split_records
from vavl.data.augment import augment
from vavl.errors import ConfigError, DataError, VavlError
from vavl.evaluation import IndexedDataset, RawClipDataset, collate_eval
from vavl.layers import masked_mean

# ---- config ---------------------------------------------------------------------------------
# Every valid key with its default. A config file or a key=value override naming anything else
# is an error. `model.config` is free-form: its keys are checked against the model's config class.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "output_dir": "runs/finetune",
    "resume": None,                  # null | "latest" | a checkpoint folder
    "model": {
        "name": "auxformer",         # a registry name (vavl.list_models()) or architecture
        "config": {},                # overrides of the model config (hidden sizes, dropout, ...)
        "audio_encoder": None,       # end to end only: encoder preset / saved folder
        "visual_encoder": None,
        "pretrained_encoders": False,
    },
    "data": {
        "manifest": None,            # a .jsonl written by `vavl prepare`
        "cache": None,               # a feature cache from `vavl extract`; null = end to end on raw clips
        "protocol": "vavl-1",        # a key of each record's "folds"
        "fold": None,                # test fold for k-fold protocols
        "label_field": "label",      # record field holding the class label (e.g. a perceived label)
        "labels": None,              # class names in order; null = the model entry's id2label
        "task": None,                # null = the model entry's task
        "num_workers": 0,
    },
    "train": {
        "schedule": "joint",         # joint | vavl
        "epochs": 20,
        "batch_size": 32,            # per process
        "eval_batch_size": 64,
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "lr_scheduler": "cosine",    # any transformers scheduler name: linear, cosine, constant_with_warmup, ...
        "warmup_ratio": 0.05,
        "gradient_accumulation_steps": 1,
        "max_grad_norm": 1.0,
        "mixed_precision": "no",     # no | fp16 | bf16
        "class_weights": None,       # null | balanced | [w0, w1, ...]
        "modality_dropout": {"audio": 0.0, "visual": 0.0},
        "frame_masking": 0.0,
        "feature_noise": 0.0,
        "metric": None,              # dev metric for best model / early stopping: UA WA macro_f1 ccc loss
        "early_stopping_patience": 0,  # epochs without dev improvement before stopping; 0 = never
        "checkpoint_every": 0,       # optimiser steps between save_state checkpoints; 0 = each epoch end
        "checkpoints_to_keep": 2,
        "max_steps": 0,              # stop training after this many optimiser steps (0 = no limit)
        "stop_after_steps": 0,       # debug: checkpoint and exit after this many steps (simulates a kill)
        "layer_decay": 1.0,          # end to end: lr x decay^(depth from the top) for encoder layers
        "encoder_lr": None,          # end to end: base lr of the encoders (null = train.lr)
        "freeze_feature_encoder": True,  # end to end: keep wav2vec2's CNN feature encoder frozen
        "freeze_encoders": False,    # end to end: no encoder fine-tuning at all
    },
    "log": {"wandb": True, "project": "vavl", "run_name": None, "every": 10, "progress": True},
    "evaluate": {"test": True, "conditions": ["audio+video", "audio", "video"]},
}
FREE_FORM = {("model", "config"), ("train", "modality_dropout")}


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and tuple(key.split(".")) not in FREE_FORM:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def set_dotted(d: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"{key}: {p} is not a section")
    d[last] = value


def parse_value(text: str) -> Any:
    """YAML scalars/lists/maps, plus numbers YAML 1.1 leaves as strings (3e-4)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def load_config(path: str | os.PathLike | None, overrides: list[str] = (), extra: dict | None = None) -> dict:
    """Defaults <- YAML file <- `extra` dict <- key=value overrides; unknown keys are errors."""
    cfg = copy.deepcopy(DEFAULTS)
    layers: list[tuple[str, dict]] = []
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: config file not found")
        with open(path, encoding="utf-8") as f:
            layers.append((str(path), flatten(yaml.safe_load(f) or {})))
    if extra:
        layers.append(("arguments", flatten(extra)))
    flat_over = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.epochs=5)")
        key, value = item.split("=", 1)
        flat_over[key.strip()] = parse_value(value)
    layers.append(("command line", flat_over))
    valid = flatten(DEFAULTS)
    for source, flat in layers:
        for key, value in flat.items():
            top = next((k for k in valid if key == k or key.startswith(k + ".")), None)
            if top is None or (key != top and tuple(top.split(".")) not in FREE_FORM):
                raise ConfigError(f"{source}: unknown config key {key!r}. Valid keys: {', '.join(sorted(valid))}")
            default = valid.get(key)
            if isinstance(default, float) and isinstance(value, str):
                value = parse_value(value)
            if isinstance(default, (int, float)) and not isinstance(default, bool) and default is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{source}: {key}={value!r} must be a number")
            set_dotted(cfg, key, value)
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    t = cfg["train"]
    if t["schedule"] not in ("joint", "vavl"):
        raise ConfigError(f"train.schedule={t['schedule']!r} must be 'joint' or 'vavl'")
    if t["mixed_precision"] not in ("no", "fp16", "bf16"):
        raise ConfigError(f"train.mixed_precision={t['mixed_precision']!r} must be no, fp16 or bf16")
    for key in ("epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps"):
        if not isinstance(t[key], int) or t[key] <= 0:
            raise ConfigError(f"train.{key}={t[key]!r} must be a positive integer")
    if t["schedule"] == "vavl" and t["gradient_accumulation_steps"] != 1:
        raise ConfigError("train.schedule=vavl updates three parameter groups per batch; use gradient_accumulation_steps=1")
    if t["schedule"] == "vavl" and not cfg["data"]["cache"]:
        raise ConfigError("train.schedule=vavl needs cached features (data.cache); use schedule=joint end to end")
    if not set(t["modality_dropout"]) <= {"audio", "visual"}:
        raise ConfigError(f"train.modality_dropout keys must be audio / visual, got {sorted(t['modality_dropout'])}")
    if not cfg["data"]["manifest"]:
        raise ConfigError("data.manifest is not set; give the manifest written by `vavl prepare` (data.manifest=PATH)")
    cb = t["class_weights"]
    if not (cb is None or cb == "balanced" or isinstance(cb, list)):
        raise ConfigError(f"train.class_weights={cb!r} must be null, 'balanced' or a list of numbers")


def check_model_overrides(model_class, overrides: dict) -> None:
    known = set(model_class.config_class().to_dict())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"model.config: unknown field(s) {unknown} for {model_class.config_class.__name__}. "
                          f"Valid fields: {', '.join(sorted(known))}")


# ---- data -----------------------------------------------------------------------------------
def label_of(record: dict, field: str):
    """record["labels"]["intended"] for field "labels.intended"; None when absent."""
    value: Any = record
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def load_splits(cfg: dict) -> dict[str, list[dict]]:
    """train/dev/test records, with `label` taken from data.label_field; checked before training."""
    d = cfg["data"]
    records = read_manifest(d["manifest"])
    field = d["label_field"]
    if field != "label":
        labels = [label_of(r, field) for r in records]
        if all(v is None for v in labels):
            raise DataError(f"{d['manifest']}: no record has a value at {field!r} (data.label_field)")
        records = [{**r, "label": v} for r, v in zip(records, labels)]
    splits = split_records(records, d["protocol"], d["fold"])
    if not splits["train"]:
        where = f"protocol {d['protocol']!r}" + ("" if d["fold"] is None else f" fold {d['fold']}")
        raise DataError(f"{d['manifest']}: no training clips under {where}; "
                        "check data.protocol / data.fold against the manifest's folds")
    if not splits["dev"]:
        raise DataError(f"{d['manifest']}: no dev clips under protocol {d['protocol']!r}; best-model selection needs them")
    return splits


def resolve_labels(cfg: dict, entry_config: dict, splits: dict) -> tuple[str, list[str]]:
    """(task, label names). For classes: every label must be known, and seen in training."""
    task = cfg["data"]["task"] or entry_config.get("task", "single_label_classification")
    if task == "regression":
        attrs = cfg["data"]["labels"] or entry_config.get("attributes") or ["arousal", "valence", "dominance"]
        if not any((r.get("attributes") or {}).get(a) is not None for r in splits["train"] for a in attrs):
            raise DataError(f"{cfg['data']['manifest']}: no training clip has any of the attributes {attrs}")
        return task, list(attrs)
    id2label = entry_config.get("id2label")
    names = cfg["data"]["labels"] or ([id2label[k] for k in sorted(id2label, key=int)] if id2label else None)
    train_labels = {r.get("label") for r in splits["train"]} - {None}
    if names is None:
        names = sorted(train_labels)
    names = [str(n) for n in names]
    if not train_labels:
        raise DataError(f"{cfg['data']['manifest']}: no training clip has a label in field {cfg['data']['label_field']!r}")
    for split, recs in splits.items():
        found = {r.get("label") for r in recs} - {None}
        unknown = sorted(found - set(names))
        if unknown:
            raise DataError(f"{cfg['data']['manifest']}: {split} clips have label(s) {unknown} outside the model's "
                            f"classes {names}; set data.labels to the full class list")
        unseen = sorted(found - train_labels)
        if unseen:
            raise DataError(f"{cfg['data']['manifest']}: {split} label(s) {unseen} never occur in training "
                            f"(protocol {cfg['data']['protocol']!r}); the model could not learn them — fix the split or labels")
    return task, names


RAW_INPUTS = ("input_values", "attention_mask", "pixel_values", "pixel_mask", "labels")


def forward_inputs(batch: dict, drop: str | None = None) -> dict:
    """The batch keys the model takes; `drop` = "audio" / "visual" leaves that modality out."""
    keys = RAW_INPUTS if ("input_values" in batch or "pixel_values" in batch) else None
    inputs = {k: batch[k] for k in keys if batch.get(k) is not None} if keys else model_inputs(batch)
    gone = {"audio": ("audio_features", "audio_mask", "input_values", "attention_mask"),
            "visual": ("visual_features", "visual_mask", "pixel_values", "pixel_mask")}.get(drop, ())
    return {k: v for k, v in inputs.items() if k not in gone}


# ---- model and optimiser --------------------------------------------------------------------
def has_encoders(model) -> bool:
    """An AudioVisualModel: encoders in front of a fusion model (`.fusion`), takes raw media."""
    from vavl.models.with_encoders import AudioVisualModel

    return isinstance(model, AudioVisualModel)


def emotion_config(model):
    """The fusion model's EmotionConfig (an AudioVisualModel wraps it as `.fusion`)."""
    return model.fusion.config if has_encoders(model) else model.config


def feature_dims(cache, records: list[dict]) -> tuple[int | None, int | None]:
    """(audio_dim, visual_dim) read from the first cached clips that have each modality."""
    dims: dict[str, int | None] = {"audio_features": None, "visual_features": None}
    for r in records[:200]:
        item = cache.read(r["id"])
        for k in dims:
            if dims[k] is None and item.get(k) is not None:
                dims[k] = int(item[k].shape[-1])
        if all(dims.values()):
            break
    return dims["audio_features"], dims["visual_features"]


def class_weights(spec, names: list[str], train: list[dict]) -> list[float] | None:
    if spec is None:
        return None
    if isinstance(spec, list):
        if len(spec) != len(names):
            raise ConfigError(f"train.class_weights has {len(spec)} values for {len(names)} classes {names}")
        return [float(w) for w in spec]
    counts = torch.tensor([sum(r.get("label") == n for r in train) for n in names], dtype=torch.float)
    return (counts.sum() / (len(names) * counts.clamp(min=1))).tolist()   # "balanced": n / (c * n_c)


def build_model(cfg: dict, task: str, names: list[str], dims: tuple, weights):
    entry = vavl.get_entry(cfg["model"]["name"])
    overrides = dict(cfg["model"]["config"])
    check_model_overrides(entry.model_class, overrides)
    fields = {"task": task, "class_weights": weights}
    if task == "regression":
        fields["attributes"] = names
    else:
        fields["id2label"] = dict(enumerate(names))
        fields["label2id"] = {n: i for i, n in enumerate(names)}
    if dims[0]:
        fields["audio_dim"] = dims[0]
    if dims[1]:
        fields["visual_dim"] = dims[1]
    m = cfg["model"]
    return vavl.create_model(entry.name, audio_encoder=m["audio_encoder"], visual_encoder=m["visual_encoder"],
                             pretrained_encoders=m["pretrained_encoders"], **{**fields, **overrides})


def encoder_layer_depth(name: str) -> tuple[int, int] | None:
    """(layer index, number of layers) for a parameter inside an encoder's `layers.N.` / `blocks.N.`."""
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p in ("layers", "layer", "blocks") and parts[i + 1].isdigit():
            return int(parts[i + 1]), -1
    return None


def param_groups(model, cfg: dict) -> list[dict]:
    """Fusion model at train.lr; encoder parameters (end to end) at encoder_lr x layer_decay^depth,
    where depth counts layers from the top (the last layer gets the full encoder_lr)."""
    t = cfg["train"]
    enc_lr = t["encoder_lr"] or t["lr"]
    head, enc = [], {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith(("audio_encoder.", "visual_encoder.")) and has_encoders(model):
            module = name.split(".")[0]
            layer = encoder_layer_depth(name)
            enc.setdefault(module, []).append((name, p, None if layer is None else layer[0]))
        else:
            head.append(p)
    groups = [{"params": head, "lr": t["lr"]}]
    for module, items in enc.items():
        n = max([l for _, _, l in items if l is not None], default=-1) + 1
        by_lr: dict[float, list] = {}
        for _, p, layer in items:
            depth = n if layer is None else n - 1 - layer    # embeddings / CNN sit below every layer
            by_lr.setdefault(enc_lr * t["layer_decay"] ** depth, []).append(p)
        groups += [{"params": ps, "lr": lr} for lr, ps in by_lr.items()]
    return groups


def freeze_encoders(model, cfg: dict) -> None:
    t = cfg["train"]
    for name in ("audio_encoder", "visual_encoder"):
        enc = getattr(model, name, None) if has_encoders(model) else None
        if enc is None:
            continue
        enc.set_frozen(bool(t["freeze_encoders"]))
        if not t["freeze_encoders"] and t["freeze_feature_encoder"]:
            for sub in enc.modules():
                if hasattr(sub, "freeze_feature_encoder"):
                    sub.freeze_feature_encoder()
                    break


def vavl_branches(model) -> dict[str, list]:
    """Parameter groups of VAVL's schedule, by top-level module name: audio* / acoustic*,
    visual* / video*, shared* (updated with both branches), everything else = fusion."""
    groups: dict[str, list] = {"audio": [], "visual": [], "shared": [], "fusion": []}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        key = ("audio" if top.startswith(("audio", "acoustic")) else "visual" if top.startswith(("visual", "video"))
               else "shared" if top.startswith("shared") else "fusion")
        groups[key].append(p)
    if not groups["fusion"] or not groups["audio"] or not groups["visual"]:
        raise ConfigError(f"train.schedule=vavl needs audio*, visual* and fusion modules; {type(model).__name__} has "
                          f"{ {k: len(v) for k, v in groups.items()} } parameters per group — use schedule=joint")
    return groups


def make_optimizers(model, cfg: dict) -> dict[str, torch.optim.Optimizer]:
    t = cfg["train"]
    kw = {"weight_decay": t["weight_decay"]}
    if t["schedule"] == "joint":
        return {"all": torch.optim.AdamW(param_groups(model, cfg), lr=t["lr"], **kw)}
    # VAVL: Adam, betas (0.95, 0.999), one optimiser per group; shared steps with both branches
    g = vavl_branches(model)
    return {k: torch.optim.AdamW(v, lr=t["lr"], betas=(0.95, 0.999), **kw) for k, v in g.items() if v}


# ---- losses ---------------------------------------------------------------------------------
def head_loss(config, logits, labels, keep=None):
    """The model's task loss on one head's outputs (class weights included)."""
    if config.task == "regression":
        return losses.ccc_loss(logits, labels.to(logits.dtype), keep)
    w = None if config.class_weights is None else torch.tensor(config.class_weights, device=logits.device)
    fn = losses.soft_cross_entropy if config.task == "soft_label_classification" else losses.cross_entropy
    return fn(logits.float(), labels, keep, w)


def branch_loss(config, out, batch, modality: str):
    """VAVL branch step: that head's loss + reconstruction_loss_weight x its reconstruction error."""
    loss = head_loss(config, getattr(out, f"{modality}_logits"), batch["labels"], getattr(out, f"{modality}_present"))
    rec = getattr(out, f"{modality}_reconstruction")
    w = getattr(config, "reconstruction_loss_weight", 0.0)
    if rec is not None and w:
        x, mask = batch[f"{modality}_features"], batch[f"{modality}_mask"]
        if rec.dim() == 2:
            x, mask = masked_mean(x * mask.unsqueeze(-1).to(x.dtype), mask), mask.any(1)
        loss = loss + w * losses.masked_mse(rec, x, mask)
    return loss


# ---- training ------------------------------------------------------------------------------
class TrainerState:
    """Where training stands; saved with every checkpoint (register_for_checkpointing)."""

    def __init__(self):
        self.epoch, self.batches_done, self.step = 0, 0, 0
        self.best, self.best_epoch, self.bad_epochs, self.history = None, -1, 0, []

    def state_dict(self):
        return dict(vars(self))

    def load_state_dict(self, state):
        vars(self).update(state)


def train_step_joint(accelerator, model, batch, optimizers, schedulers, cfg) -> float:
    opt, sched = optimizers["all"], schedulers["all"]
    with accelerator.accumulate(model):
        out = model(**forward_inputs(batch))
        accelerator.backward(out.loss)
        if accelerator.sync_gradients and cfg["train"]["max_grad_norm"]:
            accelerator.clip_grad_norm_(model.parameters(), cfg["train"]["max_grad_norm"])
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return out.loss.detach().float().item()


def train_step_vavl(accelerator, model, batch, optimizers, schedulers, cfg) -> float:
    """VAVL's loop: visual branch (+ shared) on the visual loss, acoustic branch (+ shared) on the
    acoustic loss, then the fusion head alone on the fused loss with the branches in eval mode."""
    inner = accelerator.unwrap_model(model)
    config = inner.config

    def update(loss, names):
        for o in optimizers.values():
            o.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        params = [p for n in names if n in optimizers for g in optimizers[n].param_groups for p in g["params"]]
        if cfg["train"]["max_grad_norm"]:
            accelerator.clip_grad_norm_(params, cfg["train"]["max_grad_norm"])
        for n in names:
            if n in optimizers:
                optimizers[n].step()
                schedulers[n].step()

    out = model(**forward_inputs(batch, drop="audio"))
    update(branch_loss(config, out, batch, "visual"), ("visual", "shared"))
    out = model(**forward_inputs(batch, drop="visual"))
    update(branch_loss(config, out, batch, "audio"), ("audio", "shared"))
    branches = [m for n, m in inner.named_children() if n.startswith(("audio", "acoustic", "visual", "video", "shared"))]
    for m in branches:
        m.eval()
    out = model(**{k: v for k, v in forward_inputs(batch).items() if k != "labels"})
    both = out.audio_present & out.visual_present
    loss = head_loss(config, out.fused_logits, batch["labels"], both)
    update(loss, ("fusion",))
    for m in branches:
        m.train()
    for o in optimizers.values():
        o.zero_grad(set_to_none=True)
    return loss.detach().float().item()


@torch.no_grad()
def evaluate(accelerator, model, dataloader, drop: str | None = None, desc: str = "eval", progress: bool = True) -> dict:
    """Predictions of every sample exactly once (gather_for_metrics drops the padding duplicates
    of the last batch), then metrics on the whole set: UA/WA/F1 or CCC per attribute."""
    from vavl import metrics

    model.eval()
    config = emotion_config(accelerator.unwrap_model(model))
    logits, labels, index = [], [], []
    for batch in tqdm(dataloader, desc=desc, disable=not (accelerator.is_local_main_process and progress), leave=False):
        out = model(**{k: v for k, v in forward_inputs(batch, drop).items() if k != "labels"})
        lg, lb, ix = accelerator.gather_for_metrics((out.logits.float(), batch["labels"], batch["index"]))
        logits.append(lg.cpu()), labels.append(lb.cpu()), index.append(ix.cpu())
    model.train()
    logits, labels, index = torch.cat(logits), torch.cat(labels), torch.cat(index)
    result = {"n": int(len(index)), "n_unique": int(index.unique().numel()), "index": index.tolist()}
    if config.task == "regression":
        r = metrics.regression_metrics(logits.numpy(), labels.numpy(), config.label_names)
        result.update({"ccc": r["mean_ccc"], **{f"ccc_{a}": r[a]["ccc"] for a in config.label_names}})
        result["loss"] = float(losses.ccc_loss(logits, labels))
    else:
        gold = labels if labels.dim() == 1 else torch.where(labels.sum(-1) > 0, labels.argmax(-1), -100)
        result.update(metrics.classification_metrics(gold.numpy(), logits.argmax(-1).numpy()))
        result["loss"] = float(losses.cross_entropy(logits, gold))
    result["logits"], result["labels"] = logits, labels
    return result


def is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if metric == "loss" else value > best


def model_card(cfg: dict, model, metrics: dict, names: list[str], config_path: str | None) -> str:
    c = emotion_config(model)
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, float))
    return f"""---
library_name: vavl
tags: [audio-visual, emotion-recognition, {c.model_type}]
---
# {cfg['model']['name']} fine-tuned with vavl

- architecture: `{type(model).__name__}` ({c.model_type}), {sum(p.numel() for p in model.parameters()):,} parameters
- task: {c.task}; {'attributes' if c.task == 'regression' else 'classes'}: {', '.join(names)}
- inputs: audio features {c.audio_dim}-d, visual features {c.visual_dim}-d
  ({'raw clips, encoders fine-tuned' if not cfg['data']['cache'] else 'cached frozen-encoder features: ' + str(cfg['data']['cache'])})
- data: `{cfg['data']['manifest']}`, protocol `{cfg['data']['protocol']}`{'' if cfg['data']['fold'] is None else ', fold ' + str(cfg['data']['fold'])}, label field `{cfg['data']['label_field']}`
- training: schedule `{cfg['train']['schedule']}`, {cfg['train']['epochs']} epochs, lr {cfg['train']['lr']}, batch {cfg['train']['batch_size']} per process, modality dropout {cfg['train']['modality_dropout']}, seed {cfg['seed']}
- recipe: `python recipes/finetune.py --config {config_path or '<config>'}` (full config in `finetune_config.yaml`)

## Results

| metric | value |
|---|---|
{rows}

## Use

```python
import vavl
from transformers import AutoModel
model = AutoModel.from_pretrained("<this folder>")
out = model(audio_features=a, audio_mask=am, visual_features=v, visual_mask=vm)
```
"""


def save_best(accelerator, model, processor, out_dir: Path, cfg, metrics, names, config_path) -> None:
    if not accelerator.is_main_process:
        return
    inner = accelerator.unwrap_model(model)
    inner.save_pretrained(out_dir, safe_serialization=True)
    if processor is not None:
        processor.save_pretrained(out_dir)
    (out_dir / "README.md").write_text(model_card(cfg, inner, metrics, names, config_path), encoding="utf-8")
    with open(out_dir / "finetune_config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)


class JsonlLog:
    """One JSON line per logged step / evaluation, on the main process (plus the trackers)."""

    def __init__(self, accelerator, path: Path):
        self.accelerator, self.path = accelerator, path

    def __call__(self, row: dict, step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        row = {"step": step, "time": round(time.time(), 3), **row}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        try:
            self.accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=step)
        except Exception as e:  # a tracker failing must never stop training
            print(f"warning: tracker log failed ({e})", file=sys.stderr)


def wandb_tracker(cfg: dict) -> list[str]:
    """["wandb"] when wandb is enabled and importable; offline unless the user is logged in."""
    if not cfg["log"]["wandb"]:
        return []
    try:
        import wandb  # noqa: F401
    except Exception:
        return []
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    logged_in = os.environ.get("WANDB_API_KEY") or (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))
    if not logged_in:
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_DIR", cfg["output_dir"])
    return ["wandb"]


def latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = sorted((out_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return ckpts[-1] if ckpts else None


def save_checkpoint(accelerator, out_dir: Path, state: TrainerState, keep: int) -> None:
    path = out_dir / "checkpoints" / f"step_{state.step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        for old in sorted((out_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# ---- the recipe -----------------------------------------------------------------------------
def setup(cfg: dict):
    """Everything before the first step: data checks, model, optimisers, Accelerate objects."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, set_seed

    splits = load_splits(cfg)
    entry = vavl.get_entry(cfg["model"]["name"])
    task, names = resolve_labels(cfg, entry.config, splits)
    set_seed(cfg["seed"])
    out_dir = Path(cfg["output_dir"])
    # several processes but no GPU (`accelerate launch --multi_gpu --num_processes 2` on a CPU box):
    # Accelerate forms the gloo process group only when told it runs on CPU
    cpu_ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=cpu_ddp,
        mixed_precision=cfg["train"]["mixed_precision"],
        gradient_accumulation_steps=cfg["train"]["gradient_accumulation_steps"],
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg["seed"]),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        project_config=ProjectConfiguration(project_dir=str(out_dir)),
        log_with=wandb_tracker(cfg) or None,
    )
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
    weights = class_weights(cfg["train"]["class_weights"], names, splits["train"]) if task != "regression" else None
    processor = None
    if cfg["data"]["cache"]:
        from vavl.data.cache import FeatureCache, FeatureDataset

        if not Path(cfg["data"]["cache"]).is_dir():
            raise DataError(f"{cfg['data']['cache']}: feature cache not found; run `vavl extract` on {cfg['data']['manifest']}")
        cache = FeatureCache(cfg["data"]["cache"])
        missing = [r["id"] for s in splits.values() for r in s if not cache.has(r["id"])]
        if missing:
            raise DataError(f"{cfg['data']['cache']}: {len(missing)} clips of the manifest are not cached "
                            f"(e.g. {missing[:3]}); run `vavl extract` again to complete it")
        model = build_model(cfg, task, names, feature_dims(cache, splits["train"]), weights)
        make = lambda recs: IndexedDataset(FeatureDataset(cache, recs, config=model.config))  # noqa: E731
    else:
        model = build_model(cfg, task, names, (None, None), weights)
        if not has_encoders(model):
            raise ConfigError("data.cache is null (end to end) but the model has no encoders: "
                              "set model.audio_encoder / model.visual_encoder, or give a feature cache")
        freeze_encoders(model, cfg)
        processor = model.processor
        make = lambda recs: IndexedDataset(RawClipDataset(recs, processor, model.fusion.config))  # noqa: E731
    t = cfg["train"]
    loader = lambda recs, bs, shuffle: torch.utils.data.DataLoader(  # noqa: E731
        make(recs), batch_size=bs, shuffle=shuffle, collate_fn=collate_eval, num_workers=cfg["data"]["num_workers"])
    train_dl = loader(splits["train"], t["batch_size"], True)
    eval_dls = {s: loader(splits[s], t["eval_batch_size"], False) for s in ("dev", "test") if splits[s]}
    optimizers = make_optimizers(model, cfg)
    steps_per_epoch = math.ceil(len(train_dl) / t["gradient_accumulation_steps"])
    total = steps_per_epoch * t["epochs"]
    if t["max_steps"]:
        total = min(total, t["max_steps"])
    from transformers import get_scheduler

    schedulers = {k: get_scheduler(t["lr_scheduler"], o, num_warmup_steps=int(t["warmup_ratio"] * total),
                                   num_training_steps=total) for k, o in optimizers.items()}
    keys = list(optimizers)
    prepared = accelerator.prepare(model, train_dl, *eval_dls.values(), *optimizers.values(), *schedulers.values())
    model, train_dl = prepared[0], prepared[1]
    eval_dls = dict(zip(eval_dls, prepared[2: 2 + len(eval_dls)]))
    rest = prepared[2 + len(eval_dls):]
    optimizers, schedulers = dict(zip(keys, rest[: len(keys)])), dict(zip(keys, rest[len(keys):]))
    state = TrainerState()
    accelerator.register_for_checkpointing(state)
    return dict(cfg=cfg, accelerator=accelerator, model=model, processor=processor, train_dl=train_dl,
                eval_dls=eval_dls, optimizers=optimizers, schedulers=schedulers, state=state, names=names,
                out_dir=out_dir, total_steps=total, splits=splits)


def train(run: dict, config_path: str | None = None) -> dict:
    """Epochs of training with dev evaluation, best-model saving, checkpoints and early stopping."""
    from accelerate.utils import set_seed

    cfg, acc, model, state = run["cfg"], run["accelerator"], run["model"], run["state"]
    t, out_dir = cfg["train"], run["out_dir"]
    log = JsonlLog(acc, out_dir / "log.jsonl")
    resume = cfg["resume"]
    if resume:
        path = latest_checkpoint(out_dir) if resume == "latest" else Path(resume)
        if path is None or not path.is_dir():
            raise ConfigError(f"resume={resume!r}: no checkpoint found in {out_dir / 'checkpoints'}")
        acc.load_state(str(path))
        acc.print(f"resumed from {path}: epoch {state.epoch}, batch {state.batches_done}, step {state.step}")
    if acc.log_with:
        try:
            acc.init_trackers(cfg["log"]["project"], config=flatten(cfg),
                              init_kwargs={"wandb": {"name": cfg["log"]["run_name"], "dir": str(out_dir)}})
        except Exception as e:  # wandb could not start: go on with the JSONL log only
            acc.print(f"warning: experiment tracker did not start ({e}); logging to {out_dir / 'log.jsonl'} only")
    step_fn = train_step_vavl if t["schedule"] == "vavl" else train_step_joint
    metric = t["metric"] or ("ccc" if emotion_config(acc.unwrap_model(model)).task == "regression" else "UA")
    md = t["modality_dropout"]
    stopped = None
    model.train()
    while state.epoch < t["epochs"] and stopped is None:
        dl = run["train_dl"]
        dl.set_epoch(state.epoch)
        batches = acc.skip_first_batches(dl, state.batches_done) if state.batches_done else dl
        bar = tqdm(batches, total=len(dl), initial=state.batches_done, desc=f"epoch {state.epoch + 1}/{t['epochs']}",
                   disable=not (acc.is_local_main_process and cfg["log"]["progress"]), unit="batch")
        for batch in bar:
            # reseed per batch: dropout and augmentation draws depend only on (seed, epoch, batch,
            # process), so a resumed run replays exactly what an uninterrupted one would do
            set_seed(cfg["seed"] + 7919 * (state.epoch * len(dl) + state.batches_done), device_specific=True)
            batch = augment(batch, md.get("audio", 0.0), md.get("visual", 0.0), t["frame_masking"], t["feature_noise"])
            loss = step_fn(acc, model, batch, run["optimizers"], run["schedulers"], cfg)
            state.batches_done += 1
            if not acc.sync_gradients:
                continue
            state.step += 1
            bar.set_postfix(loss=f"{loss:.4f}", step=state.step)
            if state.step % cfg["log"]["every"] == 0:
                lr = next(iter(run["schedulers"].values())).get_last_lr()[0]
                log({"epoch": state.epoch, "train_loss": loss, "lr": lr}, state.step)
            if t["checkpoint_every"] and state.step % t["checkpoint_every"] == 0:
                save_checkpoint(acc, out_dir, state, t["checkpoints_to_keep"])
            if t["stop_after_steps"] and state.step >= t["stop_after_steps"]:
                save_checkpoint(acc, out_dir, state, t["checkpoints_to_keep"])
                stopped = "stop_after_steps"
                break
            if t["max_steps"] and state.step >= t["max_steps"]:
                stopped = "max_steps"
                break
        bar.close()
        if stopped == "stop_after_steps":
            break
        dev = evaluate(acc, model, run["eval_dls"]["dev"], desc="dev", progress=cfg["log"]["progress"])
        value = dev[metric]
        row = {"epoch": state.epoch, **{f"dev_{k}": v for k, v in dev.items() if isinstance(v, float)}}
        log(row, state.step)
        state.history.append(row)
        if is_better(value, state.best, metric):
            state.best, state.best_epoch, state.bad_epochs = value, state.epoch, 0
            save_best(acc, model, run["processor"], out_dir, cfg, {f"dev_{metric}": value}, run["names"], config_path)
        else:
            state.bad_epochs += 1
        state.epoch, state.batches_done = state.epoch + 1, 0
        if not t["checkpoint_every"] or stopped:
            save_checkpoint(acc, out_dir, state, t["checkpoints_to_keep"])
        if t["early_stopping_patience"] and state.bad_epochs >= t["early_stopping_patience"]:
            stopped = f"early stopping after epoch {state.epoch} (best epoch {state.best_epoch + 1})"
    acc.wait_for_everyone()
    return {"stopped": stopped, "metric": metric, "best": state.best, "best_epoch": state.best_epoch, "step": state.step}


def test(run: dict, summary: dict, config_path: str | None = None) -> dict:
    """Reload the best model; score dev and test with audio+video, audio only and video only."""
    cfg, acc, out_dir = run["cfg"], run["accelerator"], run["out_dir"]
    if summary["stopped"] == "stop_after_steps" or not (out_dir / "config.json").is_file():
        return {}
    from safetensors.torch import load_file

    acc.wait_for_everyone()
    acc.unwrap_model(run["model"]).load_state_dict(load_file(str(out_dir / "model.safetensors")), strict=False)
    drops = {"audio+video": None, "audio": "visual", "video": "audio"}
    results = {}
    for split, dl in run["eval_dls"].items():
        if split == "test" and not cfg["evaluate"]["test"]:
            continue
        for cond in cfg["evaluate"]["conditions"]:
            r = evaluate(acc, run["model"], dl, drop=drops[cond], desc=f"{split} {cond}", progress=cfg["log"]["progress"])
            results[f"{split}/{cond}"] = {k: v for k, v in r.items() if k not in ("logits", "labels", "index")}
    if acc.is_main_process:
        report = {"best_epoch": summary["best_epoch"] + 1, "dev_metric": summary["metric"], "dev_best": summary["best"],
                  "steps": summary["step"], "results": results}
        (out_dir / "results.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        flat = {f"{k} {m}": v for k, r in results.items() for m, v in r.items() if isinstance(v, float) and m != "loss"}
        inner = acc.unwrap_model(run["model"])
        (out_dir / "README.md").write_text(model_card(cfg, inner, {"dev_best_" + summary["metric"]: summary["best"], **flat},
                                                      run["names"], config_path), encoding="utf-8")
    return results


def main(cfg: dict, config_path: str | None = None) -> dict:
    """setup -> train -> test -> cleanup. Returns {"summary", "results", "output_dir"}."""
    run = setup(cfg)
    acc, out_dir = run["accelerator"], run["out_dir"]
    try:
        summary = train(run, config_path)
        results = test(run, summary, config_path)
        acc.wait_for_everyone()  # no process tears the group down while another still writes results
    finally:
        # drop the DDP model (its reducer holds the gloo/NCCL group) while every process is still here:
        # freed later, at interpreter exit, gloo's destructor could wait forever on a peer already gone
        run.clear()
        acc.free_memory()
        acc.end_training()
    if acc.is_main_process:
        acc.print(format_results(summary, results))
    return {"summary": summary, "results": results, "output_dir": str(out_dir)}


def format_results(summary: dict, results: dict) -> str:
    lines = [f"best dev {summary['metric']} = {summary['best']} (epoch {summary['best_epoch'] + 1}, {summary['step']} steps)"]
    for key, r in results.items():
        lines.append(f"  {key:<20} " + "  ".join(f"{m}={v:.4f}" for m, v in r.items() if isinstance(v, float) and m != "loss"))
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="overrides: key=value with dotted keys, e.g. train.epochs=5 model.config.hidden_size=64")
    p.add_argument("--config", help="a YAML file under recipes/configs/")
    p.add_argument("--resume", nargs="?", const="latest", help="continue from the latest (or the given) checkpoint")
    p.add_argument("overrides", nargs="*", help="key=value")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    try:
        config = load_config(args.config, args.overrides, {"resume": args.resume} if args.resume else None)
        main(config, args.config)
    except VavlError as e:
        print(f"finetune.py: error: {e}", file=sys.stderr)
        sys.exit(2)

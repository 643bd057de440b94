"""What model and optimisers a fine-tuning config asks for: the task and label names (from the
config or the model entry, checked against the splits), class weights, the model itself, and the
optimisers with their parameter groups (layer-wise learning-rate decay end to end; one optimiser
per branch for VAVL's schedule).
"""
from __future__ import annotations

import os

import torch
from omegaconf import DictConfig, OmegaConf

import vavl
from vavl.data.datasets import check_split_labels
from vavl.core.errors import ConfigError, DataError


def resolve_labels(cfg: DictConfig, entry_config: dict, splits: dict) -> tuple[str, list[str]]:
    """(task, label names): data.task / data.labels. Classes: data.labels, or by default the labels
    found in the training split (named on the console; in the model entry's order when they are its
    classes). Every configured class must occur in training, and every label of every split must be
    one of them and occur in training."""
    d = cfg.data
    task = d.task or entry_config.get("task", "single_label_classification")
    if task == "regression":
        attrs = list(d.labels or entry_config.get("attributes") or ["arousal", "valence", "dominance"])
        if not any((r.get("attributes") or {}).get(a) is not None for r in splits["train"] for a in attrs):
            raise DataError(f"{d.manifest}: no training clip has any of the attributes {attrs}")
        return task, attrs
    found = sorted({str(r["label"]) for r in splits["train"] if r.get("label") is not None})
    if d.labels:
        names = [str(n) for n in d.labels]
        unseen = [n for n in names if n not in found]
        if found and unseen and not d.allow_unseen_labels:
            raise DataError(f"{d.manifest}: data.labels {unseen} never occur in the training split (data.label_field "
                            f"{d.label_field!r}, which has {found}); the model could not learn them: remove them from "
                            "data.labels, fix the split, or set data.allow_unseen_labels=true")
    else:   # the classes the training split has; in the model entry's order when they are its classes
        id2label = entry_config.get("id2label") or {}
        entry = [str(id2label[k]) for k in sorted(id2label, key=int)]
        names = entry if set(entry) == set(found) else found
        if found and int(os.environ.get("RANK", "0")) == 0:
            note = "" if names == entry else f"; the model entry's {len(entry)} classes {entry} are not used" if entry else ""
            print(f"finetune.py: data.labels: {len(names)} classes found in the training split ({d.label_field!r}): "
                  f"{names}{note}", flush=True)
    check_split_labels(splits, names, f"{d.manifest} (data.label_field {d.label_field!r}, data.labels)")
    return task, names


def class_weights(spec, names: list[str], train: list[dict]) -> list[float] | None:
    if spec is None:
        return None
    if OmegaConf.is_list(spec):
        if len(spec) != len(names):
            raise ConfigError(f"train.class_weights has {len(spec)} values for {len(names)} classes {names}")
        return [float(w) for w in spec]
    counts = torch.tensor([sum(r.get("label") == n for r in train) for n in names], dtype=torch.float)
    return (counts.sum() / (len(names) * counts.clamp(min=1))).tolist()   # "balanced": n / (c * n_c)


def build_model(cfg: DictConfig, task: str, names: list[str], dims: tuple, weights):
    entry, m = vavl.get_entry(cfg.model.name), cfg.model
    overrides, known = OmegaConf.to_container(m.config), set(entry.model_class.config_class().to_dict())
    if set(overrides) - known:
        raise ConfigError(f"model.config: unknown field(s) {sorted(set(overrides) - known)} for "
                          f"{entry.model_class.config_class.__name__}. Valid fields: {', '.join(sorted(known))}")
    fields = {"task": task, "class_weights": weights}
    fields.update({"attributes": names} if task == "regression" else {"id2label": dict(enumerate(names)),
                                                                      "label2id": {n: i for i, n in enumerate(names)}})
    fields.update({f"{mod}_dim": dim for mod, dim in zip(("audio", "visual"), dims) if dim})
    return vavl.create_model(entry.name, audio_encoder=m.audio_encoder, visual_encoder=m.visual_encoder,
                             pretrained_encoders=m.pretrained_encoders, **{**fields, **overrides})


def param_groups(model, cfg: DictConfig, end_to_end: bool) -> list[dict]:
    """The fusion model at train.lr; end to end, encoder layers at encoder_lr x layer_decay^(depth
    below the top encoder layer), the depth read from the model's own layer ids."""
    t, params = cfg.train, [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    ids = model.layer_ids() if end_to_end else {n: 0 for n, _ in params}
    top, by_lr = max(ids.values()), {}
    for name, p in params:
        lr = t.lr if ids[name] == top else (t.encoder_lr or t.lr) * t.layer_decay ** (top - 1 - ids[name])
        by_lr.setdefault(lr, []).append(p)
    return [{"params": ps, "lr": lr} for lr, ps in by_lr.items()]


def make_optimizers(model, cfg: DictConfig, end_to_end: bool) -> dict[str, torch.optim.Optimizer]:
    """joint: one optimiser; vavl: one per branch (the shared one steps with both modality branches).
    train.optimizer adamw decouples weight decay; adam adds it to the gradient as L2 (the official codes)."""
    t = cfg.train
    kind = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam

    def make(params):
        return kind(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)

    if t.schedule == "joint":
        return {"all": make(param_groups(model, cfg, end_to_end))}
    if not hasattr(model.fusion_model, "branches"):
        raise ConfigError(f"train.schedule=vavl updates VAVL's branches in turn, but {type(model).__name__} declares "
                          "no branches (a `branches()` method); use schedule=joint")
    groups = {k: [p for m in mods for p in m.parameters()] for k, mods in model.branches().items()}
    return {k: make(ps) for k, ps in groups.items() if ps}

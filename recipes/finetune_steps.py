"""One optimisation step of the fine-tune recipe, and the guards around the steps.

- `train_step_joint`: one loss, one optimiser step per batch (schedule `joint`).
- `train_step_vavl`: VAVL's published three updates per batch (schedule `vavl`).
- `official_arousal_flip`: VAVL's MSP-IMPROV arousal flip on alternate epochs (data.official_arousal_flip).
- `stop_if_not_finite`, `weights_finite`, `is_better`: the loop's checks on losses, weights and dev scores.

A file of the recipe (recipes/finetune.py runs it), not of the library.
"""
from __future__ import annotations

import math

import torch
from omegaconf import DictConfig, OmegaConf

from vavl.core.errors import TrainingError
from vavl.data import model_inputs
from vavl.data.conditions import remove_modality


def loss_weights(cfg: DictConfig) -> dict[str, float] | None:
    w = cfg.train.loss_weights
    return None if w is None else {k: float(v) for k, v in OmegaConf.to_container(w).items()}


def train_step_joint(accelerator, model, batch, optimizers, schedulers, cfg) -> dict[str, float]:
    opt, sched = optimizers["all"], schedulers["all"]
    with accelerator.accumulate(model):
        out = model(**model_inputs(batch), loss_weights=loss_weights(cfg))
        accelerator.backward(out.loss)
        if accelerator.sync_gradients and cfg.train.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return {"train_loss": out.loss.detach().float().item()}


def train_step_vavl(accelerator, model, batch, optimizers, schedulers, cfg) -> dict[str, float]:
    """VAVL's loop: visual branch (+ shared) on the visual head's loss and reconstruction with the
    audio removed, the acoustic branch (+ shared) likewise, then the fusion head alone on the fused
    loss with the branches in eval mode. Every learning-rate schedule steps once per batch (the
    shared branch's optimiser steps twice, its schedule does not)."""
    inner = accelerator.unwrap_model(model)
    rec = inner.emotion_config.reconstruction_loss_weight

    def update(loss, names):
        for o in optimizers.values():
            o.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.train.max_grad_norm:
            params = [p for n in names if n in optimizers for g in optimizers[n].param_groups for p in g["params"]]
            accelerator.clip_grad_norm_(params, cfg.train.max_grad_norm)
        for n in (n for n in names if n in optimizers):
            optimizers[n].step()

    losses = {}
    for branch, other in (("visual", "audio"), ("audio", "visual")):
        out = model(**model_inputs(remove_modality(batch, other)), loss_weights={branch: 1.0, f"{branch}_reconstruction": rec})
        update(out.loss, (branch, "shared"))
        losses[f"train_loss_{branch}"] = out.loss.detach().float().item()
    frozen = [m for k in ("audio", "visual", "shared") for m in inner.branches()[k]]
    for m in frozen:
        m.eval()
    out = model(**model_inputs(batch), loss_weights={"fused": 1.0})
    update(out.loss, ("fusion",))
    for m in frozen:
        m.train()
    for o in optimizers.values():
        o.zero_grad(set_to_none=True)
    for sched in schedulers.values():
        sched.step()
    return {"train_loss": out.loss.detach().float().item(), **losses}


def stop_if_not_finite(acc, losses: dict[str, float], state, batch) -> None:
    """A loss that is NaN / inf (on any process) stops the run in one line naming the step and the
    batch's clips, before anything is saved from the weights it leaves."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    anywhere = bool(bad)
    if acc.num_processes > 1:   # every process stops together
        anywhere = acc.reduce(torch.tensor(float(anywhere), device=acc.device), "sum").item() > 0
    if anywhere:
        ids = list(batch.get("ids") or [])
        shown = ", ".join(map(str, ids[:8])) + (f" (+{len(ids) - 8} more)" if len(ids) > 8 else "")
        what = ", ".join(f"{k} = {v}" for k, v in bad.items()) or "the loss on another process is not finite"
        raise TrainingError(f"epoch {state.epoch + 1}, batch {state.batches_done + 1} (step {state.step + 1}): {what} "
                            f"(batch clips: {shown or '?'}); the run stopped and nothing was saved from these weights "
                            "(checkpoints and the best model saved before are kept): lower train.lr, keep "
                            "train.max_grad_norm > 0, or check these clips")


def weights_finite(model, what: str, state) -> None:
    """No model or checkpoint is saved from weights that are not finite."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise TrainingError(f"epoch {state.epoch + 1} (step {state.step}): {len(bad)} weight tensors are not finite "
                            f"(e.g. {bad[0]}); the {what} was not saved and the run stopped: lower train.lr")


def is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if metric == "loss" else value > best


def official_arousal_flip(batch: dict, model) -> dict:
    """VAVL's MSP-IMPROV loader (VV utils/dataset.py:79-83) replaces arousal by 6 - arousal in place each time a clip
    is read, so with one read per epoch the training targets are 6 - x in epochs 1, 3, 5, ... and x in 2, 4, ..."""
    names = list(getattr(model, "module", model).config.label_names)
    labels = batch["labels"].clone()
    labels[:, names.index("arousal")] = 6.0 - labels[:, names.index("arousal")]
    return {**batch, "labels": labels}

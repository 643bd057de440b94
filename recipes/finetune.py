"""Fine-tune a vavl fusion model on a manifest, with Accelerate: setup -> train -> evaluate -> save.

    python recipes/finetune.py --config recipes/configs/crema_d/auxformer.yaml train.epochs=5
    accelerate launch recipes/finetune.py --config recipes/configs/crema_d/auxformer.yaml
    python recipes/finetune.py --config ... --resume latest      # continue where a run stopped

Config (recipes/finetune_config.py: every key, its type, its default) <- the YAML file <- key=value
overrides, merged by OmegaConf; an unknown key or a value of the wrong type stops the run.
Two data paths, chosen by `data.cache`:
- cached features (fast path): frozen-encoder features written by `vavl extract` into a
  FeatureCache; the model sees (b, t, d) frames.
- end to end (`data.cache: null`): raw clips through the processor and an AudioVisualModel whose
  encoders are fine-tuned (layer-wise learning-rate decay over the layer ids the model declares).
Two schedules: `joint` (one loss, one optimiser step per batch) and `vavl` (VAVL's published
loop: per batch a visual-branch update, an acoustic-branch update, then a fusion update).
The model computes every loss (`loss_weights` picks the terms); dev and test are scored by
vavl.evaluation.scoring, as `vavl evaluate` scores them. The model and optimisers a config asks for are
built in finetune_model.py; one training step and its guards in finetune_steps.py; what a run
writes besides the model, in finetune_outputs.py.
Run it by path (`python recipes/finetune.py`, `accelerate launch recipes/finetune.py`) or as
`vavl run finetune ...`; the library never imports it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

import vavl
from vavl.convert import initialize_from
from vavl.data import collate, read_manifest
from vavl.data.augment import augment
from vavl.data.datasets import RawClipDataset, cached_dataset, cached_feature_dims, fill_feature_statistics, relabel, training_splits
from vavl.core.errors import ConfigError, VavlError
from vavl.core.files import atomic_write_text, check_output_dir
from vavl.core.jobs import error_line
from vavl.evaluation.scoring import evaluate, headline
from vavl.models.loading import load_model
from vavl.models.with_encoders import AudioVisualModel

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the recipe's own files, however it is started
from finetune_config import ALIASES, load_config  # noqa: E402
from finetune_model import build_model, class_weights, make_optimizers, resolve_labels  # noqa: E402
from finetune_steps import (is_better, official_arousal_flip, stop_if_not_finite, train_step_joint,  # noqa: E402
                            train_step_vavl, weights_finite)
from finetune_outputs import (JsonlLog, TrainerState, best_model, cache_encoders_for, latest_checkpoint,  # noqa: E402
                              load_state_warning, model_card, provenance, push_to_hub, save_checkpoint, save_failed,
                              wandb_tracker)


# ---- setup ----------------------------------------------------------------------------------
def setup(cfg: DictConfig) -> dict:
    """Everything before the first step: data checks, model, datasets, optimisers, Accelerate objects."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, set_seed
    from transformers import get_scheduler

    from vavl.data.cache import loader_options

    d = cfg.data
    records = relabel(read_manifest(d.manifest), d.label_field, f"{d.manifest} (data.label_field)")
    splits = training_splits(records, d.protocol, d.fold, f"{d.manifest} (data.protocol / data.fold)")
    if d.order == "sorted":   # the official VAVL loader sorts the clips' file names (utils/data_manager.py:47-53, 85)
        splits = {s: sorted(recs, key=lambda r: f"{r['id']}.wav") for s, recs in splits.items()}
    task, names = resolve_labels(cfg, vavl.get_entry(cfg.model.name).config, splits)
    set_seed(cfg.seed)
    t, out_dir, end_to_end = cfg.train, Path(cfg.output_dir), not cfg.data.cache
    # several processes but no GPU (`accelerate launch --multi_gpu --num_processes 2` on a CPU box):
    # Accelerate forms the gloo process group only when told it runs on CPU
    cpu_ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    on_gpu = torch.cuda.is_available()   # batches come from pinned memory and go to the device without blocking
    accelerator = Accelerator(
        cpu=cpu_ddp, mixed_precision=t.mixed_precision, gradient_accumulation_steps=t.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed, non_blocking=on_gpu),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        project_config=ProjectConfiguration(project_dir=str(out_dir)), log_with=wandb_tracker(cfg) or None)
    if accelerator.is_main_process:   # before any model is built: a folder that cannot be written stops here
        check_output_dir(out_dir, "output_dir")
    weights = class_weights(t.class_weights, names, splits["train"]) if task != "regression" else None
    if not end_to_end and (cfg.model.audio_encoder or cfg.model.visual_encoder):
        raise ConfigError("model.audio_encoder / model.visual_encoder are for end-to-end training (data.cache: null); "
                          f"with the feature cache {cfg.data.cache} the model reads cached features: leave them unset")
    model = build_model(cfg, task, names, (None, None) if end_to_end else cached_feature_dims(cfg.data.cache, splits["train"]), weights)
    if end_to_end:
        if hasattr(model, "forward_clips"):   # a whole model with its own encoders (HiCMAE)
            raise ConfigError(f"model.name={cfg.model.name}: {type(model).__name__} is one whole model with its own "
                              "encoders; this recipe fine-tunes vavl encoders + a fusion model and cannot train it yet "
                              "(its config records the official settings; run a converted model with vavl evaluate)")
        if not isinstance(model, AudioVisualModel):
            raise ConfigError("data.cache is null (end to end) but the model has no encoders: "
                              "set model.audio_encoder / model.visual_encoder, or give a feature cache")
        for enc in (e for e in (model.audio_encoder, model.visual_encoder) if e is not None):
            enc.set_frozen(t.freeze_encoders)
            cnn = next((m for m in enc.modules() if hasattr(m, "freeze_feature_encoder")), None)  # wav2vec2's CNN
            if cnn is not None and t.freeze_feature_encoder and not t.freeze_encoders:
                cnn.freeze_feature_encoder()
        datasets = {s: RawClipDataset(recs, model.processor, model.emotion_config) for s, recs in splits.items() if recs}
    else:
        datasets = {s: cached_dataset(cfg.data.cache, recs, model.emotion_config) for s, recs in splits.items() if recs}
        fill_feature_statistics(model, datasets["train"])
    if cfg.model.init:
        initialize_from(model.fusion_model, cfg.model.init, names)
    if end_to_end and model.emotion_config.feature_normalization:
        raise ConfigError("model.config.feature_normalization needs cached features to compute its statistics (data.cache)")
    train_dl = torch.utils.data.DataLoader(datasets["train"], batch_size=t.batch_size, shuffle=t.shuffle, collate_fn=collate,
                                           **loader_options(cfg.data.num_workers, pin_memory=on_gpu))
    if t.compile:   # in place: the module keeps its type, state dict keys and methods (save_pretrained, branches)
        model.compile(backend=t.compile_backend)
    optimizers = make_optimizers(model, cfg, end_to_end)
    total = math.ceil(len(train_dl) / t.gradient_accumulation_steps) * t.epochs
    total = min(total, t.max_steps) if t.max_steps else total
    schedulers = {k: get_scheduler(t.lr_scheduler, o, num_warmup_steps=int(t.warmup_ratio * total), num_training_steps=total)
                  for k, o in optimizers.items()}
    keys = list(optimizers)
    model, train_dl, *rest = accelerator.prepare(model, train_dl, *optimizers.values(), *schedulers.values())
    state = TrainerState()
    origins = {m: accelerator.unwrap_model(model).input_origin(m) for m in ("audio", "visual")}  # what "multiplied by 0" means for its inputs
    corpora = {r.get("corpus") for r in records}
    corpus = d.corpus or (corpora.pop() if len(corpora) == 1 else None)   # one corpus named in the manifest
    synthetic = bool(records) and all(r.get("synthetic") for r in records)   # vavl.data.synthetic's clips
    run = dict(cfg=cfg, records=records, splits={s: len(r) for s, r in splits.items()}, synthetic=synthetic, corpus=corpus,
               names=names)
    # the encoders that made the cache, so that the best model takes media files (main process: it saves)
    encoders = cache_encoders_for(cfg, accelerator.print) if accelerator.is_main_process else None
    run["provenance"] = provenance(run)
    return dict(run, accelerator=accelerator, model=model, train_dl=train_dl, datasets=datasets, origins=origins,
                cache_encoders=encoders,
                optimizers=dict(zip(keys, rest[:len(keys)])), schedulers=dict(zip(keys, rest[len(keys):])),
                state=state, out_dir=out_dir, total_steps=total)


# ---- train ----------------------------------------------------------------------------------
def train(run: dict, config_path: str | None = None) -> dict:
    """Epochs of training with dev evaluation, best-model saving, checkpoints and early stopping."""
    from accelerate.utils import set_seed

    cfg, acc, model, state = run["cfg"], run["accelerator"], run["model"], run["state"]
    t, out_dir = cfg.train, run["out_dir"]
    log = JsonlLog(acc, out_dir / "log.jsonl", state)
    if cfg.resume:
        path = latest_checkpoint(out_dir, acc.print) if cfg.resume == "latest" else Path(cfg.resume)
        if path is None or not path.is_dir():
            raise ConfigError(f"resume={cfg.resume!r}: no checkpoint found in {out_dir / 'checkpoints'}")
        try:
            warning = load_state_warning(acc, path)
        except Exception as e:   # shapes of another config, a damaged or foreign file: one line, no traceback
            raise ConfigError(f"{path}: this checkpoint does not fit the run as configured now "
                              f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}); resume with the config that "
                              "wrote it, or train into a new output_dir") from None
        state.load(path)
        if warning:
            acc.print(warning)
        dropped = log.rewind(state.log_rows)
        acc.print(f"resumed from {path}: epoch {state.epoch}, batch {state.batches_done}, step {state.step}"
                  + (f" ({dropped} rows of log.jsonl written after this checkpoint were dropped)" if dropped else ""))
    if acc.log_with:
        try:
            acc.init_trackers(cfg.log.project, config=OmegaConf.to_container(cfg),
                              init_kwargs={"wandb": {"name": cfg.log.run_name, "dir": str(out_dir)}})
        except Exception as e:  # wandb could not start: go on with the JSONL log only
            acc.print(f"warning: experiment tracker did not start ({e}); logging to {out_dir / 'log.jsonl'} only")
    step_fn = train_step_vavl if t.schedule == "vavl" else train_step_joint
    if cfg.data.official_arousal_flip and (acc.unwrap_model(model).task != "regression"
                                           or "arousal" not in acc.unwrap_model(model).config.label_names):
        raise ConfigError("data.official_arousal_flip needs a regression model with an arousal output; set it to false")
    metric = t.metric or ("ccc" if acc.unwrap_model(model).task == "regression" else "UA")
    stopped = None
    model.train()
    while state.epoch < t.epochs and stopped is None:
        dl = run["train_dl"]
        dl.set_epoch(state.epoch)
        batches = acc.skip_first_batches(dl, state.batches_done) if state.batches_done else dl
        bar = tqdm(batches, total=len(dl), initial=state.batches_done, desc=f"epoch {state.epoch + 1}/{t.epochs}",
                   disable=not (acc.is_local_main_process and cfg.log.progress), unit="batch")
        for batch in bar:
            # reseed per batch: dropout and augmentation draws depend only on (seed, epoch, batch,
            # process), so a resumed run replays exactly what an uninterrupted one would do
            set_seed(cfg.seed + 7919 * (state.epoch * len(dl) + state.batches_done), device_specific=True)
            md = t.modality_dropout
            batch = augment(batch, md.audio, md.visual, t.frame_masking, t.feature_noise, md.mode, md.per, run["origins"])
            if cfg.data.official_arousal_flip and state.epoch % 2 == 0:
                batch = official_arousal_flip(batch, model)
            losses = step_fn(acc, model, batch, run["optimizers"], run["schedulers"], cfg)
            stop_if_not_finite(acc, losses, state, batch)
            state.batches_done += 1
            if not acc.sync_gradients:
                continue
            state.step += 1
            bar.set_postfix(loss=f"{losses['train_loss']:.4f}", step=state.step)
            if state.step % cfg.log.every == 0:
                log({"epoch": state.epoch, **losses, "lr": next(iter(run["schedulers"].values())).get_last_lr()[0]}, state.step)
            if t.checkpoint_every and state.step % t.checkpoint_every == 0:
                weights_finite(model, "checkpoint", state)
                save_checkpoint(acc, out_dir, state, t.checkpoints_to_keep)
            if t.stop_after_steps and state.step >= t.stop_after_steps:
                weights_finite(model, "checkpoint", state)
                save_checkpoint(acc, out_dir, state, t.checkpoints_to_keep)
                stopped = "stop_after_steps"
                break
            if t.max_steps and state.step >= t.max_steps:
                stopped = "max_steps"
                break
        bar.close()
        if stopped == "stop_after_steps":
            break
        if cfg.evaluate.dev:
            condition = cfg.evaluate.dev_condition
            seed = cfg.seed + state.epoch if cfg.evaluate.dev_redraw else cfg.seed
            dev = score(run, acc.unwrap_model(model), "dev", [condition], bootstrap=0, seed=seed)[0][f"dev/{condition}"]
            value = math.nan if dev[metric] is None else dev[metric]
            row = {"epoch": state.epoch, **{f"dev_{k}": v for k, v in dev.items() if isinstance(v, float)}}
            log(row, state.step)
            state.history.append(row)
        else:  # no selection: the model as training leaves it
            value, state.best = math.nan, None
        weights_finite(model, "model", state)
        if not cfg.evaluate.dev or is_better(value, state.best, metric):
            state.best, state.best_epoch, state.bad_epochs = value, state.epoch, 0
            save_best(run, acc.unwrap_model(model), metric, config_path)
        else:
            state.bad_epochs += 1
        state.epoch, state.batches_done = state.epoch + 1, 0
        if not t.checkpoint_every or stopped:
            save_checkpoint(acc, out_dir, state, t.checkpoints_to_keep)
        if t.early_stopping_patience and state.bad_epochs >= t.early_stopping_patience:
            stopped = f"early stopping after epoch {state.epoch} (best epoch {state.best_epoch + 1})"
    acc.wait_for_everyone()
    return {"stopped": stopped, "metric": metric, "best": state.best, "best_epoch": state.best_epoch, "step": state.step}


# ---- evaluate -------------------------------------------------------------------------------
def score(run: dict, model, split: str, names: list[str], bootstrap: int, seed: int | None = None) -> tuple[dict[str, dict], dict]:
    """vavl.evaluation.scoring on one split under the named conditions (every process takes part; each clip
    counted once) -> ({"split/name": headline numbers of the fused head}, the whole results). seed: of the
    conditions' draws and the intervals (default: the run's)."""
    cfg, conditions = run["cfg"], [ALIASES.get(n, n) for n in names]
    size = cfg.evaluate.test_batch_size if split == "test" and cfg.evaluate.test_batch_size else cfg.train.eval_batch_size
    results = evaluate(model, run["datasets"][split], conditions, batch_size=size, bootstrap=bootstrap,
                       seed=cfg.seed if seed is None else seed, accelerator=run["accelerator"], num_workers=cfg.data.num_workers,
                       progress=cfg.log.progress, bootstrap_unit=cfg.evaluate.bootstrap_unit)
    return {f"{split}/{n}": headline(results, c) for n, c in zip(names, conditions)}, results


def test(run: dict, summary: dict, config_path: str | None = None) -> dict:
    """Reload the best model (strictly: every weight must fit) and score dev and test under
    evaluate.conditions; writes results.json and the final model card."""
    cfg, acc, out_dir = run["cfg"], run["accelerator"], run["out_dir"]
    if summary["stopped"] == "stop_after_steps" or not (out_dir / "config.json").is_file():
        return {}
    acc.wait_for_everyone()
    best = load_model(str(out_dir), device=str(acc.device))
    splits = [s for s in ("dev", "test") if s in run["datasets"] and (cfg.evaluate.dev if s == "dev" else cfg.evaluate.test)]
    results, full = {}, {}
    for split in splits:
        rows, full[split] = score(run, best, split, list(cfg.evaluate.conditions), cfg.evaluate.bootstrap)
        results.update(rows)
    if acc.is_main_process:
        report = {"best_epoch": summary["best_epoch"] + 1, "dev_metric": summary["metric"], "dev_best": summary["best"],
                  "steps": summary["step"], "results": results, "metrics": full}
        report.update(protocol=cfg.data.protocol, fold=cfg.data.fold)   # a *-speaker-overlap protocol says so here
        atomic_write_text(out_dir / "results.json", json.dumps(report, indent=2))
        atomic_write_text(out_dir / "README.md", model_card(run, best, summary["metric"], config_path, full))
    return results


# ---- save -----------------------------------------------------------------------------------
def save_best(run: dict, model, metric: str, config_path: str | None) -> None:
    """The best model so far: save_pretrained (+ processor), its card and the config that made it."""
    if not run["accelerator"].is_main_process:
        return
    out_dir = run["out_dir"]
    # trained on a cache: the encoders that made it go in front (vavl predict takes the folder as it is)
    model = best_model(run, model)
    try:
        model.save_pretrained(out_dir, safe_serialization=True)      # a model with encoders saves its processor too
    except Exception as e:   # a full disk: one line
        raise save_failed(out_dir / "model.safetensors", e) from None
    atomic_write_text(out_dir / "README.md", model_card(run, model, metric, config_path))
    atomic_write_text(out_dir / "finetune_config.yaml", OmegaConf.to_yaml(run["cfg"]))


def main(cfg: DictConfig, config_path: str | None = None) -> dict:
    """setup -> train -> test -> cleanup. Returns {"summary", "results", "output_dir"}."""
    run = setup(cfg)
    acc, out_dir = run["accelerator"], run["out_dir"]
    try:
        summary = train(run, config_path)
        results = test(run, summary, config_path)
        acc.wait_for_everyone()  # no process tears the group down while another still writes results
        if cfg.hub.push and acc.is_main_process:
            push_to_hub(out_dir, cfg.hub.repo_id, cfg.hub.private)
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
        lines.append(f"  {key:<20} n={r['n']:<5} " + "  ".join(f"{m}={v:.4f}" for m, v in r.items() if isinstance(v, float) and m != "loss"))
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="overrides: key=value with dotted keys, e.g. train.epochs=5 model.config.hidden_size=64")
    p.add_argument("--config", help="a YAML file under recipes/configs/")
    p.add_argument("--resume", nargs="?", const="latest", help="continue from the latest (or the given) checkpoint")
    p.add_argument("overrides", nargs="*", help="key=value")
    return p.parse_args(argv)


def cli(argv=None) -> int:
    """The command line: exit code 0, or 2 with one line for a bad config or input."""
    args = parse_args(argv)
    try:
        main(load_config(args.config, args.overrides, {"resume": args.resume} if args.resume else None), args.config)
    except VavlError as e:
        print(f"finetune.py: error: {error_line(e)}", file=sys.stderr)   # one line, also from a loader worker
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())

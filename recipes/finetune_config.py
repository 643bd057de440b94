"""The fine-tune recipe's config (recipes/finetune.py): every key with its type and default, as
dataclasses, and `load_config`, which merges them with OmegaConf:

    RecipeConfig defaults <- a YAML file (recipes/configs/<corpus>/<model>.yaml) <- key=value overrides

An unknown key, a value of the wrong type or a bad combination raises a one-line ConfigError
naming the file (or "command line") and the key. `model.config` is free-form: its fields are
checked against the model's config class when the model is built.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from vavl.data.conditions import parse_conditions
from vavl.core.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "auxformer"                    # a registry name (vavl.list_models()) or architecture
    config: dict[str, Any] = field(default_factory=dict)  # model config fields, checked against its class
    audio_encoder: Optional[str] = None        # end to end only: encoder preset / saved folder
    visual_encoder: Optional[str] = None
    pretrained_encoders: bool = True           # end to end: a named encoder means its pretrained weights (false: untrained)
    init: Optional[str] = None                 # start from weights: a save_pretrained folder, an official AuxFormer
                                               # final_head.pt, or an official VAVL run folder (the nine *_head.pt)


@dataclass
class DataConfig:
    manifest: Optional[str] = None             # a .jsonl written by `vavl prepare`
    cache: Optional[str] = None                # a feature cache from `vavl extract`; null = end to end on raw clips
    protocol: str = "vavl-1"                   # a key of each record's "folds"
    fold: Optional[int] = None                 # test fold for k-fold protocols
    label_field: str = "label"                 # record field holding the class label (e.g. labels.perceived-av)
    labels: Optional[list[str]] = None         # class names in order; null = the labels found in the training split
    allow_unseen_labels: bool = False          # keep data.labels classes the training split never has (an official run on part of its data)
    task: Optional[str] = None                 # null = the model entry's task
    num_workers: int = 0                       # loader processes; > 0: kept between epochs, batches read ahead
    corpus: Optional[str] = None               # for the model card (license, model-index); null = the manifest's
    order: str = "manifest"                    # clip order in each split: manifest | sorted (by clip id: VAVL's official order)
    official_arousal_flip: bool = False        # regression: train on 6 - arousal in epochs 1, 3, 5, ... (VAVL's in-place flip on every read)


@dataclass
class ModalityDropout:
    audio: float = 0.0
    visual: float = 0.0
    mode: str = "mask"                         # mask: the modality goes missing | zero: input x 0, masks kept
    per: str = "sample"                        # sample: each clip draws | batch: one draw per batch (official AuxFormer)


@dataclass
class TrainConfig:
    schedule: str = "joint"                    # joint | vavl
    epochs: int = 20
    batch_size: int = 32                       # per process
    eval_batch_size: int = 64
    optimizer: str = "adamw"                   # adamw (decoupled weight decay) | adam (weight_decay is an L2 term)
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-4
    lr_scheduler: str = "cosine"               # any transformers scheduler name: linear, cosine, constant_with_warmup, ...
    warmup_ratio: float = 0.05
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"                # no | fp16 | bf16: autocast through Accelerate (weights stay fp32)
    compile: bool = False                      # torch.compile the model (in place: its type and state dict keys stay)
    compile_backend: str = "inductor"          # any torch.compile backend (aot_eager: no code generation, for tests)
    class_weights: Any = None                  # null | balanced | [w0, w1, ...]
    loss_weights: Optional[dict[str, float]] = None  # loss terms and weights (EmotionModel.compute_loss); null = the model's
    shuffle: bool = True                       # false: batches in the manifest's order
    modality_dropout: ModalityDropout = field(default_factory=ModalityDropout)
    frame_masking: float = 0.0
    feature_noise: float = 0.0
    metric: Optional[str] = None               # dev metric for best model / early stopping: UA WA macro_f1 micro_f1 ccc loss
    early_stopping_patience: int = 0           # epochs without dev improvement before stopping; 0 = never
    checkpoint_every: int = 0                  # optimiser steps between save_state checkpoints; 0 = each epoch end
    checkpoints_to_keep: int = 2
    max_steps: int = 0                         # stop training after this many optimiser steps (0 = no limit)
    stop_after_steps: int = 0                  # debug: checkpoint and exit after this many steps (simulates a kill)
    layer_decay: float = 1.0                   # end to end: lr x decay^(depth below the top) for encoder layers
    encoder_lr: Optional[float] = None         # end to end: base lr of the encoders (null = train.lr)
    freeze_feature_encoder: bool = True        # end to end: keep wav2vec2's CNN feature encoder frozen
    freeze_encoders: bool = False              # end to end: no encoder fine-tuning at all


@dataclass
class LogConfig:
    wandb: bool = True
    project: str = "vavl"
    run_name: Optional[str] = None
    every: int = 10
    progress: bool = True


@dataclass
class EvaluateConfig:
    dev: bool = True                           # score dev after each epoch (selection, early stopping); false: keep the last model
    dev_condition: str = "av"                  # the condition dev is scored under for selection (e.g. shut-off:0.2)
    dev_redraw: bool = False                   # true: a seeded condition's draws change every epoch (seed + epoch), as the
                                               # official AuxFormer dev shut-off does; false: the same draws every epoch
    bootstrap_unit: str = "speaker"            # what the intervals resample: speaker (clusters) | clip
    test: bool = True
    conditions: list[str] = field(default_factory=lambda: ["audio+video", "audio", "video"])  # or any `vavl evaluate` condition
    bootstrap: int = 1000                      # resamples for the 95% intervals of the final dev / test scores
    test_batch_size: Optional[int] = None      # the final test pass's batch (null = train.eval_batch_size); matters only
                                               # for models whose outputs depend on the batch (official_batching)


@dataclass
class HubConfig:
    repo_id: Optional[str] = None              # e.g. your-name/auxformer-crema-d
    push: bool = False                         # upload the best model folder (weights, config, card) at the end
    private: bool = True


@dataclass
class RecipeConfig:
    seed: int = 0
    output_dir: str = "runs/finetune"
    resume: Optional[str] = None               # null | "latest" | a checkpoint folder
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    hub: HubConfig = field(default_factory=HubConfig)


ALIASES = {"audio+video": "av"}                # config condition names -> vavl.data.conditions names
METRICS = ("UA", "WA", "macro_f1", "micro_f1", "ccc", "loss")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = (), extra: dict | None = None) -> DictConfig:
    """RecipeConfig <- YAML file <- `extra` dict <- key=value overrides, then checked."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"{path}: config file not found")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"override {bad[0]!r} must look like key=value (e.g. train.epochs=5)")
    cfg = OmegaConf.structured(RecipeConfig)
    layers = [(str(path), lambda: _load_yaml(path))] if path is not None else []
    layers += [("arguments", lambda: OmegaConf.create(extra or {})), ("command line", lambda: OmegaConf.from_dotlist(list(overrides)))]
    for source, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer())
        except ConfigKeyError as e:
            valid = valid_keys(OmegaConf.to_container(OmegaConf.structured(RecipeConfig)))
            guess = difflib.get_close_matches(e.full_key, valid, n=1)
            raise ConfigError(f"{source}: unknown config key {e.full_key!r}" + (f" (did you mean {guess[0]!r}?)" if guess else "")
                              + f". Valid keys: {', '.join(valid)}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML ({' '.join(str(e).split())})") from None
        except OmegaConfBaseException as e:   # a value of the wrong type
            where = f"{e.full_key}: " if getattr(e, "full_key", None) else ""
            raise ConfigError(f"{source}: {where}{str(e).splitlines()[0]}") from None
    try:   # ${...} interpolations resolved here, so that a bad one is one line now, not a traceback later
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        where = f"{e.full_key}: " if getattr(e, "full_key", None) else ""
        raise ConfigError(f"{path or 'command line'}: {where}{str(e).splitlines()[0]}") from None
    check_config(cfg)
    return cfg


def _load_yaml(path) -> DictConfig:
    """A YAML file whose top level is a mapping of config keys."""
    try:
        layer = OmegaConf.load(path)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) YAML file") from None
    if not isinstance(layer, DictConfig):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys (e.g. `train:`), "
                          f"not a {type(layer).__name__.replace('Config', '').lower() or 'value'}")
    return layer


def valid_keys(tree: dict, prefix: str = "") -> list[str]:
    """Dotted names of every key (free-form sections such as model.config count as one)."""
    return [k for name, v in tree.items() for k in (valid_keys(v, f"{prefix}{name}.") if isinstance(v, dict) and v
                                                     else [f"{prefix}{name}"])]


def check_config(cfg: DictConfig) -> None:
    t = cfg.train
    if t.optimizer not in ("adamw", "adam"):
        raise ConfigError(f"train.optimizer={t.optimizer!r} must be 'adamw' or 'adam'")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise ConfigError(f"train.betas={list(t.betas)!r} must be two numbers in [0, 1)")
    if cfg.evaluate.bootstrap_unit not in ("speaker", "clip"):
        raise ConfigError(f"evaluate.bootstrap_unit={cfg.evaluate.bootstrap_unit!r} must be 'speaker' or 'clip'")
    if t.schedule not in ("joint", "vavl"):
        raise ConfigError(f"train.schedule={t.schedule!r} must be 'joint' or 'vavl'")
    if t.mixed_precision == "False":   # YAML 1.1 reads `no` (train.mixed_precision=no) as false
        t.mixed_precision = "no"
    if t.mixed_precision not in ("no", "fp16", "bf16"):
        raise ConfigError(f"train.mixed_precision={t.mixed_precision!r} must be no, fp16 or bf16")
    if t.compile:
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
        if t.compile_backend not in backends:
            raise ConfigError(f"train.compile_backend={t.compile_backend!r} is not a torch.compile backend; "
                              f"choose one of {', '.join(backends)}")
    if cfg.data.num_workers < 0:
        raise ConfigError(f"data.num_workers={cfg.data.num_workers} must be 0 (read in the training process) or more")
    for key in ("epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps", "checkpoints_to_keep"):
        if t[key] <= 0:
            raise ConfigError(f"train.{key}={t[key]!r} must be a positive integer")
    if cfg.evaluate.test_batch_size is not None and cfg.evaluate.test_batch_size <= 0:
        raise ConfigError(f"evaluate.test_batch_size={cfg.evaluate.test_batch_size!r} must be a positive integer or null")
    if cfg.data.order not in ("manifest", "sorted"):
        raise ConfigError(f"data.order={cfg.data.order!r} must be 'manifest' or 'sorted'")
    if cfg.log.every <= 0:
        raise ConfigError(f"log.every={cfg.log.every!r} must be a positive integer (log every N optimiser steps)")
    ranges = {   # key: (value, low, high, what) -- inclusive bounds; None: no bound
        "train.lr": (t.lr, 0, None, "a positive learning rate"),
        "train.encoder_lr": (t.encoder_lr, 0, None, "a positive learning rate (or null: train.lr)"),
        "train.warmup_ratio": (t.warmup_ratio, 0, 1, "a fraction of the training steps, in [0, 1]"),
        "train.max_grad_norm": (t.max_grad_norm, 0, None, "0 (no clipping) or a positive norm"),
        "train.weight_decay": (t.weight_decay, 0, None, "0 or more"),
        "train.layer_decay": (t.layer_decay, 0, 1, "in (0, 1]"),
        "train.frame_masking": (t.frame_masking, 0, 1, "a probability in [0, 1]"),
        "train.feature_noise": (t.feature_noise, 0, None, "0 or more"),
        "train.checkpoint_every": (t.checkpoint_every, 0, None, "0 (each epoch end) or a number of steps"),
        "train.max_steps": (t.max_steps, 0, None, "0 (no limit) or a number of steps"),
        "train.stop_after_steps": (t.stop_after_steps, 0, None, "0 or a number of steps"),
        "train.early_stopping_patience": (t.early_stopping_patience, 0, None, "0 (never) or a number of epochs"),
        "evaluate.bootstrap": (cfg.evaluate.bootstrap, 0, None, "0 (no intervals) or a number of resamples"),
    }
    for key, (value, low, high, what) in ranges.items():
        if value is None and key == "train.encoder_lr":
            continue
        strict = key in ("train.lr", "train.encoder_lr", "train.layer_decay")   # 0 is not allowed either
        if value != value or abs(value) == float("inf") or (value <= low if strict else value < low) or (high is not None and value > high):
            raise ConfigError(f"{key}={value!r} must be {what}")
    if cfg.data.labels is not None and len(cfg.data.labels) == 0:
        raise ConfigError("data.labels=[] names no class; give the class names in order, or null for the model's")
    if t.metric is not None and t.metric not in METRICS:
        raise ConfigError(f"train.metric={t.metric!r} must be one of {', '.join(METRICS)}")
    if t.schedule == "vavl" and t.gradient_accumulation_steps != 1:
        raise ConfigError("train.schedule=vavl updates three parameter groups per batch; use gradient_accumulation_steps=1")
    if t.schedule == "vavl" and not cfg.data.cache:
        raise ConfigError("train.schedule=vavl needs cached features (data.cache); use schedule=joint end to end")
    if cfg.hub.push and not cfg.hub.repo_id:
        raise ConfigError("hub.push=true needs hub.repo_id (e.g. hub.repo_id=your-name/auxformer-crema-d)")
    if not cfg.data.manifest:
        raise ConfigError("data.manifest is not set; give the manifest written by `vavl prepare` (data.manifest=PATH)")
    cb = t.class_weights
    if not (cb is None or cb == "balanced" or OmegaConf.is_list(cb)):
        raise ConfigError(f"train.class_weights={cb!r} must be null, 'balanced' or a list of numbers")
    parse_conditions([ALIASES.get(c, c) for c in cfg.evaluate.conditions])
    parse_conditions([ALIASES.get(cfg.evaluate.dev_condition, cfg.evaluate.dev_condition)])

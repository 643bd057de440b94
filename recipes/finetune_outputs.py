"""What a fine-tune run writes besides the model (recipes/finetune.py): checkpoints with the
trainer state (JSON, never pickled), the JSONL log and the experiment trackers, the model card, and
the upload of the best model to the Hugging Face Hub.

A checkpoint is written into checkpoints/.step_N.partial and renamed to checkpoints/step_N when
complete (trainer_state.json is its last file), so a run killed while saving, or a full disk,
never leaves a step_N that `--resume` would take; `--resume` takes the newest complete one and
says which it skipped. A checkpoint that cannot be written stops the run in one line."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from vavl.data.cache import FeatureCache
from vavl.core.errors import ConfigError, DataError
from vavl.core.files import atomic_write_text, public_modes, write_error
from vavl.models import cards
from vavl.models.cards import cached_features, prediction_rule, render_card, results_table  # noqa: F401
from vavl.models.provenance import NotRebuildable, cache_encoders, describe_weights, model_from_cache


class TrainerState:
    """Where training stands; written as JSON into every checkpoint folder (never pickled, so a
    checkpoint folder from elsewhere cannot run code when it is resumed)."""

    FILE = "trainer_state.json"

    def __init__(self):
        self.epoch, self.batches_done, self.step = 0, 0, 0
        self.best, self.best_epoch, self.bad_epochs, self.history = None, -1, 0, []
        self.log_rows = None   # rows of log.jsonl when the state was saved (a resume drops the later ones)

    def save(self, folder: Path) -> None:
        atomic_write_text(folder / self.FILE, json.dumps(vars(self)))

    def load(self, folder: Path) -> None:
        try:
            saved = json.loads((folder / self.FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{folder}: no readable {self.FILE} ({type(e).__name__}); resume from a checkpoint "
                              "this recipe wrote") from None
        unknown = set(saved) - set(vars(self))
        if unknown:
            raise ConfigError(f"{folder / self.FILE}: unknown fields {sorted(unknown)}; resume from a checkpoint this recipe wrote")
        vars(self).update(saved)


class JsonlLog:
    """One JSON line per logged step / evaluation, on the main process (plus the trackers). The
    row count goes into the trainer state, so that a resumed run first drops the rows written
    after its checkpoint (they are written again) and log.jsonl never holds a step twice."""

    def __init__(self, accelerator, path: Path, state: TrainerState | None = None):
        self.accelerator, self.path, self.state = accelerator, path, state
        self.rows = self._count()
        if state is not None:
            state.log_rows = self.rows

    def _count(self) -> int:
        if not self.accelerator.is_main_process or not self.path.is_file():
            return 0
        with open(self.path, "rb") as f:
            return sum(1 for _ in f)

    def rewind(self, rows: int | None) -> int:
        """Keep the first `rows` rows (those written before the checkpoint); returns how many were dropped."""
        if rows is None or not self.accelerator.is_main_process or self._count() <= rows:
            return 0
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        atomic_write_text(self.path, "".join(lines[:rows]))
        self.rows = rows
        if self.state is not None:
            self.state.log_rows = rows
        return len(lines) - rows

    def __call__(self, row: dict, step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        row = {"step": step, "time": round(time.time(), 3), **row}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self.rows += 1
        if self.state is not None:
            self.state.log_rows = self.rows
        try:
            self.accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=step)
        except Exception as e:  # a tracker failing must never stop training
            print(f"warning: tracker log failed ({e})", file=sys.stderr)


def load_state_warning(accelerator, path: Path) -> str | None:
    """accelerator.load_state(path); Accelerate only logs at INFO level when a process's RNG state
    file cannot be read: that becomes a warning line (returned)."""
    import logging

    class Catch(logging.Handler):
        seen = False

        def emit(self, record):
            Catch.seen |= "Could not load random states" in record.getMessage()

    logger, handler = logging.getLogger("accelerate.checkpointing"), Catch(logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False   # caught here, not printed
    try:
        accelerator.load_state(str(path))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    if Catch.seen:
        return (f"warning: {path}: random_states_{accelerator.process_index}.pkl could not be read, so the random "
                "state was not restored (training reseeds every batch from the seed, so the batches still match)")
    return None


def wandb_tracker(cfg: DictConfig) -> list[str]:
    """["wandb"] when wandb is enabled and importable; offline unless the user is logged in."""
    if not cfg.log.wandb:
        return []
    try:
        import wandb  # noqa: F401
    except Exception:
        return []
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not (os.environ.get("WANDB_API_KEY") or (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))):
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_DIR", cfg.output_dir)
    return ["wandb"]


def checkpoints(out_dir: Path) -> list[Path]:
    """checkpoints/step_N folders, oldest first (complete or not)."""
    found = [p for p in (out_dir / "checkpoints").glob("step_*") if p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def is_complete(folder: Path) -> bool:
    """trainer_state.json is written last: a folder without it was cut short (a kill, a full disk)."""
    return (folder / TrainerState.FILE).is_file()


def latest_checkpoint(out_dir: Path, say=print) -> Path | None:
    """The newest complete checkpoint; each newer incomplete one is named in one line."""
    for folder in reversed(checkpoints(out_dir)):
        if is_complete(folder):
            return folder
        say(f"resume: skipping {folder} (incomplete: no {TrainerState.FILE}; a run stopped while writing it)")
    return None


def save_failed(path: Path, e: BaseException) -> DataError:
    """Why `path` (a checkpoint, the best model) could not be written, in one line."""
    if isinstance(e, OSError):
        return write_error(path, e)
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    full = any(w in reason for w in ("No space left", "StorageFull", "os error 28", "File too large", "os error 27"))
    return DataError(f"{path}: could not write ({type(e).__name__}: {reason})"
                     + ("; the disk is full: free some space" if full else ""))


def save_checkpoint(accelerator, out_dir: Path, state: TrainerState, keep: int) -> None:
    """Accelerate's state + the trainer state into .step_N.partial, renamed to step_N when complete."""
    root = out_dir / "checkpoints"
    folder, partial = root / f"step_{state.step}", root / f".step_{state.step}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)   # left by a run killed while saving
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(partial))
        if accelerator.is_main_process:
            state.save(partial)
            public_modes(partial)   # safetensors writes 0600 whatever the umask
    except Exception as e:   # a full disk, a quota: one line; the checkpoints already written stay
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        error = save_failed(folder, e)
        raise DataError(f"{error}; the run stopped (earlier checkpoints in {root} are kept: "
                        "resume with --resume once there is room)") from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if folder.exists():   # the same step saved again (a resumed run)
            shutil.rmtree(folder)
        os.replace(partial, folder)
        for old in checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# ---- what the best model is and where it came from ---------------------------------------------
def cache_encoders_for(cfg: DictConfig, say=print) -> dict | None:
    """The encoders that made `data.cache`, rebuilt from its cache.json (and checked against the
    sha256 recorded there: other weights stop the run with one line naming both), so that the best
    model takes media files; None, with a line saying why, when they cannot be rebuilt (an encoder
    given in code, weights not on this machine): the model then takes cached features only."""
    if not cfg.data.cache:
        return None
    try:
        return cache_encoders(FeatureCache(cfg.data.cache).settings, str(cfg.data.cache))
    except NotRebuildable as e:
        say(f"note: {e}; the trained model will take cached features only (vavl evaluate --cache), not media files")
        return None


def provenance(run: dict) -> dict:
    """What the model was trained on, recorded in its config (config.json: fusion `provenance`) and card."""
    cfg = run["cfg"]
    d = cfg.data
    out = {"weights": "trained", "trained_by": "recipes/finetune.py", "model": cfg.model.name,
           "corpus": run["corpus"], "synthetic": run["synthetic"], "manifest": str(d.manifest),
           "protocol": d.protocol, "fold": d.fold, "label_field": d.label_field, "labels": list(run["names"]),
           "splits": run["splits"]}
    if d.cache:
        settings = FeatureCache(d.cache).settings
        out["features"] = {"cache": str(d.cache), **{f"{m}_{k}": settings.get(f"{m}_{k}") for m in ("audio", "visual")
                                                     for k in ("encoder", "weights")}}
    else:
        out["features"] = {"cache": None, "end_to_end": True}
    return out


def best_model(run: dict, model):
    """What save_best writes: the fusion model with its provenance; trained on a cache whose encoders
    could be rebuilt, the full model (those encoders + the cache's processor settings) around it."""
    fusion = getattr(model, "fusion_model", model)
    fusion.config.provenance = run["provenance"]
    encoders = run.get("cache_encoders")
    if not encoders:
        return model
    return model_from_cache(fusion, FeatureCache(run["cfg"].data.cache).settings, encoders)


def _encoders_fact(run: dict, model) -> str:
    """Which encoders made the model's inputs, with their weights (pretrained / random-init / folder + sha256)."""
    feats = (run.get("provenance") or {}).get("features") or {}
    if not feats.get("cache"):
        specs = [(m, getattr(model.config, f"{m}_encoder", None)) for m in ("audio", "visual")]
        return "; ".join(f"{m}: `{s.get('name') or s.get('model_name') or s.get('kind')}`, {s.get('weights')}, fine-tuned"
                         for m, s in specs if s) or "—"
    parts = []
    for m in ("audio", "visual"):
        name, w = feats.get(f"{m}_encoder"), feats.get(f"{m}_weights") or {}
        if name:
            sha = f", sha256 `{w['sha256'][:16]}…`" if w.get("sha256") and w.get("weights") != "none" else ""
            parts.append(f"{m}: `{name}`, weights {describe_weights(w)}{sha}")
    return "; ".join(parts) or "not recorded in the cache's cache.json"


def trained_on(run: dict) -> str:
    """The data, in words: "synthetic clips (vavl.data.synthetic) in the CREMA-D layout" or the corpus."""
    corpus = run.get("corpus")
    if run.get("synthetic"):
        return f"synthetic clips (vavl.data.synthetic){f' in the {corpus} layout' if corpus else ''}, not real recordings"
    return corpus or "a custom manifest"


def model_card(run: dict, model, metric: str, config_path: str | None, results: dict | None = None) -> str:
    """The run's model card, written like the zoo's (vavl.models.cards.render_card): what was trained on
    what (encoders and their weights, corpus or synthetic data, protocol, split sizes, label field), the
    best dev score and, after testing, the dev / test tables."""
    cfg, state, names, c = run["cfg"], run["state"], run["names"], model.emotion_config
    d, t = cfg.data, cfg.train
    fusion = getattr(model, "fusion_model", model)
    media = any(getattr(model, f"{m}_encoder", None) is not None for m in ("audio", "visual"))
    protocol = f"`{d.protocol}`" + ("" if d.fold is None else f", fold {d.fold}")
    sizes = ", ".join(f"{s} {n}" for s, n in run.get("splits", {}).items())
    facts = [("architecture", f"`{type(fusion).__name__}` ({c.model_type}), {sum(p.numel() for p in fusion.parameters()):,} "
                              f"parameters; built from the registry entry `{cfg.model.name}`"),
             ("task", c.task), ("attributes" if c.task == "regression" else "classes", ", ".join(names)),
             ("prediction", prediction_rule(getattr(c, "prediction", "fused"))),
             ("encoders", _encoders_fact(run, model)),
             ("inputs", (f"cached frozen-encoder features `{d.cache}` ({c.audio_dim}-d audio, {c.visual_dim}-d visual)"
                         + ("; this folder holds those encoders too, so it takes media files" if media else
                            "; this folder holds the fusion model only: it takes those features")) if d.cache
              else "raw clips, encoders fine-tuned"),
             ("trained on", trained_on(run)),
             ("data", f"`{d.manifest}`, protocol {protocol}, split sizes: {sizes}, label field `{d.label_field}`"),
             ("training", f"schedule `{t.schedule}`, {t.epochs} epochs, lr {t.lr}, batch {t.batch_size} per process, "
                          f"modality dropout {dict(t.modality_dropout)}, seed {cfg.seed}"),
             ("recipe", f"`python recipes/finetune.py --config {config_path or '<config>'}` (full config in `finetune_config.yaml`)")]
    found = (f"| dev_best_{metric} | {state.best:.4f} (epoch {state.best_epoch + 1}) |" if cfg.evaluate.dev
             else "| selection | none (evaluate.dev=false): the model after the last step |")
    where = "synthetic data, not a corpus: these numbers say the pipeline works, nothing about real emotion recognition" \
        if run.get("synthetic") else trained_on(run)
    tables = "".join(f"\n### {split} ({r['n_samples']} clips of {where})\n\n{results_table(r)}"
                     for split, r in (results or {}).items())
    use = ("```bash\nvavl predict clip.mp4 folder/ --model <this folder>\n```\n" if media else
           '```python\nimport vavl\nfrom transformers import AutoModel\nmodel = AutoModel.from_pretrained("<this folder>")\n'
           "out = model(audio_features=a, audio_mask=am, visual_features=v, visual_mask=vm)\n```\n")
    title = f"{type(fusion).__name__} on {_input_words(run, model)}, trained on {trained_on(run)}"
    body = render_card(title, "Trained and scored by `recipes/finetune.py`.", facts,
                       [("Results", f"| metric | value |\n|---|---|\n{found}\n{tables}"), ("Use", use)])
    features = cached_features(FeatureCache(d.cache).settings) if d.cache else {}
    corpus = cards.SYNTHETIC if run.get("synthetic") else run["corpus"]
    return cards.render(model, body, name=Path(cfg.output_dir).name, corpus=corpus, label=d.label_field,
                        protocol=d.protocol + ("" if d.fold is None else f" fold {d.fold}"), results=results, **features)


def _input_words(run: dict, model) -> str:
    """"mfcc + face-rgb features" / "raw clips (wav2vec2-base + efficientnet_b2)"."""
    feats = (run.get("provenance") or {}).get("features") or {}
    names = [Path(str(n)).name for n in (feats.get("audio_encoder"), feats.get("visual_encoder")) if n]
    if feats.get("cache"):
        return f"{' + '.join(names)} features" if names else "cached features"
    specs = [getattr(model.config, f"{m}_encoder", None) or {} for m in ("audio", "visual")]
    names = [str(s.get("name") or s.get("model_name") or s.get("kind")) for s in specs if s]
    return f"raw clips ({' + '.join(names)})" if names else "raw clips"


UPLOADED = ["*.json", "*.safetensors", "README.md", "finetune_config.yaml", "*.png"]   # the model, not the run


def push_to_hub(folder: Path, repo_id: str, private: bool) -> str:
    """Upload the best model folder (weights, config, processor, card) to the Hugging Face Hub."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, private=private, exist_ok=True)
    return upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=UPLOADED,
                         ignore_patterns=["checkpoints/*", "wandb/*"], commit_message="vavl: fine-tuned with recipes/finetune.py")

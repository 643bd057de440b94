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


def model_card(run: dict, model, metric: str, config_path: str | None, results: dict | None = None) -> str:
    """The run's model card, written like the zoo's (vavl.models.cards.render_card): what was trained on
    what, the best dev score and, after testing, the dev / test tables."""
    cfg, state, names, c = run["cfg"], run["state"], run["names"], model.emotion_config
    d, t = cfg.data, cfg.train
    facts = [("architecture", f"`{type(model).__name__}` ({c.model_type}), {sum(p.numel() for p in model.parameters()):,} parameters"),
             ("task", c.task), ("attributes" if c.task == "regression" else "classes", ", ".join(names)),
             ("prediction", prediction_rule(getattr(c, "prediction", "fused"))),
             ("inputs", f"cached frozen-encoder features `{d.cache}` ({c.audio_dim}-d audio, {c.visual_dim}-d visual)" if d.cache
              else "raw clips, encoders fine-tuned"),
             ("data", f"`{d.manifest}`, protocol `{d.protocol}`" + ("" if d.fold is None else f", fold {d.fold}")
              + f", label field `{d.label_field}`"),
             ("training", f"schedule `{t.schedule}`, {t.epochs} epochs, lr {t.lr}, batch {t.batch_size} per process, "
                          f"modality dropout {dict(t.modality_dropout)}, seed {cfg.seed}"),
             ("recipe", f"`python recipes/finetune.py --config {config_path or '<config>'}` (full config in `finetune_config.yaml`)")]
    found = (f"| dev_best_{metric} | {state.best:.4f} (epoch {state.best_epoch + 1}) |" if cfg.evaluate.dev
             else "| selection | none (evaluate.dev=false): the model after the last step |")
    tables = "".join(f"\n### {split} ({r['n_samples']} clips)\n\n{results_table(r)}" for split, r in (results or {}).items())
    use = ('```python\nimport vavl\nfrom transformers import AutoModel\nmodel = AutoModel.from_pretrained("<this folder>")\n'
           "out = model(audio_features=a, audio_mask=am, visual_features=v, visual_mask=vm)\n```\n")
    body = render_card(f"{cfg.model.name} fine-tuned with vavl", "Trained and scored by `recipes/finetune.py`.", facts,
                       [("Results", f"| metric | value |\n|---|---|\n{found}\n{tables}"), ("Use", use)])
    features = cached_features(FeatureCache(d.cache).settings) if d.cache else {}
    return cards.render(model, body, name=Path(cfg.output_dir).name, corpus=run["corpus"], label=d.label_field,
                       protocol=d.protocol + ("" if d.fold is None else f" fold {d.fold}"), results=results, **features)


UPLOADED = ["*.json", "*.safetensors", "README.md", "finetune_config.yaml", "*.png"]   # the model, not the run


def push_to_hub(folder: Path, repo_id: str, private: bool) -> str:
    """Upload the best model folder (weights, config, processor, card) to the Hugging Face Hub."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, private=private, exist_ok=True)
    return upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=UPLOADED,
                         ignore_patterns=["checkpoints/*", "wandb/*"], commit_message="vavl: fine-tuned with recipes/finetune.py")

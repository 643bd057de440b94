"""What a fine-tune run writes besides the model (recipes/finetune.py): checkpoints with the
trainer state (JSON, never pickled), the JSONL log and the experiment trackers, the model card, and
the upload of the best model to the Hugging Face Hub."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from vavl.data.cache import FeatureCache
from vavl.core.errors import ConfigError
from vavl.models import cards
from vavl.models.cards import cached_features, prediction_rule, render_card, results_table  # noqa: F401


class TrainerState:
    """Where training stands; written as JSON into every checkpoint folder (never pickled, so a
    checkpoint folder from elsewhere cannot run code when it is resumed)."""

    FILE = "trainer_state.json"

    def __init__(self):
        self.epoch, self.batches_done, self.step = 0, 0, 0
        self.best, self.best_epoch, self.bad_epochs, self.history = None, -1, 0, []

    def save(self, folder: Path) -> None:
        tmp = folder / f".{self.FILE}.tmp"
        tmp.write_text(json.dumps(vars(self)), encoding="utf-8")
        os.replace(tmp, folder / self.FILE)

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
    return sorted((out_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))


def latest_checkpoint(out_dir: Path) -> Path | None:
    return (checkpoints(out_dir) or [None])[-1]


def save_checkpoint(accelerator, out_dir: Path, state: TrainerState, keep: int) -> None:
    folder = out_dir / "checkpoints" / f"step_{state.step}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        state.save(folder)
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

"""The official training procedures, reproduced by recipes/finetune.py itself.

`tests/fixtures/training-parity/` holds each official loop's weights before and after a few
optimiser steps (CPU, fp32, every dropout 0), the batches it consumed and the loss of every step.
Here the recipe's command line runs the official config on those batches (written into a feature
cache in the manifest's order; dropouts set to 0 by overrides, as in the fixture), from the
official initial weights (`model.init`), and must log the same losses and end at weights whose
eval outputs are the fixture's.

Overrides the fixture needs beyond the dropouts: its own (smaller) shapes; `train.shuffle=false`
(the batches are stored in the order the loop consumed them); no train-statistics z-scoring
(`feature_normalization=[]`: the stored video tensors are what the official loop fed, after its
normalisation); no modality dropout draw (the fixture stores the shut-off batches already
multiplied by 0); dev evaluation off.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vavl  # noqa: F401  (registers the model classes with AutoModel)
from vavl.convert import load_official_vavl
from vavl.data import write_manifest
from vavl.data.cache import FeatureCache
from vavl.core.labels import OFFICIAL_CLASSES

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "training-parity"
CLASSES = list(OFFICIAL_CLASSES["crema-d"])   # the fixtures' one-hot y are in the official order
TOL = 1e-4


def write_corpus(root: Path, steps: list[dict], held_out: dict) -> tuple[Path, Path]:
    """Manifest + feature cache: the training clips batch by batch in order, the held-out clips as dev / test."""
    cache = FeatureCache(root / "cache")
    cache.init({"audio": "training-parity fixture", "visual": "training-parity fixture"})
    records = []
    for split, batches in (("train", steps), ("dev", [held_out])):
        for k, batch in enumerate(batches):
            for i in range(len(batch["x_aud"])):
                clip = f"{split}{k:02d}_{i}"
                cache.write(clip, batch["x_aud"][i], batch["x_vid"][i], {})
                label = CLASSES[int(batch["y"][i].argmax())] if "y" in batch else records[0]["label"]
                records.append({"id": clip, "speaker": f"{split}-s{i % 3}", "label": label, "labels": {"perceived-av": label, "consensus-av": label},
                                "folds": {"fixture": split}})
    write_manifest(records, root / "manifest.jsonl")
    return root / "manifest.jsonl", root / "cache"


def run_recipe(config: str, overrides: list[str]) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "finetune.py"), "--config", str(ROOT / config), *overrides],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]


def logged_losses(out: Path) -> list[dict]:
    return [row for row in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "train_loss" in row]


def common(manifest: Path, cache: Path, out: Path, steps: int, batch: int) -> list[str]:
    return [f"data.manifest={manifest}", f"data.cache={cache}", "data.protocol=fixture", f"output_dir={out}",
            "train.shuffle=false", f"train.max_steps={steps}", "train.epochs=1", f"train.batch_size={batch}",
            "train.modality_dropout.audio=0", "train.modality_dropout.visual=0", "model.config.feature_normalization=[]",
            "evaluate.dev=false", "evaluate.test=false", "log.every=1", "log.wandb=false", "log.progress=false",
            "data.allow_unseen_labels=true"]   # the fixtures' few training batches lack some of the official classes


def test_auxformer_official_recipe_reproduces_the_official_training_steps(tmp_path):
    fixture = FIXTURES / "auxformer"
    io, ref = load_file(fixture / "io.safetensors"), json.loads((fixture / "config.json").read_text())
    steps = [{k: io[f"{s}.{k}"] for k in ("x_aud", "x_vid", "y")} for s in range(ref["steps"])]
    manifest, cache = write_corpus(tmp_path, steps, {"x_aud": io["eval.x_aud"], "x_vid": io["eval.x_vid"]})
    out = tmp_path / "run"
    dropouts = [f"model.config.{k}=0" for k in ("attn_dropout", "relu_dropout", "res_dropout", "embed_dropout", "out_dropout")]
    run_recipe("recipes/configs/crema_d/auxformer_official.yaml",
               common(manifest, cache, out, ref["steps"], ref["batch"]) + dropouts
               + [f"model.config.num_heads={ref['num_heads']}", f"model.config.num_layers={ref['layers']}",
                  f"model.init={fixture / 'init_head.pt'}"])
    losses = [row["train_loss"] for row in logged_losses(out)]
    assert len(losses) == ref["steps"]
    worst_loss = max(abs(a - b) for a, b in zip(losses, ref["losses"]))
    assert worst_loss <= TOL, (losses, ref["losses"])
    model = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        got = model(audio_features=io["eval.x_aud"], visual_features=io["eval.x_vid"])
    diffs = {name: (got[ours] - io[f"eval.{name}"]).abs().max().item() for ours, name in
             (("fused_logits", "output"), ("audio_logits", "output_a_aux"), ("visual_logits", "output_v_aux"),
              ("logits", "prediction"))}
    assert max(diffs.values()) <= TOL, diffs
    print(f"auxformer: largest loss difference {worst_loss:.2e}, largest output difference {max(diffs.values()):.2e}")


def test_vavl_official_recipe_reproduces_the_official_training_steps(tmp_path):
    fixture = FIXTURES / "vavl"
    io, ref = load_file(fixture / "io.safetensors"), json.loads((fixture / "config.json").read_text())
    n = ref["steps"]
    steps = [{k: io[f"{s}.{k}"] for k in ("x_aud", "x_vid", "y")} for s in range(n)]
    manifest, cache = write_corpus(tmp_path, steps, {"x_aud": io["eval.x_aud"], "x_vid": io["eval.x_vid"]})
    # the fixture's (scaled-down) shapes, read from its initial weights
    shape = load_official_vavl(fixture / "init", num_heads=ref["conformer_heads"], labels=CLASSES).config
    fields = ("proj_dim", "hidden_size", "head_hidden_size", "num_attention_heads", "num_audio_layers",
              "num_visual_layers", "num_shared_layers", "conv_kernel_size", "ff_expansion")
    out = tmp_path / "run"
    run_recipe("recipes/configs/crema_d/vavl_official.yaml",
               common(manifest, cache, out, n, 1) + [f"model.config.{k}={getattr(shape, k)}" for k in fields]
               + ["model.config.dropout=0", "model.config.head_dropout=0", f"model.init={fixture / 'init'}"])
    rows = logged_losses(out)
    assert len(rows) == n
    ours = [[r["train_loss_visual"], r["train_loss_audio"], r["train_loss"]] for r in rows]
    worst_loss = max(abs(a - b) for got, want in zip(ours, ref["losses_visual_acoustic_fusion"]) for a, b in zip(got, want))
    assert worst_loss <= TOL, (ours, ref["losses_visual_acoustic_fusion"])
    model = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        got = model(audio_features=io["eval.x_aud"], visual_features=io["eval.x_vid"])
    diffs = {name: (got[o] - io[f"eval.{name}"]).abs().max().item()
             for o, name in (("fused_logits", "pred_av"), ("audio_logits", "pred_a"), ("visual_logits", "pred_v"))}
    assert max(diffs.values()) <= TOL, diffs
    print(f"vavl: largest loss difference {worst_loss:.2e}, largest output difference {max(diffs.values()):.2e}")

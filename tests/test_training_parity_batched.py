"""The official training procedures at batch > 1 on clips of unequal length, reproduced by
recipes/finetune.py with `official_batching` on (as the official configs set it).

`tests/fixtures/training-parity-batched/` holds each official loop's weights before and after a few
optimiser steps on zero-padded batches of clips of unequal length (CPU, fp32, every dropout 0), the
clips UNPADDED with their lengths, the loss of every step, and the eval outputs of the final weights
on one padded batch and on each of its clips alone (README there: every padding effect). Here the
recipe's command line runs the official config on those clips (written into a feature cache in the
order the loop consumed them, padded by the recipe's own collate) from the official initial weights,
and must log the same losses and end at weights whose outputs are the fixture's on the padded batch
and on each clip alone. The overrides are those of tests/test_training_parity.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModel

import vavl  # noqa: F401  (registers the model classes with AutoModel)
from vavl.convert import load_official_vavl
from vavl.data.collate import pad_frames

from test_training_parity import CLASSES, TOL, common, logged_losses, run_recipe, write_corpus

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "training-parity-batched"


def clips(io: dict, prefix: str, n: int) -> dict:
    """The unpadded clips of one step (or of the eval set) as lists, with their one-hot labels."""
    return {"x_aud": [io[f"{prefix}.{i}.x_aud"] for i in range(n)], "x_vid": [io[f"{prefix}.{i}.x_vid"] for i in range(n)],
            "y": io[f"{prefix}.y"]}


def check_lengths(io: dict, prefix: str, n: int) -> None:
    """The stored clips have the lengths the fixture lists, and they differ (padding happens)."""
    for key, mod in (("len_aud", "x_aud"), ("len_vid", "x_vid")):
        got = [io[f"{prefix}.{i}.{mod}"].shape[0] for i in range(n)]
        assert got == io[f"{prefix}.{key}"].tolist() and len(set(got)) > 1


def outputs(model, eval_clips: dict) -> tuple[dict, dict]:
    """The model's eval outputs on the padded batch of the eval clips (the recipe's collate pads them)
    and on each clip alone (batch 1, rows stacked)."""
    n = len(eval_clips["x_aud"])
    with torch.no_grad():
        xa, ma = pad_frames(eval_clips["x_aud"])
        xv, mv = pad_frames(eval_clips["x_vid"])
        batch = model(audio_features=xa, audio_mask=ma, visual_features=xv, visual_mask=mv)
        alone = [model(audio_features=eval_clips["x_aud"][i][None], visual_features=eval_clips["x_vid"][i][None]) for i in range(n)]
    keys = ("logits", "fused_logits", "audio_logits", "visual_logits")
    return {k: getattr(batch, k) for k in keys}, {k: torch.cat([getattr(o, k) for o in alone]) for k in keys}


def compare(got: dict, io: dict, prefix: str, names: tuple[tuple[str, str], ...]) -> dict[str, float]:
    return {f"{prefix}.{name}": (got[ours] - io[f"{prefix}.{name}"]).abs().max().item() for ours, name in names}


def test_auxformer_official_recipe_reproduces_the_official_padded_batches(tmp_path):
    fixture = FIXTURES / "auxformer"
    io, ref = load_file(fixture / "io.safetensors"), json.loads((fixture / "config.json").read_text())
    n, b = ref["steps"], ref["batch"]
    for k in range(n):
        check_lengths(io, str(k), b)
    check_lengths(io, "eval", ref["eval_clips"])
    held_out = clips(io, "eval", ref["eval_clips"])
    manifest, cache = write_corpus(tmp_path, [clips(io, str(k), b) for k in range(n)], held_out)
    out = tmp_path / "run"
    dropouts = [f"model.config.{k}=0" for k in ("attn_dropout", "relu_dropout", "res_dropout", "embed_dropout", "out_dropout")]
    run_recipe("recipes/configs/crema_d/auxformer_official.yaml",
               common(manifest, cache, out, n, b) + dropouts
               + [f"model.config.num_heads={ref['num_heads']}", f"model.config.num_layers={ref['layers']}",
                  f"model.init={fixture / 'init_head.pt'}"])
    losses = [row["train_loss"] for row in logged_losses(out)]
    assert len(losses) == n
    worst_loss = max(abs(a - b) for a, b in zip(losses, ref["losses"]))
    assert worst_loss <= TOL, (losses, ref["losses"])
    model = AutoModel.from_pretrained(out).eval()
    assert model.config.official_batching
    batch, alone = outputs(model, held_out)
    names = (("fused_logits", "output"), ("audio_logits", "output_a_aux"), ("visual_logits", "output_v_aux"),
             ("logits", "prediction"))
    diffs = {**compare(batch, io, "eval.batch", names), **compare(alone, io, "eval.alone", names)}
    assert max(diffs.values()) <= TOL, diffs
    # the padded batch is another function than each clip alone: the test can tell them apart
    assert (batch["logits"] - io["eval.alone.prediction"]).abs().max() > 100 * TOL
    print(f"auxformer batched: largest loss difference {worst_loss:.2e}, largest output difference {max(diffs.values()):.2e}")


def test_vavl_official_recipe_reproduces_the_official_padded_batches(tmp_path):
    fixture = FIXTURES / "vavl"
    io, ref = load_file(fixture / "io.safetensors"), json.loads((fixture / "config.json").read_text())
    n, b = ref["steps"], ref["batch"]
    for k in range(n):
        check_lengths(io, str(k), b)
    check_lengths(io, "eval", ref["eval_clips"])
    held_out = clips(io, "eval", ref["eval_clips"])
    manifest, cache = write_corpus(tmp_path, [clips(io, str(k), b) for k in range(n)], held_out)
    shape = load_official_vavl(fixture / "init", num_heads=ref["conformer_heads"], labels=CLASSES).config
    fields = ("proj_dim", "hidden_size", "head_hidden_size", "num_attention_heads", "num_audio_layers",
              "num_visual_layers", "num_shared_layers", "conv_kernel_size", "ff_expansion")
    out = tmp_path / "run"
    # data.order=manifest: the fixture's clips are stored in the order the loop consumed them
    run_recipe("recipes/configs/crema_d/vavl_official.yaml",
               common(manifest, cache, out, n, b) + [f"model.config.{k}={getattr(shape, k)}" for k in fields]
               + ["model.config.dropout=0", "model.config.head_dropout=0", "data.order=manifest",
                  f"model.init={fixture / 'init'}"])
    rows = logged_losses(out)
    assert len(rows) == n
    ours = [[r["train_loss_visual"], r["train_loss_audio"], r["train_loss"]] for r in rows]
    worst_loss = max(abs(a - b) for got, want in zip(ours, ref["losses_visual_acoustic_fusion"]) for a, b in zip(got, want))
    assert worst_loss <= TOL, (ours, ref["losses_visual_acoustic_fusion"])
    model = AutoModel.from_pretrained(out).eval()
    assert model.config.official_batching
    batch, alone = outputs(model, held_out)
    names = (("fused_logits", "pred_av"), ("audio_logits", "pred_a"), ("visual_logits", "pred_v"))
    diffs = {**compare(batch, io, "eval.batch", names), **compare(alone, io, "eval.alone", names)}
    assert max(diffs.values()) <= TOL, diffs
    assert (batch["fused_logits"] - io["eval.alone.pred_av"]).abs().max() > 100 * TOL
    print(f"vavl batched: largest loss difference {worst_loss:.2e}, largest output difference {max(diffs.values()):.2e}")

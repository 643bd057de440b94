"""One clip's or window's scores as predict, predict_views and the stream report them: the stage clock,
probabilities from a model output, the label entry, the per-head scores, the checks and the notes."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import torch

from ..core.errors import VavlError


class StageClock:
    """Wall and process-CPU seconds per stage (CPU time / threads estimates the wall time of an idle machine)."""

    STAGES = ("decode", "faces", "audio_encoder", "visual_encoder", "fusion")

    def __init__(self):
        self._wall = dict.fromkeys(self.STAGES, 0.0)
        self._cpu = dict.fromkeys(self.STAGES, 0.0)

    @contextmanager
    def __call__(self, stage: str):
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._wall[stage] += time.perf_counter() - w
            self._cpu[stage] += time.process_time() - c

    def wall(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self._wall.items()}

    def cpu(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self._cpu.items()}


def _probabilities(model, logits: torch.Tensor) -> torch.Tensor:
    """Logits -> class probabilities (softmax over the last axis), or the values themselves for regression."""
    logits = logits.float()
    return logits if model.task == "regression" else logits.softmax(-1)


def _named(model, scores: torch.Tensor) -> dict[str, float]:
    return {n: round(float(s), 6) for n, s in zip(model.label_names, scores.tolist())}


def class_scores(model, out) -> torch.Tensor:
    """Model output -> (b, c): class probabilities, or attribute values for regression."""
    return _probabilities(model, out.logits)


def score_entry(model, scores: torch.Tensor, modalities: list[str]) -> dict[str, Any]:
    """(c,) scores -> label (argmax; None for regression), scores per label name, modalities used."""
    label = None if model.task == "regression" else model.label_names[int(scores.argmax())]
    return {"label": label, "scores": _named(model, scores), "modalities": modalities}


def check_finite(scores: torch.Tensor, path: str) -> torch.Tensor:
    """The scores, or a VavlError naming `path` when one is NaN or inf."""
    if not torch.isfinite(scores).all():
        raise VavlError(f"{path}: the model gave non-finite scores (NaN / inf); its weights may hold NaN or inf")
    return scores


def untrained_notes(model) -> list[str]:
    """Parts recorded as untrained: the fusion model built by create_model and never trained (its
    config's provenance says "random-init"), encoders built with pretrained_encoders=False."""
    notes = []
    provenance = getattr(model.emotion_config, "provenance", None) or {}
    if provenance.get("weights") == "random-init":
        notes.append("the fusion model (its classification heads) is untrained: these scores carry no meaning; "
                     "train it (recipes/finetune.py) or load a trained folder")
    for m in ("audio", "visual"):
        spec = getattr(model.config, f"{m}_encoder", None) or {}
        if spec.get("weights") == "random-init":
            notes.append(f"the {m} encoder has untrained (random) weights: these scores carry no meaning")
    return notes


def head_scores(model, out) -> dict[str, dict[str, float]]:
    """Probabilities (values for regression) of each head the window's modalities allow: fused
    (both), audio, visual."""
    present = {m: bool(getattr(out, f"{m}_present")[0]) for m in ("audio", "visual")}
    heads = {}
    for head, logits, ok in (("fused", out.fused_logits, present["audio"] and present["visual"]),
                             ("audio", out.audio_logits, present["audio"]),
                             ("visual", out.visual_logits, present["visual"])):
        if ok and logits is not None:
            heads[head] = _named(model, _probabilities(model, logits[0]))
    return heads

"""Model outputs. `loss` first; per-modality heads get their own fields."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

HEADS = ("fused", "audio", "visual", "heads_mean")  # index into `head_used`; -1 means no modality at all


@dataclass
class EmotionRecognitionOutput(ModelOutput):
    """Outputs of every vavl emotion model.

    logits: (b, c) the prediction for each sample: when both modalities are present, the fused
        head (config.prediction "fused") or the mean of the fused, audio and visual heads
        ("heads_mean"); else the auxiliary head of the modality that is.
    audio_logits / visual_logits: (b, c) the unimodal heads (meaningless where that modality
        is absent; see audio_present / visual_present).
    fused_logits: (b, c) the fusion head itself, whatever is present.
    head_used: (b,) long, index into HEADS of the head `logits` came from (-1: nothing present).
    *_embedding: (b, d) pooled representations (for embedding plots, correspondence, analysis).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    audio_logits: torch.Tensor | None = None
    visual_logits: torch.Tensor | None = None
    fused_logits: torch.Tensor | None = None
    audio_reconstruction: torch.Tensor | None = None
    visual_reconstruction: torch.Tensor | None = None
    audio_present: torch.Tensor | None = None
    visual_present: torch.Tensor | None = None
    head_used: torch.Tensor | None = None
    fused_embedding: torch.Tensor | None = None
    audio_embedding: torch.Tensor | None = None
    visual_embedding: torch.Tensor | None = None

    def heads_used(self) -> list[str]:
        """Per sample, the name of the head that produced `logits` ("none" if no input)."""
        return [HEADS[i] if i >= 0 else "none" for i in self.head_used.tolist()]

    def modalities_used(self) -> list[list[str]]:
        """Per sample, the modalities the prediction saw, e.g. [["audio", "visual"], ["audio"]]."""
        out = []
        for a, v in zip(self.audio_present.tolist(), self.visual_present.tolist()):
            out.append([m for m, p in (("audio", a), ("visual", v)) if p])
        return out

"""Late fusion: an audio model and a visual model trained side by side; fused = their average."""
from __future__ import annotations

import torch

from ..base import EmotionModel
from .branch import Branch, head
from .configuration_baselines import LateFusionConfig


class LateFusionForEmotionRecognition(EmotionModel):
    """fused_logits = mean of the two heads' logits, or log of the mean of their probabilities."""

    config_class = LateFusionConfig

    def __init__(self, config: LateFusionConfig):
        super().__init__(config)
        self.audio_branch = Branch(config.audio_dim, config)
        self.visual_branch = Branch(config.visual_dim, config)
        self.audio_head = head(config, config.hidden_size)
        self.visual_head = head(config, config.hidden_size)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        rep_a, rep_v = self.audio_branch(audio, audio_mask), self.visual_branch(visual, visual_mask)
        a, v = self.audio_head(rep_a), self.visual_head(rep_v)
        if self.config.fuse == "probabilities":
            fused = torch.logsumexp(torch.stack([a.log_softmax(-1), v.log_softmax(-1)]), dim=0) - torch.log(torch.tensor(2.0))
        else:
            fused = (a + v) / 2
        return {"fused_logits": fused, "audio_logits": a, "visual_logits": v,
                "fused_embedding": torch.cat([rep_a, rep_v], dim=-1), "audio_embedding": rep_a, "visual_embedding": rep_v}

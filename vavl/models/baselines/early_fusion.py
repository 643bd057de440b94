"""Early fusion: pooled audio and visual branches concatenated -> one MLP, plus unimodal heads."""
from __future__ import annotations

import torch
from torch import nn

from ..base import EmotionModel
from .branch import Branch, head
from .configuration_baselines import EarlyFusionConfig


class EarlyFusionForEmotionRecognition(EmotionModel):
    """A missing modality is replaced in the concatenation by a learned "absent" embedding (or
    zeros); the unimodal heads give single-modality samples a head that saw only what they have.
    The fusion head is also trained on single-modality samples (weight aux_loss_weight), so the
    stand-in is learned and `fused_logits` stays meaningful when a modality is dropped."""

    config_class = EarlyFusionConfig

    def __init__(self, config: EarlyFusionConfig):
        super().__init__(config)
        d = config.hidden_size
        self.audio_branch = Branch(config.audio_dim, config)
        self.visual_branch = Branch(config.visual_dim, config)
        self.absent = nn.Parameter(torch.zeros(2, d), requires_grad=config.absent == "learned")  # [audio, visual]
        self.fusion_head = head(config, 2 * d)
        self.audio_head = head(config, d)
        self.visual_head = head(config, d)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        rep_a, rep_v = self.audio_branch(audio, audio_mask), self.visual_branch(visual, visual_mask)   # (b, d)
        fill_a = torch.where(audio_mask.any(1, keepdim=True), rep_a, self.absent[0].to(rep_a.dtype))
        fill_v = torch.where(visual_mask.any(1, keepdim=True), rep_v, self.absent[1].to(rep_v.dtype))
        fused = torch.cat([fill_a, fill_v], dim=-1)
        return {"fused_logits": self.fusion_head(fused), "audio_logits": self.audio_head(rep_a),
                "visual_logits": self.visual_head(rep_v), "fused_embedding": fused,
                "audio_embedding": rep_a, "visual_embedding": rep_v}

    def compute_loss(self, out, labels, audio, audio_mask, visual, visual_mask, weights=None):
        loss = super().compute_loss(out, labels, audio, audio_mask, visual, visual_mask, weights)
        single = out.audio_present ^ out.visual_present                                   # (b,)
        if weights is None and self.config.aux_loss_weight and single.any():   # the training loss only
            loss = loss + self.config.aux_loss_weight * self.head_loss(out.fused_logits, labels, single)
        return loss

"""MulT-style baseline: audio->visual and visual->audio cross-modal transformers, each followed by
self-attention, last real frames concatenated, one residual fused head. No auxiliary networks.

A missing modality: the fused head answers with that stream absent (cross-attention to nothing
adds nothing, the absent stream's summary is zeros). `audio_logits` / `visual_logits` are exactly
that answer (the fused head with the other modality masked out) for every sample, and `head_used`
reports "fused" for every sample, since there is no other head.
"""
from __future__ import annotations

import torch

from ..auxformer.modeling_auxformer import CrossModalInit, CrossModalStreams, input_projection, projected_inputs
from ..base import EmotionModel
from ...nn.attention import AttentionMask
from ...nn.layers import ResidualHead
from .configuration_mult import MulTConfig


class MulTForEmotionRecognition(CrossModalInit, EmotionModel):
    config_class = MulTConfig
    base_model_prefix = "mult"

    def __init__(self, config: MulTConfig):
        super().__init__(config)
        d = config.hidden_size
        self.audio_proj = input_projection(config.audio_dim, d)
        self.visual_proj = input_projection(config.visual_dim, d)
        self.fusion = CrossModalStreams(config, scalar=False)
        self.fusion_head = ResidualHead(2 * d, [2 * d], config.num_labels, config.out_dropout)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        a, v, pa, pv, masks = projected_inputs(self, audio, audio_mask, visual, visual_mask)
        rep_a = self.fusion.audio(a, audio_mask, v, pa, pv, masks)  # (b, d)
        rep_v = self.fusion.visual(v, visual_mask, a, pv, pa, masks)
        fused_logits, fused = self.fusion_head(torch.cat([rep_a, rep_v], -1))
        # each stream with the other modality masked out: its cross-attention sees no key
        alone = {**masks, "av": AttentionMask(audio_mask, torch.zeros_like(visual_mask)),
                 "va": AttentionMask(visual_mask, torch.zeros_like(audio_mask))}
        rep_a_alone = self.fusion.audio(a, audio_mask, v, pa, pv, alone)
        rep_v_alone = self.fusion.visual(v, visual_mask, a, pv, pa, alone)
        audio_logits, audio_emb = self.fusion_head(torch.cat([rep_a_alone, torch.zeros_like(rep_v_alone)], -1))
        visual_logits, visual_emb = self.fusion_head(torch.cat([torch.zeros_like(rep_a_alone), rep_v_alone], -1))
        return {"fused_logits": fused_logits, "audio_logits": audio_logits, "visual_logits": visual_logits,
                "fused_embedding": fused, "audio_embedding": audio_emb, "visual_embedding": visual_emb}

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.head_used = torch.where(out.head_used >= 0, 0, -1)  # every answer comes from the fused head
        return out

"""AuxFormer: audio->visual and visual->audio cross-modal transformers feed a fused head; two
auxiliary unimodal networks (one encoder applied `aux_repeats` times each) feed a shared
auxiliary head. Batch-first; masks decide positions, attention and pooling, so padding and the
other clips of a batch never change a clip's outputs (unless config.official_batching asks for the
official padded-batch function).

Axis letters: b batch, ta / tv audio / visual frames, d hidden_size.
"""
from __future__ import annotations

import torch
from torch import nn

from ...nn.attention import AttentionMask
from ...nn.layers import CrossModalEncoder, ResidualHead, mask_positions, masked_last, official_init, xavier_init
from ..base import EmotionModel
from .configuration_auxformer import AuxFormerConfig


def input_projection(in_dim: int, dim: int) -> nn.Module:
    """Bias-free per-frame projection (the official 1x1 Conv1d); identity when widths agree."""
    return nn.Identity() if in_dim == dim else nn.Linear(in_dim, dim, bias=False)


def encoder(config, scalar: bool = False, cross: bool = False) -> CrossModalEncoder:
    return CrossModalEncoder(config.hidden_size, config.num_heads, config.num_layers,
                             attn_dropout=0.0 if cross else config.attn_dropout, relu_dropout=config.relu_dropout,
                             res_dropout=config.res_dropout, embed_dropout=config.embed_dropout, scalar=scalar,
                             config=config)


def positions(x: torch.Tensor, mask: torch.Tensor, official: bool) -> torch.Tensor:
    """(b, t) position of each frame for the sinusoidal embedding (0 = none)."""
    if not official:
        return mask_positions(mask)
    # fairseq rule of the official code: frame t gets t + 1 where its feature 0 is non-zero
    t = torch.arange(1, x.shape[1] + 1, device=x.device)
    return torch.where((x[..., 0] != 0) & mask, t, torch.zeros_like(t))


def pool_last(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(b, t, d) -> (b, d): last real frame; zeros for a sample without the modality."""
    return masked_last(h, mask) * mask.any(1, keepdim=True).to(h.dtype)


class CrossModalStreams(nn.Module):
    """The fusion half shared by AuxFormer and MulT: audio attends to visual (then self-attention)
    and visual attends to audio (then self-attention); each stream is summarised by its last real
    frame and the two summaries are concatenated (b, 2d)."""

    def __init__(self, config, scalar: bool):
        super().__init__()
        self.a_with_v, self.v_with_a = encoder(config, cross=True), encoder(config, cross=True)
        self.a_mem, self.v_mem = encoder(config, scalar=scalar), encoder(config, scalar=scalar)

    def audio(self, a, a_mask, v, pa, pv, masks) -> torch.Tensor:
        """(b, ta, d) audio attending to (b, tv, d) visual -> (b, d) last real frame."""
        return pool_last(self.a_mem(self.a_with_v(a, masks["av"], pa, v, pv), masks["aa"]), a_mask)

    def visual(self, v, v_mask, a, pv, pa, masks) -> torch.Tensor:
        return pool_last(self.v_mem(self.v_with_a(v, masks["va"], pv, a, pa), masks["vv"]), v_mask)

    def forward(self, a, a_mask, v, v_mask, pa, pv, masks) -> torch.Tensor:
        return torch.cat([self.audio(a, a_mask, v, pa, pv, masks), self.visual(v, v_mask, a, pv, pa, masks)], dim=-1)


def projected_inputs(model, audio, audio_mask, visual, visual_mask):
    """Project to hidden_size; positions; the four attention masks (made once per forward, each form
    the layers ask for computed once)."""
    cfg = model.config
    a, v = model.audio_proj(audio), model.visual_proj(visual)
    official = cfg.official_positions or getattr(cfg, "official_batching", False)
    pa = positions(a, audio_mask, official)
    pv = positions(v, visual_mask, official)
    c = cfg.causal_mask
    pairs = {"aa": (audio_mask, audio_mask), "vv": (visual_mask, visual_mask),
             "av": (audio_mask, visual_mask), "va": (visual_mask, audio_mask)}  # (queries, keys)
    masks = {k: AttentionMask(q, kv, c) for k, (q, kv) in pairs.items()}
    return a, v, pa, pv, masks


class CrossModalInit:
    """Weight initialisation of the MulT family (AuxFormer, MulT), by config.init_scheme: vavl's
    Xavier scheme on every layer, or the official code's (PyTorch's defaults, then official_init)."""

    def _init_weights(self, module):
        if self.config.init_scheme != "official":   # official: PyTorch's defaults, then official_init
            xavier_init(module)

    def post_init(self):
        super().post_init()
        if self.config.init_scheme == "official":
            official_init(self)


class AuxFormerForEmotionRecognition(CrossModalInit, EmotionModel):
    """AuxFormer with fused, audio and visual heads (see module docstring)."""

    config_class = AuxFormerConfig
    base_model_prefix = "auxformer"

    def __init__(self, config: AuxFormerConfig):
        super().__init__(config)
        d = config.hidden_size
        self.audio_proj = input_projection(config.audio_dim, d)
        self.visual_proj = input_projection(config.visual_dim, d)
        self.fusion = CrossModalStreams(config, scalar=True)
        self.a_aux, self.v_aux = encoder(config), encoder(config)
        self.fusion_head = ResidualHead(2 * d, [2 * d], config.num_labels, config.out_dropout)
        self.aux_head = ResidualHead(d, list(config.aux_hidden_sizes), config.num_labels, config.out_dropout)  # shared by both modalities
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        if self.config.official_batching:   # the official padded-batch function: padding counts as frames
            audio_mask, visual_mask = torch.ones_like(audio_mask), torch.ones_like(visual_mask)
        a, v, pa, pv, masks = projected_inputs(self, audio, audio_mask, visual, visual_mask)
        fused_logits, fused = self.fusion_head(self.fusion(a, audio_mask, v, visual_mask, pa, pv, masks))
        h_a, h_v = a, v
        for _ in range(self.config.aux_repeats):
            h_a, h_v = self.a_aux(h_a, masks["aa"]), self.v_aux(h_v, masks["vv"])
        audio_logits, audio_emb = self.aux_head(pool_last(h_a, audio_mask))
        visual_logits, visual_emb = self.aux_head(pool_last(h_v, visual_mask))
        return {"fused_logits": fused_logits, "audio_logits": audio_logits, "visual_logits": visual_logits,
                "fused_embedding": fused, "audio_embedding": audio_emb, "visual_embedding": visual_emb}

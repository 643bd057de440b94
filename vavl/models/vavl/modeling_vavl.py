"""VAVL: modality Conformers -> shared Conformer -> pooled representations -> heads.

Axis letters: b batch, t time, d width. Masks (b, t) bool, True on real frames.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from ...nn.layers import masked_mean
from ..base import EmotionModel
from .configuration_vavl import VAVLConfig
from .conformer import ConformerEncoder, MaskedBatchNorm1d, official_init


class MLPHead(nn.Module):
    """Linear -> ReLU -> Dropout -> Linear -> Linear (the official VAVL head; no activation
    between the last two layers)."""

    def __init__(self, in_dim: int, hidden: int, bottleneck: int, out_dim: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, bottleneck)
        self.out = nn.Linear(bottleneck, out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.out(self.fc2(self.dropout(F.relu(self.fc1(x)))))


class VAVLForEmotionRecognition(EmotionModel):
    """VAVL with the base class's missing-modality routing and losses (see VAVLConfig)."""

    config_class = VAVLConfig

    def __init__(self, config: VAVLConfig):
        super().__init__(config)
        c, d = config, config.hidden_size

        def conformer(in_dim, layers):
            return ConformerEncoder(in_dim, d, layers, c.num_attention_heads, c.conv_kernel_size, c.ff_expansion, c.dropout, c)

        def head(in_dim, out_dim):
            return MLPHead(in_dim, d, c.head_hidden_size, out_dim, c.head_dropout)

        self.audio_proj = nn.Linear(c.audio_dim, c.proj_dim, bias=False)
        self.visual_proj = nn.Linear(c.visual_dim, c.proj_dim, bias=False)
        self.audio_encoder = conformer(c.proj_dim, c.num_audio_layers)
        self.visual_encoder = conformer(c.proj_dim, c.num_visual_layers)
        self.shared_encoder = conformer(d, c.num_shared_layers)
        self.shared_norm = nn.LayerNorm(d)
        self.audio_head = head(d, c.num_labels)
        self.visual_head = head(d, c.num_labels)
        self.fusion_head = head(2 * d, c.num_labels)
        self.audio_reconstruction = head(d, c.audio_dim)
        self.visual_reconstruction = head(d, c.visual_dim)
        self.post_init()

    def _init_weights(self, module):
        if self.config.init_scheme == "official":   # PyTorch's defaults, then official_init (post_init)
            return
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, MaskedBatchNorm1d):   # transformers' guarded init: a loaded statistic stays loaded
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    def post_init(self):
        super().post_init()
        if self.config.init_scheme == "official":
            official_init(self)

    def branches(self) -> dict[str, list[nn.Module]]:
        """The parameter groups of VAVL's published schedule (one optimiser each): the acoustic and
        visual branches (projection, Conformer, head, reconstruction), the shared Conformer (updated
        with both branches) and the fusion head."""
        return {"audio": [self.audio_proj, self.audio_encoder, self.audio_head, self.audio_reconstruction],
                "visual": [self.visual_proj, self.visual_encoder, self.visual_head, self.visual_reconstruction],
                "shared": [self.shared_encoder, self.shared_norm],
                "fusion": [self.fusion_head]}

    def represent(self, x: torch.Tensor, mask: torch.Tensor, proj: nn.Linear, encoder: ConformerEncoder) -> torch.Tensor:
        """(b, t, in) -> (b, d): modality Conformer, shared Conformer (+ residual), LayerNorm, masked mean.
        official_batching: the official padded-batch function, mean over every padded step; a modality
        absent from the whole batch is not run (the official branch updates touch one modality)."""
        if self.config.official_batching:
            if not mask.any():
                return x.new_zeros(x.shape[0], self.config.hidden_size)
            h = encoder(proj(x), mask, official_batching=True)
            return self.shared_norm(self.shared_encoder(h, mask, official_batching=True) + h).mean(1)
        framewise = self.config.framewise
        h = encoder(proj(x), mask, framewise)                         # (b, t, d)
        h = self.shared_norm(self.shared_encoder(h, mask, framewise) + h)
        return masked_mean(h, mask)

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        rep_a = self.represent(audio, audio_mask, self.audio_proj, self.audio_encoder)
        rep_v = self.represent(visual, visual_mask, self.visual_proj, self.visual_encoder)
        return {
            "fused_logits": self.fusion_head(torch.cat([rep_a, rep_v], dim=-1)),
            "audio_logits": self.audio_head(rep_a),
            "visual_logits": self.visual_head(rep_v),
            "audio_reconstruction": self.audio_reconstruction(rep_a),      # (b, audio_dim), vs pooled input
            "visual_reconstruction": self.visual_reconstruction(rep_v),
            "fused_embedding": torch.cat([rep_a, rep_v], dim=-1),
            "audio_embedding": rep_a,
            "visual_embedding": rep_v,
        }

    def pooled_input(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction target: the mean over real frames, or with official_batching the official
        `torch.mean(x, dim=1)` of the padded batch (padding included, divided by the padded length)."""
        if self.config.official_batching:
            return x.mean(1), mask.any(1)
        return super().pooled_input(x, mask)

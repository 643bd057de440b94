"""One modality branch: projection -> optional Transformer over time -> masked mean -> MLP head.

Axis letters: b batch, t time, d width. Masks (b, t) bool, True on real frames.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.attention import AttentionMask, attention, implementation_of
from ...nn.layers import masked_mean


class SelfAttention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameters (in_proj_weight,
    in_proj_bias, out_proj) and initialisation, through `vavl.nn.attention.attention`."""

    def __init__(self, dim: int, heads: int, dropout: float, config):
        super().__init__()
        self.heads, self.dropout, self.config = heads, dropout, config
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(x.shape[-1], -1)
        out = attention(q, k, v, self.heads, mask, dropout=self.dropout if self.training else 0.0,
                        implementation=implementation_of(self.config))
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    """Pre-norm Transformer layer, GELU feed-forward of width 2d: nn.TransformerEncoderLayer(d,
    heads, 2d, dropout, "gelu", batch_first=True, norm_first=True), parameter names included."""

    def __init__(self, dim: int, config):
        super().__init__()
        self.self_attn = SelfAttention(dim, config.num_attention_heads, config.dropout, config)
        self.linear1, self.linear2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.p = config.dropout

    def forward(self, x: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        x = x + F.dropout(self.self_attn(self.norm1(x), mask), self.p, self.training)
        h = F.dropout(F.gelu(self.linear1(self.norm2(x))), self.p, self.training)
        return x + F.dropout(self.linear2(h), self.p, self.training)


class Encoder(nn.Module):
    """`num_layers` EncoderLayers (keys `layers.N.*`, as in nn.TransformerEncoder)."""

    def __init__(self, dim: int, config):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, config) for _ in range(config.num_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attend = AttentionMask(mask, mask)  # padded frames hidden as keys; a sample with none gets zeros
        for layer in self.layers:
            x = layer(x, attend)
        return x


class Branch(nn.Module):
    """(b, t, in) + mask -> pooled (b, d). Padded frames are masked out of attention and pooling."""

    def __init__(self, in_dim: int, config):
        super().__init__()
        d = config.hidden_size
        self.proj = nn.Sequential(nn.Linear(in_dim, d), nn.GELU(), nn.Dropout(config.dropout))
        self.encoder = Encoder(d, config) if config.num_layers else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        if self.encoder is not None:
            h = self.encoder(h, mask)
        return masked_mean(h, mask)


def head(config, in_dim: int) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear to num_labels."""
    d = config.hidden_size
    return nn.Sequential(nn.Linear(in_dim, d), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(d, config.num_labels))

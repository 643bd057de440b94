"""One modality branch: projection -> optional Transformer over time -> masked mean -> MLP head.

Axis letters: b batch, t time, d width. Masks (b, t) bool, True on real frames.
"""
from __future__ import annotations

import torch
from torch import nn

from ...layers import masked_mean


class Branch(nn.Module):
    """(b, t, in) + mask -> pooled (b, d). Padded frames are masked out of attention and pooling."""

    def __init__(self, in_dim: int, config):
        super().__init__()
        d = config.hidden_size
        self.proj = nn.Sequential(nn.Linear(in_dim, d), nn.GELU(), nn.Dropout(config.dropout))
        layer = nn.TransformerEncoderLayer(d, config.num_attention_heads, 2 * d, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False) if config.num_layers else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        if self.encoder is not None:
            # a sample with no real frame lets its first (zero) frame attend, so softmax stays finite
            attend = mask.clone()
            attend[:, 0] |= ~mask.any(1)
            h = self.encoder(h, src_key_padding_mask=~attend)
        return masked_mean(h, mask)


def head(config, in_dim: int) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear to num_labels."""
    d = config.hidden_size
    return nn.Sequential(nn.Linear(in_dim, d), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(d, config.num_labels))

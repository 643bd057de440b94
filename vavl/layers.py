"""Building blocks shared by the fusion models.

Axis letters: b batch, t time (ta audio, tv visual), d width, h heads.
Masks are bool (b, t), True where a frame is real.
"""
from __future__ import annotations

import math

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(b, t, d), (b, t) -> (b, d): mean over real frames; zeros where a sample has none."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_last(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(b, t, d), (b, t) -> (b, d): the last real frame of each sample (frame 0 if none)."""
    t = torch.arange(x.shape[1], device=x.device)
    last = torch.where(mask, t, torch.zeros_like(t)).amax(1)
    return x[torch.arange(x.shape[0], device=x.device), last]


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim) sin/cos table, first half sin, second half cos (fairseq/tensor2tensor order)."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1) * freq.unsqueeze(0)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    return table

"""Conformer encoder (Gulati et al. 2020), batch-first and mask-aware.

Axis letters: b batch, t time, d width, h heads, e head width, r relative distance.
Masks are bool (b, t), True where a frame is real. Padded frames never reach real ones:
attention masks padded keys, the depthwise convolution sees padded frames as zeros (as at the
clip's edges), and batch normalisation uses statistics of real frames only, so in eval mode a
clip's output does not depend on its batch companions or on how much it was padded.

Parameter layout follows the widely used `conformer` package (macaron feed-forward halves,
relative-position self-attention with u/v biases, GLU + depthwise conv + BatchNorm module), so
official VAVL checkpoints map onto it one tensor for one tensor (see vavl/convert/vavl.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ...nn.attention import AttentionMask, attention, implementation_of


def relative_table(length: int, dim: int, device=None) -> torch.Tensor:
    """(2*length - 1, dim) interleaved sin/cos embedding of distances length-1 ... -(length-1)."""
    dist = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(2 * length - 1, dim, device=device)
    table[:, 0::2] = torch.sin(dist * freq)
    table[:, 1::2] = torch.cos(dist * freq)[:, : dim // 2]
    return table


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over (b, d, t) whose training statistics come from real frames only.

    Eval mode uses the running statistics (a per-channel affine map), as nn.BatchNorm1d does."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.training or not mask.any():  # a batch with no real frame teaches nothing
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        m = mask.unsqueeze(1).to(x.dtype)                                   # (b, 1, t)
        n = m.sum()
        mean = (x * m).sum((0, 2)) / n                                      # (d,)
        var = (((x - mean[:, None]) ** 2) * m).sum((0, 2)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
                unbiased = var * n / (n - 1).clamp(min=1.0)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), momentum)
        y = (x - mean[:, None]) / torch.sqrt(var[:, None] + self.eps)
        return y * self.weight[:, None] + self.bias[:, None]


class FeedForward(nn.Module):
    """LayerNorm -> Linear(d, 4d) -> Swish -> Dropout -> Linear(4d, d) -> Dropout."""

    def __init__(self, dim: int, expansion: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * expansion)
        self.fc2 = nn.Linear(dim * expansion, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.fc2(self.dropout(F.silu(self.fc1(self.norm(x))))))


class RelativeSelfAttention(nn.Module):
    """Self-attention with Transformer-XL relative positions: score(i, j) =
    ((q_i + u)·k_j + (q_i + v)·P(i - j)) / √e, P a projected sinusoid of the distance. The position
    term is an additive per-head bias of `vavl.nn.attention.attention`, which runs the implementation
    of `config` (the model's attn_implementation)."""

    def __init__(self, dim: int, heads: int, dropout: float, config=None):
        super().__init__()
        self.heads, self.config = heads, config
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.pos = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.u_bias = nn.Parameter(torch.zeros(heads, dim // heads))
        self.v_bias = nn.Parameter(torch.zeros(heads, dim // heads))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        """x (b, t, d); mask: padded keys hidden (a sample with no real frame gets zeros)."""
        b, t, d = x.shape
        x = self.norm(x)
        q, k, v = self.query(x), self.key(x), self.value(x)                           # (b, t, d)
        p = rearrange(self.pos(relative_table(t, d, x.device).to(x.dtype)), "r (h e) -> h r e", h=self.heads)
        q_v = rearrange(q, "b t (h e) -> b h t e", h=self.heads) + self.v_bias[:, None]
        by_distance = torch.einsum("bhie,hre->bhir", q_v, p)                          # (b, h, t, 2t-1)
        i = torch.arange(t, device=x.device)
        index = (t - 1) - (i[:, None] - i[None, :])                                 # distance i-j -> row of p
        position = by_distance.gather(-1, index.expand(b, self.heads, t, t)) / math.sqrt(d // self.heads)
        out = attention(q + self.u_bias.flatten(), k, v, self.heads, mask, position,
                        dropout=self.dropout.p if self.training else 0.0, implementation=implementation_of(self.config))
        return self.dropout(self.out(out))


class ConvModule(nn.Module):
    """LayerNorm -> pointwise conv (2d) -> GLU -> depthwise conv -> BatchNorm -> Swish -> pointwise conv."""

    def __init__(self, dim: int, kernel_size: int, expansion: int, dropout: float):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"conv_kernel_size={kernel_size} must be odd ('same' padding)")
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, dim * expansion, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=False)
        self.batch_norm = MaskedBatchNorm1d(dim)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(1).to(x.dtype)                                  # (b, 1, t)
        y = F.glu(self.pointwise_in(rearrange(self.norm(x), "b t d -> b d t")), dim=1)
        y = self.depthwise(y * keep)                                          # padded frames enter as zeros
        y = F.silu(self.batch_norm(y, mask))
        return self.dropout(rearrange(self.pointwise_out(y), "b d t -> b t d"))


class ConformerBlock(nn.Module):
    """x + ½FF(x) -> + MHSA -> + Conv -> + ½FF -> LayerNorm."""

    def __init__(self, dim: int, heads: int, kernel_size: int, ff_expansion: int, dropout: float, config=None):
        super().__init__()
        self.ff1 = FeedForward(dim, ff_expansion, dropout)
        self.attention = RelativeSelfAttention(dim, heads, dropout, config)
        self.conv = ConvModule(dim, kernel_size, 2, dropout)
        self.ff2 = FeedForward(dim, ff_expansion, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, attention_mask: AttentionMask) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attention(x, attention_mask)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class ConformerEncoder(nn.Module):
    """Linear input projection + dropout, then `layers` Conformer blocks. (b, t, in) -> (b, t, d).

    framewise=True runs every real frame as its own length-1 sequence (no temporal context),
    which is what the official VAVL code computes at batch size 1. `config`: the model's, for its
    attn_implementation."""

    def __init__(self, in_dim: int, dim: int, layers: int, heads: int, kernel_size: int, ff_expansion: int, dropout: float,
                 config=None):
        super().__init__()
        self.input_proj = nn.Linear(in_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(ConformerBlock(dim, heads, kernel_size, ff_expansion, dropout, config) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, framewise: bool = False) -> torch.Tensor:
        b, t, _ = x.shape
        if framewise:
            x, mask = rearrange(x, "b t d -> (b t) 1 d"), rearrange(mask, "b t -> (b t) 1")
        x = self.dropout(self.input_proj(x))
        attend = AttentionMask(mask, mask)  # made once, shared by the blocks
        for layer in self.layers:
            x = layer(x, mask, attend)
        x = x * mask.unsqueeze(-1).to(x.dtype)
        return rearrange(x, "(b t) 1 d -> b t d", b=b, t=t) if framewise else x

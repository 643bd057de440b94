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


def sinusoid_table(values: torch.Tensor, dim: int) -> torch.Tensor:
    """(n,) float positions or distances -> (n, dim) interleaved sin/cos embedding."""
    freq = torch.exp(torch.arange(0, dim, 2, device=values.device, dtype=torch.float32) * -(math.log(10000.0) / dim))
    angle = values.float().unsqueeze(1) * freq
    table = torch.zeros(values.shape[0], dim, device=values.device)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)[:, : dim // 2]
    return table


def relative_table(length: int, dim: int, device=None) -> torch.Tensor:
    """(2*length - 1, dim) interleaved sin/cos embedding of distances length-1 ... -(length-1)."""
    return sinusoid_table(torch.arange(length - 1, -length, -1, device=device), dim)


def official_shift(score: torch.Tensor) -> torch.Tensor:
    """(..., l, l) -> (..., l, l): the Transformer-XL shift as the official VAVL Conformer applies it
    to scores against ABSOLUTE positions 0..l-1 (conformer/attention.py `_relative_shift`): prepend a
    zero column, read the (l, l + 1) values as (l + 1, l), drop the first row."""
    *lead, l1, l2 = score.shape
    padded = torch.cat([score.new_zeros(*lead, l1, 1), score], dim=-1).view(*lead, l2 + 1, l1)
    return padded[..., 1:, :].reshape(*lead, l1, l2)


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

    def forward(self, x: torch.Tensor, mask: AttentionMask, official: bool = False) -> torch.Tensor:
        """x (b, t, d); mask: padded keys hidden (a sample with no real frame gets zeros).
        official: the official Conformer's scores instead (see `official_scores`); no mask."""
        b, t, d = x.shape
        x = self.norm(x)
        q, k, v = self.query(x), self.key(x), self.value(x)                           # (b, t, d)
        if official:
            q_scaled, position = self.official_scores(q)
            out = attention(q_scaled, k, v, self.heads, None, position, dropout=self.dropout.p if self.training else 0.0,
                            implementation=implementation_of(self.config))
            return self.dropout(self.out(out))
        p = rearrange(self.pos(relative_table(t, d, x.device).to(x.dtype)), "r (h e) -> h r e", h=self.heads)
        q_v = rearrange(q, "b t (h e) -> b h t e", h=self.heads) + self.v_bias[:, None]
        by_distance = torch.einsum("bhie,hre->bhir", q_v, p)                          # (b, h, t, 2t-1)
        i = torch.arange(t, device=x.device)
        index = (t - 1) - (i[:, None] - i[None, :])                                 # distance i-j -> row of p
        position = by_distance.gather(-1, index.expand(b, self.heads, t, t)) / math.sqrt(d // self.heads)
        out = attention(q + self.u_bias.flatten(), k, v, self.heads, mask, position,
                        dropout=self.dropout.p if self.training else 0.0, implementation=implementation_of(self.config))
        return self.dropout(self.out(out))

    def official_scores(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The official VAVL Conformer's score ((q + u)·k + shift((q + v)·P_j)) / √d, P_j the projected
        sinusoid of the ABSOLUTE position j = 0..t-1 and √d the model width (not the head width), as
        (q + u)·√(e/d), which `attention` scales by 1/√e, and the additive position term (b, h, t, t)."""
        b, t, d = q.shape
        e = d // self.heads
        p = rearrange(self.pos(sinusoid_table(torch.arange(t, device=q.device), d).to(q.dtype)), "t (h e) -> h t e", h=self.heads)
        q_v = rearrange(q, "b t (h e) -> b h t e", h=self.heads) + self.v_bias[:, None]
        position = official_shift(torch.einsum("bhie,hje->bhij", q_v, p)) / math.sqrt(d)
        return (q + self.u_bias.flatten()) * math.sqrt(e / d), position


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor, attention_mask: AttentionMask, official: bool = False) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attention(x, attention_mask, official)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


@torch.no_grad()
def official_init(model: nn.Module) -> None:
    """The official VAVL initialisation, on a model built with PyTorch's default initialisation (which
    the official code keeps for its heads, projections, convolutions and norms): the Conformer's own
    `Linear` wrapper (Xavier-uniform weight, zero bias; VAVL conformer/modules.py:36-46) for the input
    projection, the attention's query / key / value / position / output projections and the
    feed-forward layers, and Xavier-uniform relative-position biases u / v (conformer/attention.py:65-68)."""
    def xavier(linear: nn.Linear) -> None:
        nn.init.xavier_uniform_(linear.weight)
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)

    for m in model.modules():
        if isinstance(m, ConformerEncoder):
            xavier(m.input_proj)
        elif isinstance(m, RelativeSelfAttention):
            for linear in (m.query, m.key, m.value, m.pos, m.out):
                xavier(linear)
            nn.init.xavier_uniform_(m.u_bias)
            nn.init.xavier_uniform_(m.v_bias)
        elif isinstance(m, FeedForward):
            xavier(m.fc1)
            xavier(m.fc2)


class ConformerEncoder(nn.Module):
    """Linear input projection + dropout, then `layers` Conformer blocks. (b, t, in) -> (b, t, d).

    framewise=True runs every real frame as its own length-1 sequence (no temporal context),
    which is what the official VAVL code computes at batch size 1. official_batching=True computes
    the official function of the padded batch: the official code hands (t, b, d) to its batch-first
    Conformer, so time is the Conformer's batch and the clips its sequence; attention (the official
    scores, no mask), the depthwise convolution (zero 'same' padding at the first and last clip) and
    batch normalisation (statistics over every padded step of every clip) run across the clips.
    `config`: the model's, for its attn_implementation."""

    def __init__(self, in_dim: int, dim: int, layers: int, heads: int, kernel_size: int, ff_expansion: int, dropout: float,
                 config=None):
        super().__init__()
        self.input_proj = nn.Linear(in_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(ConformerBlock(dim, heads, kernel_size, ff_expansion, dropout, config) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, framewise: bool = False,
                official_batching: bool = False) -> torch.Tensor:
        b, t, _ = x.shape
        if official_batching:   # the clips are the sequence, every position real
            x = self.dropout(self.input_proj(rearrange(x, "b t d -> t b d")))
            every = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            for layer in self.layers:
                x = layer(x, every, None, official=True)
            return rearrange(x, "t b d -> b t d")
        if framewise:
            x, mask = rearrange(x, "b t d -> (b t) 1 d"), rearrange(mask, "b t -> (b t) 1")
        x = self.dropout(self.input_proj(x))
        attend = AttentionMask(mask, mask)  # made once, shared by the blocks
        for layer in self.layers:
            x = layer(x, mask, attend)
        x = x * mask.unsqueeze(-1).to(x.dtype)
        return rearrange(x, "(b t) 1 d -> b t d", b=b, t=t) if framewise else x

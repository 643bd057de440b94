"""Building blocks shared by the fusion models: masked pooling, positions, the MulT / AuxFormer
cross-modal transformer, residual heads. Attention itself lives in vavl/nn/attention.py.

Axis letters: b batch, t time (ta audio, tv visual), d width, h heads.
Masks are bool (b, t), True where a frame is real.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .attention import AttentionMask, MultiHeadAttention


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(b, t, d), (b, t) -> (b, d): mean over real frames; zeros where a sample has none."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_last(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(b, t, d), (b, t) -> (b, d): the last real frame of each sample (frame 0 if none)."""
    t = torch.arange(x.shape[1], device=x.device)
    last = torch.where(mask, t, torch.zeros_like(t)).amax(1)
    return x[torch.arange(x.shape[0], device=x.device), last]


# ---- cross-modal transformer (MulT / AuxFormer family) ----------------------------------------

def sinusoidal_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(b, t) long positions -> (b, t, dim) sin/cos rows (first half sin, second half cos, the
    fairseq/tensor2tensor order); position 0 (padding) -> zeros."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32, device=positions.device) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = positions.unsqueeze(-1).float() * freq  # (b, t, half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb.masked_fill(positions.unsqueeze(-1) == 0, 0.0)


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    """(b, t) bool -> (b, t) long: 1, 2, ... counting real frames only, 0 on padding. Dropping a
    frame (mask False) is then the same as cutting it out of the sequence."""
    return mask.long().cumsum(1) * mask


class CrossModalLayer(torch.nn.Module):
    """Pre-norm transformer layer (MulT). Attends to itself, or to `key`/`value` (another
    modality, normalised by the same LayerNorm). With `scalar`, residual and branch mix as
    α·x + (1-α)·f(x) with a learned α (AuxFormer). `config`: the model's, for its attn_implementation."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float,
                 scalar: bool = False, config=None):
        super().__init__()
        self.attn_norm = torch.nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, attn_dropout, config)
        self.ff_norm = torch.nn.LayerNorm(dim)
        self.fc1 = torch.nn.Linear(dim, 4 * dim)
        self.fc2 = torch.nn.Linear(4 * dim, dim)
        self.relu_dropout, self.res_dropout = relu_dropout, res_dropout
        self.alpha = torch.nn.Parameter(torch.rand(1)) if scalar else None

    def residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        branch = F.dropout(branch, self.res_dropout, self.training)
        return x + branch if self.alpha is None else self.alpha * x + (1 - self.alpha) * branch

    def forward(self, x, key=None, value=None, mask=None):
        """x (b, tq, d); key / value (b, tk, d) or None; mask: an `AttentionMask`."""
        if key is not None:
            key, value = (self.attn_norm(key), None) if value is None or value is key else (self.attn_norm(key), self.attn_norm(value))
        x = self.residual(x, self.attn(self.attn_norm(x), key, value, mask))
        h = F.relu(self.fc1(self.ff_norm(x)))
        h = self.fc2(F.dropout(h, self.relu_dropout, self.training))
        return self.residual(x, h)


class CrossModalEncoder(torch.nn.Module):
    """A MulT transformer encoder: input scaled by √d (+ sinusoidal positions when given), embedding
    dropout, `num_layers` `CrossModalLayer`s, final LayerNorm. Batch-first.

    Cross-modal use: `encoder(x, mask, positions, context=y, context_positions=...)` — every
    layer attends from the running x to the same embedded context."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, attn_dropout: float = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0, embed_dropout: float = 0.0, scalar: bool = False,
                 config=None):
        super().__init__()
        self.scale, self.embed_dropout = math.sqrt(dim), embed_dropout
        self.layers = torch.nn.ModuleList(
            CrossModalLayer(dim, num_heads, attn_dropout, relu_dropout, res_dropout, scalar, config) for _ in range(num_layers))
        self.norm = torch.nn.LayerNorm(dim)

    def embed(self, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        x = x * self.scale
        return x if positions is None else x + sinusoidal_embedding(positions, x.shape[-1]).to(x.dtype)

    def forward(self, x, mask: AttentionMask | None = None, positions=None, context=None, context_positions=None):
        """x (b, t, d) -> (b, t, d). mask: `AttentionMask(x_mask, context_mask or x_mask, causal)`."""
        x = F.dropout(self.embed(x, positions), self.embed_dropout, self.training)
        key = value = None
        if context is not None:
            context = self.embed(context, context_positions)
            key = F.dropout(context, self.embed_dropout, self.training)
            # training: keys and values get their own dropout masks, as in MulT; eval: one tensor
            value = F.dropout(context, self.embed_dropout, self.training) if self.training and self.embed_dropout else key
        for layer in self.layers:
            x = layer(x, key, value, mask)
        return self.norm(x)


class ResidualHead(torch.nn.Module):
    """Pooled (b, d) -> logits (b, c): x + MLP(x) (ReLU, dropout between layers), then a linear
    layer. Returns (logits, embedding) with the embedding being x + MLP(x)."""

    def __init__(self, dim: int, hidden_sizes, num_labels: int, dropout: float):
        super().__init__()
        sizes = [dim, *hidden_sizes, dim]
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = torch.nn.Linear(dim, num_labels)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for i, layer in enumerate(self.layers):
            if i:
                h = F.dropout(F.relu(h), self.dropout, self.training)
            h = layer(h)
        h = x + h
        return self.out(h), h


def xavier_init(module: torch.nn.Module) -> None:
    """Initialisation of the MulT / AuxFormer family: Xavier-uniform linear weights, zero biases,
    unit LayerNorms."""
    if isinstance(module, torch.nn.Linear):
        torch.nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, torch.nn.LayerNorm):
        torch.nn.init.ones_(module.weight)
        torch.nn.init.zeros_(module.bias)


@torch.no_grad()
def official_init(model: torch.nn.Module) -> None:
    """The official AuxFormer / MulT initialisation, on a model built with PyTorch's default
    initialisation (which the official code keeps everywhere else): the attention's packed input
    projection Xavier-uniform with zero bias and its output projection's bias zero
    (torch.nn.MultiheadAttention's own reset), and every layer's fc1 / fc2 Xavier-uniform with
    zero biases (modules/transformer.py's Linear)."""
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            torch.nn.init.xavier_uniform_(module.qkv.weight)
            torch.nn.init.zeros_(module.qkv.bias)
            torch.nn.init.zeros_(module.out_proj.bias)
        elif isinstance(module, CrossModalLayer):
            for fc in (module.fc1, module.fc2):
                torch.nn.init.xavier_uniform_(fc.weight)
                torch.nn.init.zeros_(fc.bias)

"""Attention for every vavl model, chosen by the model config's `attn_implementation`.

transformers' convention: `create_model(name, attn_implementation=...)`,
`AutoModel.from_pretrained(dir, attn_implementation=...)` or `model.set_attn_implementation(...)`
set `config._attn_implementation`, which every attention layer reads at each call:

- "sdpa": `F.scaled_dot_product_attention`, on every device; a mask is passed only where one is
  needed (`is_causal` for a plain causal mask), so GPUs reach their fused kernels.
- "eager": `eager_attention`, a few plain lines: for debugging, and the reference in tests.
- "cpu_kernel": vavl's fused C kernel (vavl/nn/native), float32 on the CPU, where it was built
  (`VAVL_BUILD_KERNEL=1` at install); a call it cannot take raises ConfigError saying why.
- "auto" (the default): SDPA, on every machine, so a config computes the same function wherever
  vavl was installed. The environment variable VAVL_ATTENTION=cpu_kernel makes "auto" opt in to the
  kernel for the calls it can take (float32 CPU heads up to AUTO_MAX_WIDTH wide), SDPA elsewhere.

Axis letters: b batch, h heads, tq / tk query / key frames, e head width, C = h * e channels.
"""
from __future__ import annotations

import functools
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ConfigError
from .native import attention as native

IMPLEMENTATIONS = ("auto", "sdpa", "eager", "cpu_kernel")
AUTO_MAX_WIDTH = 16  # widest heads "auto" gives the opted-in kernel: it wins at 5 and 16, SDPA at 64 (attention_speed.py)
AUTO_CHOICES = ("sdpa", "cpu_kernel")   # what VAVL_ATTENTION may make "auto" mean


def check_implementation(name) -> str:
    if name not in IMPLEMENTATIONS:
        raise ConfigError(f"attn_implementation={name!r} is not one of {', '.join(map(repr, IMPLEMENTATIONS))}")
    return name


def auto_choice() -> str:
    """What "auto" means here: VAVL_ATTENTION (sdpa or cpu_kernel), sdpa when unset."""
    value = os.environ.get("VAVL_ATTENTION", "sdpa") or "sdpa"
    if value not in AUTO_CHOICES:
        raise ConfigError(f"VAVL_ATTENTION={value!r} is not one of {', '.join(AUTO_CHOICES)}")
    return value


def implementation_of(config) -> str:
    """The attention a layer built with this model config runs ("auto" when the config sets none)."""
    return getattr(config, "_attn_implementation", None) or "auto"


def _tracing() -> bool:
    return torch.compiler.is_compiling()


def attention_mask(query_mask: torch.Tensor, key_mask: torch.Tensor, causal: bool) -> torch.Tensor | None:
    """Which keys each query may look at, from (b, tq) and (b, tk) frame masks: bool (b, 1, tq, tk),
    or (tq, tk) / None when no sample has padding (outside torch.compile / export, which always get
    the first form). `causal` is the MulT "future" mask: query i sees key j when j <= i + |Lk - Lq|,
    counted over real frames of each sample, so padding never moves it."""
    tq, tk = query_mask.shape[1], key_mask.shape[1]
    if not _tracing() and bool(query_mask.all()) and bool(key_mask.all()):  # one mask serves the batch
        if not causal:
            return None
        i = torch.arange(tq, device=query_mask.device).unsqueeze(1)
        return torch.arange(tk, device=query_mask.device).unsqueeze(0) - i <= abs(tk - tq)
    allowed = key_mask.unsqueeze(1)  # (b, 1, tk)
    if causal:
        rank_q = query_mask.long().cumsum(1) - 1  # index among real frames (padding: that of the last)
        rank_k = key_mask.long().cumsum(1) - 1
        offset = (key_mask.sum(1) - query_mask.sum(1)).abs()  # (b,)
        allowed = allowed & (rank_k.unsqueeze(1) - rank_q.unsqueeze(2) <= offset.view(-1, 1, 1))
    else:
        allowed = allowed.expand(-1, tq, -1)
    return allowed.unsqueeze(1)


class AttentionMask:
    """`attention_mask` of a pair of frame masks, for one forward: made once by the model and shared
    by every layer that attends with it. Each form a layer asks for is made on first use and kept
    for the others; making the object computes nothing (and builds nothing).

    allowed: bool (b, 1, tq, tk) / (tq, tk) / None (every key), see `attention_mask`.
    empty: (b, tq, 1) bool, queries that see no key at all (a missing modality), or None.
    is_causal: no padding, as many queries as keys, causal: SDPA's own is_causal is this mask.
    bias(dtype): additive, 0 where allowed and -inf elsewhere, with the rows of `empty` opened so
        that softmax stays finite (their outputs are set to zero).
    kernel_layout(): (bias_t or None, key counts) as the C kernel reads them.
    """

    def __init__(self, query_mask: torch.Tensor, key_mask: torch.Tensor, causal: bool = False):
        self.query_mask, self.key_mask, self.causal = query_mask, key_mask, causal
        self._forms: dict = {}

    def _form(self, name, make):
        if name not in self._forms:
            self._forms[name] = make()
        return self._forms[name]

    @property
    def allowed(self) -> torch.Tensor | None:
        return self._form("allowed", lambda: attention_mask(self.query_mask, self.key_mask, self.causal))

    @property
    def empty(self) -> torch.Tensor | None:
        allowed = self.allowed  # a (tq, tk) causal mask lets every query see key 0
        return None if allowed is None or allowed.dim() == 2 else self._form("empty", lambda: ~allowed.any(-1).transpose(1, 2))

    @property
    def is_causal(self) -> bool:
        allowed = self.allowed
        return allowed is not None and allowed.dim() == 2 and allowed.shape[0] == allowed.shape[1]

    def bias(self, dtype: torch.dtype) -> torch.Tensor | None:
        def make():
            allowed = self.allowed if self.empty is None else self.allowed | self.empty.transpose(1, 2).unsqueeze(-1)
            return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))
        return None if self.allowed is None else self._form(("bias", dtype), make)

    def kernel_layout(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        return self._form("kernel", self._kernel_layout)

    def _kernel_layout(self):
        allowed, tq, tk = self.allowed, self.query_mask.shape[1], self.key_mask.shape[1]
        if allowed is None:
            return None, torch.full((tq,), tk, dtype=torch.int32, device=self.key_mask.device)
        keys = native.key_counts(allowed)
        if allowed.dim() == 2 or (not _tracing() and _prefixes(allowed, keys)):
            return None, keys  # every query sees its first keys: the counts say it all
        return native.kernel_bias(self.bias(torch.float32)), keys


def _prefixes(allowed: torch.Tensor, keys: torch.Tensor) -> bool:
    """Whether each query's allowed keys are the first `keys` of them (padding at the end)."""
    first = torch.arange(allowed.shape[-1], device=allowed.device) < keys.unsqueeze(-1)
    return bool(torch.equal(allowed.squeeze(1), first))


def eager_attention(q, k, v, bias: torch.Tensor | None, dropout: float) -> torch.Tensor:
    """The reference: softmax(q k^T / sqrt(e) + bias), dropout, @ v on (b, h, t, e) -> (b, h, tq, e)."""
    scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    weights = (scores if bias is None else scores + bias).softmax(-1)
    return (F.dropout(weights, dropout) if dropout else weights) @ v


def _with_bias(mask: AttentionMask | None, bias: torch.Tensor | None, dtype) -> torch.Tensor | None:
    """The mask's additive bias plus the extra one (either may be None)."""
    masked = None if mask is None else mask.bias(dtype)
    return bias if masked is None else masked if bias is None else masked + bias


def _kernel_refusal(q: torch.Tensor, heads: int) -> str | None:
    """Why the C kernel cannot take this call, or None."""
    if q.dtype != torch.float32 or q.device.type != "cpu":
        return f"the kernel runs float32 on the CPU, not {q.dtype} on {q.device}"
    width = native.max_width()
    if not width:
        why = native.reason()
        return f"the kernel is {why}" if why.startswith("turned") else f"the kernel is not available: {why}"
    if q.shape[-1] // heads > width:
        return f"heads {q.shape[-1] // heads} wide are wider than the kernel's {width}"
    return None


@functools.cache
def _warn_once(why: str) -> None:
    warnings.warn(f"vavl: attention runs SDPA instead of the faster CPU kernel: {why}", stacklevel=3)


def choose(implementation: str, q: torch.Tensor, heads: int) -> str:
    """What one call with this attn_implementation runs: "sdpa", "eager" or "cpu_kernel"."""
    if check_implementation(implementation) in ("sdpa", "eager"):
        return implementation
    if implementation == "auto" and auto_choice() == "sdpa":
        return "sdpa"
    why = _kernel_refusal(q, heads)
    if implementation == "cpu_kernel":
        if why is not None:
            raise ConfigError(f"attn_implementation='cpu_kernel': {why}; use 'sdpa' (or 'auto'), or install vavl "
                              "with VAVL_BUILD_KERNEL=1 for the kernel")
        return "cpu_kernel"
    if q.shape[-1] // heads > AUTO_MAX_WIDTH:   # "auto" opted in to the kernel by VAVL_ATTENTION=cpu_kernel
        return "sdpa"
    if why is None:
        return "cpu_kernel"
    if "not available" in why and not _tracing():
        _warn_once(why)
    return "sdpa"


def attention(q, k, v, heads: int, mask: AttentionMask | None = None, bias: torch.Tensor | None = None,
              dropout: float = 0.0, implementation: str = "auto") -> torch.Tensor:
    """softmax(q k^T / sqrt(e) + mask + bias), dropout on the weights, @ v -> (b, tq, C).

    q (b, tq, C), k and v (b, tk, C), C = heads * e; views with contiguous channels (slices of a
    packed projection) are read in place. bias: an extra additive float bias broadcastable to
    (b, heads, tq, tk), e.g. relative positions; it may need a gradient. dropout: the rate, 0 in
    eval. A query that sees no key gets zeros."""
    how = choose(implementation, q, heads)
    if how == "cpu_kernel":
        if mask is None:
            bias_t, keys = None, torch.full((q.shape[1],), k.shape[1], dtype=torch.int32)
        else:
            bias_t, keys = mask.kernel_layout()
        if bias is not None:
            bias_t = native.kernel_bias(_with_bias(mask, bias, torch.float32))
        seed = torch.randint(0, 2**32, (1,)) if dropout else None  # torch's generator: manual_seed reproduces it
        return native.cpu_attention(q, k, v, bias_t, keys, heads, dropout, seed)[0]
    qh, kh, vh = (x.unflatten(-1, (heads, -1)).transpose(1, 2) for x in (q, k, v))  # (b, h, t, e)
    if how == "sdpa" and bias is None and mask is not None and mask.is_causal:
        out = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=dropout, is_causal=True)
    elif how == "sdpa":
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=_with_bias(mask, bias, q.dtype), dropout_p=dropout)
    else:
        out = eager_attention(qh, kh, vh, _with_bias(mask, bias, q.dtype), dropout)
    out = out.transpose(1, 2)
    if torch.compiler.is_exporting():   # SDPA's CPU kernel and its decomposition lay the output out differently:
        out = out.clone(memory_format=torch.contiguous_format)   # a real copy keeps the view below valid in both
    out = out.flatten(2)   # (b, tq, C)
    empty = None if mask is None else mask.empty
    return out if empty is None else out.masked_fill(empty, 0.0)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention, batch-first, through `attention` with the implementation of
    `config` (the model's config; None: "auto"). One packed input projection `qkv` (3d, d) as in
    `nn.MultiheadAttention`, so its weights map one-to-one. A query with no key (a missing
    modality) gets a zero output, projection bias included."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, config=None):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"num_heads={num_heads} must divide the width {dim}")
        self.num_heads, self.dropout, self.config = num_heads, dropout, config
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                mask: AttentionMask | None = None) -> torch.Tensor:
        """x (b, tq, d); key / value (b, tk, d), default x (self-attention); -> (b, tq, d)."""
        d, w, b = x.shape[-1], self.qkv.weight, self.qkv.bias
        if key is None:
            q, k, v = self.qkv(x).split(d, -1)
        elif value is None or value is key:
            q, (k, v) = F.linear(x, w[:d], b[:d]), F.linear(key, w[d:], b[d:]).split(d, -1)
        else:
            q, k, v = (F.linear(t, w[i * d:(i + 1) * d], b[i * d:(i + 1) * d]) for i, t in enumerate((x, key, value)))
        out = attention(q, k, v, self.num_heads, mask, dropout=self.dropout if self.training else 0.0,
                        implementation=implementation_of(self.config))
        out = self.out_proj(out)
        empty = None if mask is None else mask.empty
        return out if empty is None else out.masked_fill(empty, 0.0)

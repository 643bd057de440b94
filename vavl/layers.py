"""Building blocks shared by the fusion models.

Axis letters: b batch, t time (ta audio, tv visual), d width, h heads.
Masks are bool (b, t), True where a frame is real.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy
import torch

from vavl.native import attention as native_attention


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
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb.masked_fill(positions.unsqueeze(-1) == 0, 0.0)


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    """(b, t) bool -> (b, t) long: 1, 2, ... counting real frames only, 0 on padding. Dropping a
    frame (mask False) is then the same as cutting it out of the sequence."""
    return mask.long().cumsum(1) * mask


def attention_mask(query_mask: torch.Tensor, key_mask: torch.Tensor, causal: bool) -> torch.Tensor | None:
    """Which keys each query may look at: bool (b, 1, tq, tk), or (tq, tk) / None when no sample
    has padding. `causal` is the MulT "future" mask: query i sees key j when j <= i + |Lk - Lq|,
    counted over real frames of each sample, so padding never moves it."""
    tq, tk = query_mask.shape[1], key_mask.shape[1]
    if bool(query_mask.all()) and bool(key_mask.all()):  # one mask serves the whole batch
        if not causal:
            return None
        i = torch.arange(tq, device=query_mask.device).unsqueeze(1)
        j = torch.arange(tk, device=query_mask.device).unsqueeze(0)
        return j - i <= abs(tk - tq)
    allowed = key_mask.unsqueeze(1)  # (b, 1, tk)
    if causal:
        rank_q = query_mask.long().cumsum(1) - 1  # index among real frames (padding: that of the last)
        rank_k = key_mask.long().cumsum(1) - 1
        offset = (key_mask.sum(1) - query_mask.sum(1)).abs()  # (b,)
        allowed = allowed & (rank_k.unsqueeze(1) - rank_q.unsqueeze(2) <= offset.view(-1, 1, 1))
    else:
        allowed = allowed.expand(-1, tq, -1)
    return allowed.unsqueeze(1)


class AttentionBias(NamedTuple):
    """An `attention_mask` made ready for the layers, once per forward.

    bias: float, 0 where a query may look at a key and -inf elsewhere, (tq, tk) or (b, 1, tq, tk);
        None when every key is allowed. Adding it costs one cheap pass; masked_fill with a bool
        mask is several times slower on CPU.
    empty: (b, 1, tq, 1) bool, queries that see no key at all (a missing modality): their row
        of `bias` is opened so softmax stays finite, and their output is set to zero.
    fused: the same mask as the fused CPU kernel reads it (`FusedBias`), made once here rather
        than in every layer; None off the CPU (or work it out when needed).
    """

    bias: torch.Tensor | None
    empty: torch.Tensor | None
    fused: "FusedBias | None" = None

    @classmethod
    def from_mask(cls, allowed: torch.Tensor | None, dtype=torch.float32) -> "AttentionBias":
        if allowed is None:
            return cls(None, None)
        empty = None
        if allowed.dim() == 4:
            empty = ~allowed.any(-1, keepdim=True)
            allowed = allowed | empty
        bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))
        fused = FusedBias.from_bias(bias) if bias.device.type == "cpu" and native_attention.library() else None
        return cls(bias, empty, fused)


class FusedBias(NamedTuple):
    """An attention bias as the fused CPU kernel reads it.

    bias_t: the bias transposed and padded, (tk, tq_pad) or (b, 1, tk, tq_pad) float32 (the kernel
        walks keys with several queries side by side), or None for no bias.
    keys: int32 (tq,) or (b, tq): 1 + the last key each query may look at (0 if none); the
        kernel never looks further.
    """

    bias_t: torch.Tensor | None
    keys: torch.Tensor

    @classmethod
    def from_bias(cls, bias: torch.Tensor | None, tq: int = 0, tk: int = 0) -> "FusedBias":
        """From a float bias ((tq, tk) or (b, 1, tq, tk), -inf where not allowed), or from None (every key)."""
        if bias is None:
            return cls(None, torch.full((tq,), tk, dtype=torch.int32))
        allowed = (bias > float("-inf")).squeeze(1) if bias.dim() == 4 else bias > float("-inf")
        position = torch.arange(1, bias.shape[-1] + 1, dtype=torch.int32)
        keys = torch.where(allowed, position, 0).amax(-1).to(torch.int32).contiguous()
        return cls(native_attention.pad_bias(bias), keys)


def random_bits(shape) -> torch.Tensor:
    """CPU int16 tensor of `shape`, uniform over all 65536 values, four per 64-bit word of numpy's
    SFC64 generator, which is seeded from torch's default generator so that `torch.manual_seed`
    and saved RNG states still make dropout reproducible. Twice as fast as torch's `random_`
    (mt19937) and several times faster than `bernoulli_`, whose fast MKL path is Intel-only."""
    n = math.prod(shape)
    seed = int(torch.randint(0, 2**62, (1,)))
    words = numpy.random.SFC64(seed).random_raw((n + 3) // 4)
    return torch.from_numpy(words.view(numpy.int16)[:n]).view(shape)


def keep_threshold(p: float) -> tuple[int, float]:
    """Dropout with `random_bits`: keep where bits >= threshold, then scale by 1 / (1 - p).
    p is rounded to a multiple of 2^-16 (0.1 -> 0.100006); the scale uses the rounded p."""
    dropped = min(round(p * 65536), 65535)
    return dropped - 32768, 65536 / (65536 - dropped)


def keep_mask(shape, p: float, dtype=torch.float32) -> tuple[torch.Tensor, float]:
    """CPU dropout keep mask (1 kept, 0 dropped, probability p) as `dtype`, and the 1 / (1 - p)
    that keeps the expectation (see `keep_threshold`)."""
    threshold, scale = keep_threshold(p)
    return torch.ge(random_bits(shape), threshold, out=torch.empty(shape, dtype=dtype)), scale


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout` with the cheap mask of `keep_mask` on CPU (GPUs keep the native kernel)."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, True)
    keep, scale = keep_mask(x.shape, p, x.dtype)
    return x * keep.mul_(scale)


CHUNK_BYTES = 1 << 22  # attention weights handled at a time by `cpu_attention`: a few clips, kept in cache
SHORT_KEYS = 16  # fewer keys than this: weights held as (tk, tq), as softmax over a last dim < 16 is ~10x slower


def _t(x: torch.Tensor, flag: bool) -> torch.Tensor:
    """x, or x with its last two axes swapped when `flag`."""
    return x.transpose(-1, -2) if flag else x


def _blocks(like: torch.Tensor, b: int, h: int, shape: tuple[int, int], buffers: int):
    """Cut a batch of b clips into blocks of a few clips whose (h, *shape) weights fit in
    CHUNK_BYTES -> (clips slice, rows = clips x heads, per-block (rows, *shape) buffers). The
    buffers (dtype and device of `like`) are made once and reused by every block."""
    step = max(1, CHUNK_BYTES // (h * math.prod(shape) * like.element_size()))
    bufs = [like.new_empty(min(step, b) * h, *shape) for _ in range(buffers)]
    for i in range(0, b, step):
        c = slice(i, min(i + step, b))
        rows = (c.stop - i) * h
        yield c, rows, [buf[:rows] for buf in bufs]


def _attention_forward(q_t, kT, vT, bias, p, keep_weights: bool):
    """Attention of contiguous q_t (b, h, e, tq) (scaled), kT / vT (b, h, e, tk), block by block so
    that each pass over a block's weights stays in cache.

    Weights are held (tq, tk), or (tk, tq) when tk < SHORT_KEYS, with softmax over the keys' axis
    either way. The output is formed transposed, (e, tk) @ (tk, tq): with e = 5 that is several
    times faster in MKL than (tq, tk) @ (tk, e).
    -> (out_t (b, h, e, tq), weights as held when `keep_weights`, int16 dropout bits as held or None)."""
    b, h, e, tq = q_t.shape
    tk = kT.shape[-1]
    flip = tk < SHORT_KEYS
    shape = (tk, tq) if flip else (tq, tk)
    bias = None if bias is None else _t(bias, flip).contiguous()
    bits, (threshold, scale) = (random_bits((b, h, *shape)), keep_threshold(p)) if p else (None, (0, 1.0))
    weights = q_t.new_empty(b, h, *shape) if keep_weights else None
    out_t = q_t.new_empty(b, h, e, tq)
    for c, rows, (scores, w) in _blocks(q_t, b, h, shape, 2):
        qb, kb = q_t[c].view(rows, e, tq), kT[c].view(rows, e, tk)
        s = torch.bmm(*((kb.transpose(1, 2), qb) if flip else (qb.transpose(1, 2), kb)), out=scores)
        if bias is not None:
            s.view(-1, h, *shape).add_(bias if bias.dim() == 2 else bias[c])
        w = torch.softmax(s, -2 if flip else -1, out=weights[c].view(rows, *shape) if keep_weights else w)
        if bits is not None:  # the dropped weights go to the scores buffer
            w = torch.ge(bits[c].view(rows, *shape), threshold, out=s).mul_(w)
        torch.bmm(vT[c].view(rows, e, tk), _t(w, not flip), out=out_t[c].view(rows, e, tq))
    if bits is not None:
        out_t.mul_(scale)
    return out_t, weights, bits


def _to_heads(x: torch.Tensor, start: int, heads: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    """Channels start:start + dim of x (b, t, C), times `scale` -> contiguous (b, heads, e, t), one pass."""
    src = x[..., start:start + dim].unflatten(-1, (heads, dim // heads)).permute(0, 2, 3, 1)
    return torch.mul(src, scale, out=x.new_empty(src.shape)) if scale != 1.0 else src.contiguous()


def _put_heads(x_t: torch.Tensor, out: torch.Tensor, start: int, scale: float = 1.0) -> None:
    """Inverse of `_to_heads`: (b, h, e, t) times `scale` into channels start:start + h * e of out (b, t, C)."""
    b, h, e, t = x_t.shape
    dest, src = out[..., start:start + h * e].unflatten(-1, (h, e)), x_t.permute(0, 3, 1, 2)
    torch.mul(src, scale, out=dest) if scale != 1.0 else dest.copy_(src)


def _from_heads(x_t: torch.Tensor) -> torch.Tensor:
    """(b, h, e, t) -> (b, t, h * e)."""
    b, h, e, t = x_t.shape
    return x_t.permute(0, 3, 1, 2).reshape(b, t, h * e)


def _slot_scales(e: int) -> tuple[float, float, float]:
    """What q, k and v are multiplied by on the way in (and their gradients on the way out)."""
    return e ** -0.5, 1.0, 1.0


def _gather_heads(sources, slots, heads: int, dim: int):
    """q_t (times e^-0.5), kT, vT as (b, h, e, t), read from their `slots` in `sources`."""
    return [_to_heads(sources[i], start, heads, dim, s) for (i, start), s in zip(slots, _slot_scales(dim // heads))]


def _source_grads(like: torch.Tensor, shapes, slots, dim: int) -> list[torch.Tensor]:
    """Gradient buffers for the sources: empty where the q/k/v slots cover every channel, else zeros."""
    covered = [sum(dim for j, _ in slots if j == i) == shape[-1] for i, shape in enumerate(shapes)]
    return [like.new_empty(shape) if full else like.new_zeros(shape) for shape, full in zip(shapes, covered)]


class _SmallHeadAttention(torch.autograd.Function):
    """`cpu_attention` with a hand-written backward over the same blocks. It keeps the weights and
    the int16 dropout bits, not a dropped float copy nor a float mask. The gradients of q, k and v
    are written straight into their slots of each source's gradient: no split, cat or layout
    copies are left to autograd."""

    @staticmethod
    def forward(ctx, bias, p, heads, dim, slots, *sources):
        q_t, kT, vT = _gather_heads(sources, slots, heads, dim)
        out_t, weights, bits = _attention_forward(q_t, kT, vT, bias, p, keep_weights=True)
        ctx.save_for_backward(q_t, kT, vT, weights, bits)
        ctx.p, ctx.slots, ctx.dim, ctx.shapes = p, slots, dim, [x.shape for x in sources]
        return _from_heads(out_t)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        q_t, kT, vT, weights, bits = ctx.saved_tensors
        b, h, e, tq = q_t.shape
        tk = kT.shape[-1]
        flip, shape = tk < SHORT_KEYS, tuple(weights.shape[-2:])  # as the forward held them
        threshold, scale = keep_threshold(ctx.p) if bits is not None else (0, 1.0)
        grad_t = _to_heads(grad, 0, h, ctx.dim, scale)
        gq_t, gk_t, gv_t = q_t.new_empty(b, h, e, tq), q_t.new_empty(b, h, e, tk), q_t.new_empty(b, h, e, tk)
        for c, rows, (a, d) in _blocks(q_t, b, h, shape, 2):
            w = weights[c].view(rows, *shape)
            gb, vb = grad_t[c].view(rows, e, tq), vT[c].view(rows, e, tk)
            keep = None if bits is None else torch.ge(bits[c].view(rows, *shape), threshold, out=a)
            # d v: (e, tq) @ (tq, tk) with the weights as they were used, dropped
            torch.bmm(gb, _t(w if keep is None else torch.mul(w, keep, out=d), flip), out=gv_t[c].view(rows, e, tk))
            g_w = torch.bmm(*((vb.transpose(1, 2), gb) if flip else (gb.transpose(1, 2), vb)), out=d)  # as held
            if keep is not None:
                g_w.mul_(keep)
            g_s = torch.ops.aten._softmax_backward_data.out(g_w, w, -2 if flip else -1, w.dtype, grad_input=a)
            torch.bmm(kT[c].view(rows, e, tk), _t(g_s, not flip), out=gq_t[c].view(rows, e, tq))
            torch.bmm(q_t[c].view(rows, e, tq), _t(g_s, flip), out=gk_t[c].view(rows, e, tk))
        grads = _source_grads(q_t, ctx.shapes, ctx.slots, ctx.dim)
        for (i, start), g_t, s in zip(ctx.slots, (gq_t, gk_t, gv_t), _slot_scales(e)):
            _put_heads(g_t, grads[i], start, s)
        return (None, None, None, None, None, *grads)


def _fused_job(bias_t, keys, p, heads, dim, slots, sources, seed):
    """The kernel's job for q, k, v at their slots of `sources` (checked: a wrong shape here would
    make the C code read out of bounds)."""
    q, k = sources[slots[0][0]], sources[slots[1][0]]
    b, tq, tk = q.shape[0], q.shape[1], k.shape[1]
    for (i, start), name in zip(slots, "qkv"):
        x = sources[i]
        if x.dim() != 3 or x.shape[0] != b or x.shape[1] != (tq if name == "q" else tk) or start + dim > x.shape[2]:
            raise ValueError(f"cpu_attention: {name} at channel {start} of a {tuple(x.shape)} tensor does not fit "
                             f"{b} clips x {tq if name == 'q' else tk} frames x {dim} channels")
    threshold, scale = keep_threshold(p) if p else (0, 0.0)
    job = native_attention.make_job(b, heads, dim // heads, tq, tk, bias_t, keys, (dim // heads) ** -0.5, seed,
                                    threshold, scale)
    for name, (i, start) in zip("qkv", slots):
        native_attention.set_slot(job, name, sources[i], start)
    return job


def _fused_forward(bias_t, keys, p, heads, dim, slots, sources):
    """-> (out (b, tq, dim), lse (b * heads, tq), dropout seed) from the kernel's forward."""
    seed = int(torch.randint(0, 2**32, (1,))) if p else 0
    job = _fused_job(bias_t, keys, p, heads, dim, slots, sources, seed)
    b, tq = sources[slots[0][0]].shape[:2]
    out, lse = sources[0].new_empty(b, tq, dim), sources[0].new_empty(b * heads, tq)
    native_attention.set_slot(job, "out", out)
    job.lse = native_attention.float_ptr(lse)
    native_attention.run(native_attention.library(), job, b, backward=False)
    return out, lse, seed


class _FusedAttention(torch.autograd.Function):
    """`cpu_attention` through the C kernel (vavl/native/attention.c): one sweep per (clip, head)
    tile, nothing of size (tq, tk) in memory. It saves the output and each row's log-sum-exp;
    the backward recomputes the weights and redraws the dropout decisions from the seed (a
    counter-based hash, so the same keys are dropped as in the forward)."""

    @staticmethod
    def forward(ctx, bias_t, keys, p, heads, dim, slots, *sources):
        out, lse, seed = _fused_forward(bias_t, keys, p, heads, dim, slots, sources)
        ctx.save_for_backward(bias_t, keys, out, lse, *sources)
        ctx.args, ctx.shapes = (p, heads, dim, slots, seed), [x.shape for x in sources]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        bias_t, keys, out, lse, *sources = ctx.saved_tensors
        p, heads, dim, slots, seed = ctx.args
        job = _fused_job(bias_t, keys, p, heads, dim, slots, sources, seed)
        grad = grad if grad.stride(-1) == 1 else grad.contiguous()
        native_attention.set_slot(job, "o", out)
        native_attention.set_slot(job, "grad", grad)
        job.lse = native_attention.float_ptr(lse)
        grads = _source_grads(out, ctx.shapes, slots, dim)
        for name, (i, start) in zip(("gq", "gk", "gv"), slots):
            native_attention.set_slot(job, name, grads[i], start)
        native_attention.run(native_attention.library(), job, out.shape[0], backward=True)
        return (None, None, None, None, None, None, *grads)


def fused_available(width: int, *tensors) -> bool:
    """Whether `cpu_attention` with heads of this width on these tensors runs through the C kernel
    (float32 on the CPU, heads up to 64 wide, and a C compiler)."""
    if not all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in tensors):
        return False
    lib = native_attention.library()
    return lib is not None and width <= lib.max_width


def cpu_attention(sources, slots, bias, heads: int, dim: int, p: float = 0.0, fused: FusedBias | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(e) + bias) with dropout p on the weights, @ v, over `heads` heads of
    width e = dim / heads -> (b, tq, dim). q, k and v are channel ranges of `sources` (tensors
    (b, t, C)): `slots` gives (source index, first channel) for each, e.g. one packed q|k|v
    projection ((0, 0), (0, dim), (0, 2 * dim)), or q and a packed k|v ((0, 0), (1, 0), (1, dim)).
    The CPU path for small heads (e = 5 in AuxFormer): SDPA's fused CPU kernel has no dropout, and
    its fallback, like plain autograd, makes several full passes over the (b, h, tq, tk) weights
    in memory. `bias` (float, no gradient): None, (tq, tk) or (b, 1, tq, tk); `fused`: the same
    bias as `FusedBias.from_bias` makes it (made here when not given).

    float32 runs through the C kernel (`_FusedAttention`) where it can be built; other dtypes, or
    no C compiler, take the PyTorch path (`_SmallHeadAttention`), which holds the (tq, tk) weights
    block by block and draws its dropout bits differently (same p, same rounding)."""
    if fused_available(dim // heads, *sources, bias):
        sources = tuple(x if x.stride(-1) == 1 else x.contiguous() for x in sources)
        if fused is None:
            fused = FusedBias.from_bias(bias, sources[slots[0][0]].shape[1], sources[slots[1][0]].shape[1])
        if torch.is_grad_enabled() and any(x.requires_grad for x in sources):
            return _FusedAttention.apply(*fused, p, heads, dim, tuple(slots), *sources)
        return _fused_forward(*fused, p, heads, dim, slots, sources)[0]
    if torch.is_grad_enabled() and any(x.requires_grad for x in sources):
        return _SmallHeadAttention.apply(bias, p, heads, dim, tuple(slots), *sources)
    out_t = _attention_forward(*_gather_heads(sources, slots, heads, dim), bias, p, keep_weights=False)[0]
    return _from_heads(out_t)


class MultiHeadAttention(torch.nn.Module):
    """Self- or cross-attention, batch-first (`cpu_attention` on CPU, `F.scaled_dot_product_attention` elsewhere).

    One packed input projection `qkv` (3d, d) as in `nn.MultiheadAttention`, so its weights map
    one-to-one. `mask`: an `AttentionBias`. A query with no key at all (a missing modality) gets a
    zero output instead of NaN.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        assert dim % num_heads == 0, f"num_heads={num_heads} must divide dim={dim}"
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out_proj = torch.nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                mask: AttentionBias | None = None) -> torch.Tensor:
        """x (b, tq, d); key / value (b, tk, d), default x (self-attention); -> (b, tq, d)."""
        d = x.shape[-1]
        w, bias = self.qkv.weight, self.qkv.bias
        if key is None:  # one packed projection
            sources, slots = (self.qkv(x),), ((0, 0), (0, d), (0, 2 * d))
        elif value is None or value is key:
            sources = (torch.nn.functional.linear(x, w[:d], bias[:d]), torch.nn.functional.linear(key, w[d:], bias[d:]))
            slots = ((0, 0), (1, 0), (1, d))
        else:
            sources = tuple(torch.nn.functional.linear(t, w[i * d:(i + 1) * d], bias[i * d:(i + 1) * d])
                            for i, t in enumerate((x, key, value)))
            slots = ((0, 0), (1, 0), (2, 0))
        bias = None if mask is None or mask.bias is None else mask.bias.to(x.dtype)
        p = self.dropout if self.training else 0.0
        if x.device.type == "cpu":
            out = cpu_attention(sources, slots, bias, self.num_heads, d, p, None if mask is None else mask.fused)
        else:
            q, k, v = (sources[i][..., s:s + d].unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for i, s in slots)
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
            out = out.transpose(1, 2).flatten(2)
        out = self.out_proj(out)  # (b, tq, d)
        if mask is not None and mask.empty is not None:
            out = out.masked_fill(mask.empty.squeeze(1), 0.0)
        return out


class CrossModalLayer(torch.nn.Module):
    """Pre-norm transformer layer (MulT). Attends to itself, or to `key`/`value` (another
    modality, normalised by the same LayerNorm). With `scalar`, residual and branch mix as
    α·x + (1-α)·f(x) with a learned α (AuxFormer)."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float,
                 scalar: bool = False):
        super().__init__()
        self.attn_norm = torch.nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, attn_dropout)
        self.ff_norm = torch.nn.LayerNorm(dim)
        self.fc1 = torch.nn.Linear(dim, 4 * dim)
        self.fc2 = torch.nn.Linear(4 * dim, dim)
        self.relu_dropout, self.res_dropout = relu_dropout, res_dropout
        self.alpha = torch.nn.Parameter(torch.rand(1)) if scalar else None

    def residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        branch = dropout(branch, self.res_dropout, self.training)
        return x + branch if self.alpha is None else self.alpha * x + (1 - self.alpha) * branch

    def forward(self, x, key=None, value=None, mask=None):
        """x (b, tq, d); key / value (b, tk, d) or None; mask: an `AttentionBias`."""
        if key is not None:
            key, value = (self.attn_norm(key), None) if value is None or value is key else (self.attn_norm(key), self.attn_norm(value))
        x = self.residual(x, self.attn(self.attn_norm(x), key, value, mask))
        h = torch.nn.functional.relu(self.fc1(self.ff_norm(x)))
        h = self.fc2(dropout(h, self.relu_dropout, self.training))
        return self.residual(x, h)


class CrossModalEncoder(torch.nn.Module):
    """A MulT transformer encoder: input scaled by √d (+ sinusoidal positions when given), embedding
    dropout, `num_layers` `CrossModalLayer`s, final LayerNorm. Batch-first.

    Cross-modal use: `encoder(x, mask, positions, context=y, context_positions=...)` — every
    layer attends from the running x to the same embedded context."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, attn_dropout: float = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0, embed_dropout: float = 0.0, scalar: bool = False):
        super().__init__()
        self.scale, self.embed_dropout = math.sqrt(dim), embed_dropout
        self.layers = torch.nn.ModuleList(
            CrossModalLayer(dim, num_heads, attn_dropout, relu_dropout, res_dropout, scalar) for _ in range(num_layers))
        self.norm = torch.nn.LayerNorm(dim)

    def embed(self, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        x = x * self.scale
        return x if positions is None else x + sinusoidal_embedding(positions, x.shape[-1]).to(x.dtype)

    def forward(self, x, mask=None, positions=None, context=None, context_positions=None):
        """x (b, t, d) -> (b, t, d). mask: `AttentionBias.from_mask(attention_mask(x_mask, context_mask or x_mask))`."""
        x = dropout(self.embed(x, positions), self.embed_dropout, self.training)
        key = value = None
        if context is not None:
            context = self.embed(context, context_positions)
            key = dropout(context, self.embed_dropout, self.training)
            # training: keys and values get their own dropout masks, as in MulT; eval: one tensor
            value = dropout(context, self.embed_dropout, self.training) if self.training and self.embed_dropout else key
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
                h = dropout(torch.nn.functional.relu(h), self.dropout, self.training)
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

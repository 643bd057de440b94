"""The fused CPU attention kernel (attention.c) as the torch op `vavl::cpu_attention`.

The library is built at install time by the package build (setup.py) into this folder and loaded
from there only, never compiled or looked up anywhere else at run time. At load its ABI version
and the size of its `Job` are compared with `Job` below, and the ISA level its sweeps run at is
the best this CPU supports (`VAVL_NATIVE_ISA=baseline|avx2|avx512` asks for a lower one;
`VAVL_NATIVE=0` turns the kernel off). Every tensor is checked (`if ... raise`) before a pointer
to it reaches C.

The op is a `torch.library.custom_op` with a fake (shapes only) and a backward op, so
`torch.compile` and `torch.export` see one node. Its dropout is a counter-based hash of (seed,
clip, head, row, key); the seed is a tensor drawn from torch's generator by the caller, so
`torch.manual_seed` reproduces a run, and the backward redraws the same decisions from it.
"""
from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from .library import ABI_VERSION, LEVELS, Job, Kernel, bind, library_path, load  # noqa: F401  (re-exported for tests)

PAD = 16  # bias rows are padded to a multiple of this (PAD in attention.c)
_F, _I64 = ctypes.POINTER(ctypes.c_float), ctypes.c_int64

@torch.compiler.assume_constant_result
def max_width() -> int:
    """The widest head the kernel takes, 0 where it cannot run (a constant for torch.compile)."""
    found = load()[0]
    return 0 if found is None else found.max_width


@torch.compiler.assume_constant_result
def reason() -> str:
    """How the kernel runs here, or why it cannot (a constant for torch.compile)."""
    return load()[1]


def padded(tq: int) -> int:
    return -(-tq // PAD) * PAD


def kernel_bias(bias: Tensor) -> Tensor:
    """Additive float bias (tq, tk) or (b or 1, h or 1, tq, tk) -> the kernel's layout: float32
    (b or 1, h or 1, tk, tq_pad), zeros in the padding."""
    bias = bias.reshape((1, 1) * (bias.dim() == 2) + tuple(bias.shape))
    tq = bias.shape[-2]
    return torch.nn.functional.pad(bias.transpose(-1, -2).float(), (0, padded(tq) - tq)).contiguous()


def key_counts(allowed: Tensor) -> Tensor:
    """bool (tq, tk) or (b, 1, tq, tk), True where a query may see a key -> int32 (tq,) or (b, tq):
    1 + the last key each query may see (0 if none); the kernel never looks further."""
    allowed = allowed.squeeze(1) if allowed.dim() == 4 else allowed
    position = torch.arange(1, allowed.shape[-1] + 1, dtype=torch.int32, device=allowed.device)
    return torch.where(allowed, position, 0).amax(-1).to(torch.int32).contiguous()


def keep_threshold(p: float) -> tuple[int, float]:
    """The kernel's dropout: keep where a 16-bit draw, read as int16, is >= threshold; scale kept
    weights by 1 / (1 - p). p is rounded to a multiple of 2^-16 (0.1 -> 0.100006)."""
    dropped = min(round(p * 65536), 65535)
    return dropped - 32768, 65536 / (65536 - dropped)


def keep_factors(seed: int, tiles: int, tq: int, tk: int, p: float) -> Tensor:
    """(tiles, tq, tk) float32: the 1 / (1 - p) or 0 the kernel multiplies each weight by (tests)."""
    out = torch.empty(tiles, tq, tk)
    _require().lib.vavl_attention_keep(seed, tiles, tq, tk, *keep_threshold(p), _ptr(out))
    return out


# ---- checks, then pointers ---------------------------------------------------------------------

def _require() -> Kernel:
    found, why = load()
    if found is None:
        raise RuntimeError(f"vavl::cpu_attention: the CPU attention kernel cannot run here: {why}")
    return found


def _fail(message: str):
    raise ValueError(f"vavl::cpu_attention: {message}")


def _check_rows(name: str, x: Tensor, shape: tuple[int, ...]) -> None:
    """float32 on the CPU, of this shape, channels contiguous (any batch and time strides)."""
    if x.dtype != torch.float32 or x.device.type != "cpu":
        _fail(f"{name} must be float32 on the CPU, not {x.dtype} on {x.device}")
    if tuple(x.shape) != shape:
        _fail(f"{name} has shape {tuple(x.shape)}, expected {shape}")
    if x.dim() and x.shape[-1] > 1 and x.stride(-1) != 1:
        _fail(f"{name} must have contiguous channels (stride {x.stride()})")


def _check(found: Kernel, q, k, v, bias_t, keys, heads: int, p: float, seed) -> tuple[int, int, int, int, int]:
    """Everything the C code trusts -> (b, tq, tk, channels, head width)."""
    if q.dim() != 3 or k.dim() != 3:
        _fail(f"q and k must be (batch, time, channels), not {tuple(q.shape)} and {tuple(k.shape)}")
    b, tq, c = q.shape
    tk = k.shape[1]
    for name, x, t in (("q", q, tq), ("k", k, tk), ("v", v, tk)):
        _check_rows(name, x, (b, t, c))
    if heads < 1 or c % heads or c // heads > found.max_width:
        _fail(f"{c} channels do not split into {heads} heads of at most {found.max_width}")
    if bias_t is not None and not (
            bias_t.dtype == torch.float32 and bias_t.device.type == "cpu" and bias_t.dim() == 4
            and bias_t.shape[0] in (1, b) and bias_t.shape[1] in (1, heads) and bias_t.shape[2:] == (tk, padded(tq))
            and bias_t.stride(-1) == 1 and bias_t.stride(-2) == padded(tq)):
        _fail(f"bias_t ({bias_t.dtype}, shape {tuple(bias_t.shape)}, stride {bias_t.stride()}) is not the kernel's "
              f"layout for {b} clips x {heads} heads x {tq} queries x {tk} keys: make it with kernel_bias")
    if keys.dtype != torch.int32 or keys.device.type != "cpu" or not keys.is_contiguous() or keys.shape[-1:] != (tq,) \
            or keys.dim() not in (1, 2) or (keys.dim() == 2 and keys.shape[0] not in (1, b)):
        _fail(f"keys must be contiguous int32 (tq,) or (b, tq) with tq={tq}, b={b}; got {keys.dtype} {tuple(keys.shape)}")
    if keys.numel() and not 0 <= (bounds := keys.aminmax()).min <= bounds.max <= tk:
        _fail(f"key counts must lie in [0, {tk}]")
    if not 0.0 <= p < 1.0 or (p > 0 and (seed is None or seed.numel() != 1)):
        _fail(f"dropout_p={p} must be in [0, 1), with a one-element seed tensor when above 0")
    return b, tq, tk, c, c // heads


def _ptr(x: Tensor):
    return ctypes.cast(x.data_ptr(), _F)


def _job(found: Kernel, q, k, v, bias_t, keys, heads: int, p: float, seed) -> tuple[Job, int]:
    b, tq, tk, c, e = _check(found, q, k, v, bias_t, keys, heads, p, seed)
    threshold, scale = keep_threshold(p) if p > 0 else (0, 0.0)
    job = Job(heads=heads, e=e, tq=tq, tk=tk, q_scale=e ** -0.5, seed=int(seed) if p > 0 else 0,
              threshold=threshold, drop_scale=scale)
    for name, x in (("q", q), ("k", k), ("v", v)):
        _point(job, name, x)
    if bias_t is not None:
        job.bias = _ptr(bias_t)
        job.bias_b = bias_t.stride(0) if bias_t.shape[0] > 1 else 0
        job.bias_h = bias_t.stride(1) if bias_t.shape[1] > 1 else 0
    job.nk = ctypes.cast(keys.data_ptr(), ctypes.POINTER(ctypes.c_int32))
    job.nk_b = tq if keys.dim() == 2 and keys.shape[0] > 1 else 0
    return job, b


def _point(job: Job, name: str, x: Tensor) -> None:
    setattr(job, name, _ptr(x))
    setattr(job, f"{name}_b", x.stride(0))
    setattr(job, f"{name}_t", x.stride(1))


def _run(found: Kernel, fn, job: Job, batch: int) -> None:
    status = fn(ctypes.byref(job), batch, torch.get_num_threads(), found.level)
    if status == 1:
        raise MemoryError("vavl::cpu_attention: could not allocate the kernel's work buffers")
    if status:
        raise RuntimeError(f"vavl::cpu_attention: this CPU cannot run the {LEVELS[found.level]} sweeps")


# ---- the op ------------------------------------------------------------------------------------

@torch.library.custom_op("vavl::cpu_attention", mutates_args=())
def cpu_attention(q: Tensor, k: Tensor, v: Tensor, bias_t: Tensor | None, keys: Tensor, heads: int,
                  dropout_p: float, seed: Tensor | None) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(e) + bias) with dropout, @ v, over `heads` heads of q, k, v (b, t,
    heads * e) -> (out (b, tq, heads * e), log-sum-exp of each row (b, heads, tq)). bias_t and keys
    as `kernel_bias` and `key_counts` make them; a query with no key gets zeros."""
    found = _require()
    job, b = _job(found, q, k, v, bias_t, keys, heads, dropout_p, seed)
    out, lse = q.new_empty(q.shape), q.new_empty(b, heads, q.shape[1])
    _point(job, "out", out)
    job.lse = _ptr(lse)
    _run(found, found.lib.vavl_attention_forward, job, b)
    return out, lse


@cpu_attention.register_fake
def _(q, k, v, bias_t, keys, heads, dropout_p, seed):
    return q.new_empty(q.shape), q.new_empty(q.shape[0], heads, q.shape[1])


def _bias_grad_shape(q: Tensor, k: Tensor, heads: int, bias_grad: bool) -> tuple[int, ...]:
    """Of the bias gradient the backward computes: every clip and head, or nothing."""
    return (q.shape[0], heads, k.shape[1], padded(q.shape[1])) if bias_grad else (0,)


@torch.library.custom_op("vavl::cpu_attention_backward", mutates_args=())
def cpu_attention_backward(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                           bias_t: Tensor | None, keys: Tensor, heads: int, dropout_p: float, seed: Tensor | None,
                           bias_grad: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of q, k, v and (with bias_grad, (b, heads, tk, tq_pad); else empty) of bias_t,
    from the gradient of `cpu_attention`'s out (its out and lse given)."""
    found = _require()
    job, b = _job(found, q, k, v, bias_t, keys, heads, dropout_p, seed)
    _check_rows("out", out, tuple(q.shape))
    _check_rows("grad", grad, tuple(q.shape))
    if lse.dtype != torch.float32 or tuple(lse.shape) != (b, heads, q.shape[1]) or not lse.is_contiguous():
        _fail(f"lse must be contiguous float32 {(b, heads, q.shape[1])}, not {lse.dtype} {tuple(lse.shape)}")
    if bias_grad and bias_t is None:
        _fail("bias_grad needs a bias")
    grads = [torch.empty(x.shape) for x in (q, k, v)]
    for name, x in zip(("o", "grad", "gq", "gk", "gv"), (out, grad, *grads)):
        _point(job, name, x)
    job.lse = _ptr(lse)
    g_bias = torch.zeros(_bias_grad_shape(q, k, heads, bias_grad))
    if bias_grad:
        job.gbias, job.gbias_b, job.gbias_h = _ptr(g_bias), g_bias.stride(0), g_bias.stride(1)
    _run(found, found.lib.vavl_attention_backward, job, b)
    return (*grads, g_bias)


@cpu_attention_backward.register_fake
def _(grad, q, k, v, out, lse, bias_t, keys, heads, dropout_p, seed, bias_grad):
    grads = (torch.empty_like(x, memory_format=torch.contiguous_format) for x in (q, k, v))
    return (*grads, q.new_empty(_bias_grad_shape(q, k, heads, bias_grad)))


def _setup_context(ctx, inputs, output):
    q, k, v, bias_t, keys, heads, dropout_p, seed = inputs
    ctx.save_for_backward(q, k, v, bias_t, keys, seed, *output)
    ctx.heads, ctx.dropout_p = heads, dropout_p


def _backward(ctx, grad, _grad_lse):
    q, k, v, bias_t, keys, seed, out, lse = ctx.saved_tensors
    bias_grad = ctx.needs_input_grad[3]
    gq, gk, gv, g_bias = cpu_attention_backward(grad.contiguous(), q, k, v, out, lse, bias_t, keys, ctx.heads,
                                                ctx.dropout_p, seed, bias_grad)
    return gq, gk, gv, g_bias.sum_to_size(bias_t.shape) if bias_grad else None, None, None, None, None


cpu_attention.register_autograd(_backward, setup_context=_setup_context)

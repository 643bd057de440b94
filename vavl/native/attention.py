"""ctypes bindings of attention.c: fused float32 attention over (clip, head) tiles on the CPU."""
from __future__ import annotations

import ctypes

import torch

from vavl.native import load

_F, _I64 = ctypes.POINTER(ctypes.c_float), ctypes.c_int64


class Job(ctypes.Structure):
    """Mirrors `Job` in attention.c, field for field."""
    _fields_ = [("heads", _I64), ("e", _I64), ("tq", _I64), ("tk", _I64),
                ("q", _F), ("k", _F), ("v", _F),
                ("q_b", _I64), ("q_t", _I64), ("k_b", _I64), ("k_t", _I64), ("v_b", _I64), ("v_t", _I64),
                ("bias", _F), ("bias_b", _I64),
                ("nk", ctypes.POINTER(ctypes.c_int32)), ("nk_b", _I64),
                ("q_scale", ctypes.c_float), ("seed", ctypes.c_uint32), ("threshold", ctypes.c_int32),
                ("drop_scale", ctypes.c_float),
                ("out", _F), ("out_b", _I64), ("out_t", _I64), ("lse", _F),
                ("o", _F), ("grad", _F), ("o_b", _I64), ("o_t", _I64), ("grad_b", _I64), ("grad_t", _I64),
                ("gq", _F), ("gk", _F), ("gv", _F),
                ("gq_b", _I64), ("gq_t", _I64), ("gk_b", _I64), ("gk_t", _I64), ("gv_b", _I64), ("gv_t", _I64),
                ("first", _I64), ("last", _I64)]


def library() -> ctypes.CDLL | None:
    lib = load("attention")
    if lib is not None and not hasattr(lib, "_vavl_typed"):
        for fn in (lib.vavl_attention_forward, lib.vavl_attention_backward):
            fn.argtypes, fn.restype = [ctypes.POINTER(Job), _I64, ctypes.c_int], ctypes.c_int
        lib.vavl_attention_keep.argtypes = [ctypes.c_uint32, _I64, _I64, _I64, ctypes.c_int32, ctypes.c_float, _F]
        lib.vavl_attention_keep.restype = None
        lib.lanes = lib.vavl_attention_lanes()  # query rows side by side (LANES in attention.c)
        lib.max_width = lib.vavl_attention_max_width()
        lib._vavl_typed = True
    return lib


def float_ptr(x: torch.Tensor, start: int = 0):
    return ctypes.cast(x.data_ptr() + start * x.element_size(), _F)


def set_slot(job: Job, name: str, x: torch.Tensor, start: int = 0) -> None:
    """Point `name` (q, k, v, out, o, grad, gq, gk, gv) at channels start: of x (b, t, C), whose
    channels must be contiguous, and set its batch and time strides."""
    assert x.dtype == torch.float32 and x.stride(-1) == 1, (x.dtype, x.stride())
    setattr(job, name, float_ptr(x, start))
    setattr(job, f"{name}_b", x.stride(0))
    setattr(job, f"{name}_t", x.stride(1))


def padded(tq: int) -> int:
    """tq rounded up to the kernel's lanes: the bias is padded to it."""
    lanes = library().lanes
    return -(-tq // lanes) * lanes


def pad_bias(bias: torch.Tensor) -> torch.Tensor:
    """float bias (tq, tk) or (b, 1, tq, tk) -> float32 (..., tk, tq_pad), zeros in the padding."""
    tq = bias.shape[-2]
    bias_t = bias.new_zeros(*bias.shape[:-2], bias.shape[-1], padded(tq), dtype=torch.float32)
    bias_t[..., :tq].copy_(bias.transpose(-1, -2))
    return bias_t


def make_job(batch: int, heads: int, e: int, tq: int, tk: int, bias_t: torch.Tensor | None, keys: torch.Tensor,
             q_scale: float, seed: int, threshold: int, drop_scale: float) -> Job:
    """bias_t: None or the bias transposed and padded, float32 (tk, tq_pad) or (1 or batch, 1, tk,
    tq_pad) with contiguous rows (`pad_bias`); keys: int32 (tq,) or (1 or batch, tq). Shapes are
    checked: the kernel trusts them."""
    job = Job(heads=heads, e=e, tq=tq, tk=tk, q_scale=q_scale, seed=seed, threshold=threshold, drop_scale=drop_scale)
    if bias_t is not None:
        ok = (bias_t.dtype == torch.float32 and bias_t.shape[-2:] == (tk, padded(tq)) and bias_t.stride(-1) == 1
              and bias_t.stride(-2) == padded(tq) and (bias_t.dim() == 2 or (bias_t.dim() == 4 and bias_t.shape[0] in (1, batch))))
        if not ok:
            raise ValueError(f"attention kernel: bias of shape {tuple(bias_t.shape)} does not fit {batch} clips, "
                             f"{tq} queries, {tk} keys (make it with FusedBias.from_bias)")
        job.bias, job.bias_b = float_ptr(bias_t), (bias_t.stride(0) if bias_t.dim() == 4 and bias_t.shape[0] > 1 else 0)
    if not (keys.dtype == torch.int32 and keys.is_contiguous() and keys.shape[-1] == tq
            and (keys.dim() == 1 or (keys.dim() == 2 and keys.shape[0] in (1, batch)))
            and int(keys.max()) <= tk):
        raise ValueError(f"attention kernel: key counts of shape {tuple(keys.shape)} do not fit {batch} clips, "
                         f"{tq} queries, {tk} keys")
    job.nk = ctypes.cast(keys.data_ptr(), ctypes.POINTER(ctypes.c_int32))
    job.nk_b = tq if keys.dim() == 2 and keys.shape[0] > 1 else 0
    return job


def run(lib: ctypes.CDLL, job: Job, batch: int, backward: bool) -> None:
    fn = lib.vavl_attention_backward if backward else lib.vavl_attention_forward
    if fn(ctypes.byref(job), batch, torch.get_num_threads()):
        raise MemoryError("vavl attention kernel: could not allocate its work buffers")


def keep_factors(seed: int, tiles: int, tq: int, tk: int, threshold: int, drop_scale: float) -> torch.Tensor:
    """(tiles, tq, tk) float32: the 1 / (1 - p) or 0 that the kernels multiply each weight by."""
    out = torch.empty(tiles, tq, tk)
    library().vavl_attention_keep(seed, tiles, tq, tk, threshold, drop_scale, float_ptr(out))
    return out

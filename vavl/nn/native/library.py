"""Finding, loading and checking the compiled kernel library (no torch ops here, so `vavl env` can
ask whether the kernel runs without registering them). torch is imported first so that the library
binds to PyTorch's own OpenMP runtime."""
from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import os
from pathlib import Path
from typing import NamedTuple

import torch  # noqa: F401  (loaded before the library: its libgomp is the one the kernel binds to)

ABI_VERSION = 2  # ABI_VERSION in attention.c
LEVELS = ("baseline", "avx2", "avx512")  # the ISA levels of attention.c, in order

_F, _I64 = ctypes.POINTER(ctypes.c_float), ctypes.c_int64


class Job(ctypes.Structure):
    """Mirrors `Job` in attention.c, field for field."""
    _fields_ = [("heads", _I64), ("e", _I64), ("tq", _I64), ("tk", _I64),
                ("q", _F), ("k", _F), ("v", _F),
                ("q_b", _I64), ("q_t", _I64), ("k_b", _I64), ("k_t", _I64), ("v_b", _I64), ("v_t", _I64),
                ("bias", _F), ("bias_b", _I64), ("bias_h", _I64),
                ("nk", ctypes.POINTER(ctypes.c_int32)), ("nk_b", _I64),
                ("q_scale", ctypes.c_float), ("seed", ctypes.c_uint32), ("threshold", ctypes.c_int32),
                ("drop_scale", ctypes.c_float),
                ("out", _F), ("out_b", _I64), ("out_t", _I64), ("lse", _F),
                ("o", _F), ("grad", _F), ("o_b", _I64), ("o_t", _I64), ("grad_b", _I64), ("grad_t", _I64),
                ("gq", _F), ("gk", _F), ("gv", _F),
                ("gq_b", _I64), ("gq_t", _I64), ("gk_b", _I64), ("gk_t", _I64), ("gv_b", _I64), ("gv_t", _I64),
                ("gbias", _F), ("gbias_b", _I64), ("gbias_h", _I64)]


class Kernel(NamedTuple):
    lib: ctypes.CDLL
    level: int  # index into LEVELS
    max_width: int  # widest head


def library_path() -> Path | None:
    """The library the package build put next to this file, or None."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = Path(__file__).with_name(f"_attention{suffix}")
        if path.is_file():
            return path
    return None


def bind(lib: ctypes.CDLL, name: str) -> tuple[Kernel | None, str]:
    """Check the handshake and pick the ISA level -> (kernel, how it runs) or (None, why not)."""
    lib.vavl_attention_job_size.restype = ctypes.c_int64
    abi, size = lib.vavl_attention_abi(), lib.vavl_attention_job_size()
    if abi != ABI_VERSION or size != ctypes.sizeof(Job):
        return None, (f"{name} was built for ABI {abi} with a {size}-byte Job, this vavl expects ABI {ABI_VERSION} with "
                      f"{ctypes.sizeof(Job)} bytes: rebuild it by reinstalling vavl with VAVL_BUILD_KERNEL=1")
    for fn in (lib.vavl_attention_forward, lib.vavl_attention_backward):
        fn.argtypes, fn.restype = [ctypes.POINTER(Job), _I64, ctypes.c_int, ctypes.c_int], ctypes.c_int
    lib.vavl_attention_keep.argtypes = [ctypes.c_uint32, _I64, _I64, _I64, ctypes.c_int32, ctypes.c_float, _F]
    lib.vavl_attention_keep.restype = None
    best = lib.vavl_attention_best_level()
    asked = os.environ.get("VAVL_NATIVE_ISA")
    if asked and asked not in LEVELS:
        return None, f"VAVL_NATIVE_ISA={asked!r} is not one of {', '.join(LEVELS)}"
    level = LEVELS.index(asked) if asked else best
    if level > best:
        return None, f"VAVL_NATIVE_ISA={asked}: this CPU runs {LEVELS[best]} at most"
    threads = "OpenMP" if lib.vavl_attention_openmp() else "one thread (built without OpenMP)"
    return Kernel(lib, level, lib.vavl_attention_max_width()), f"{name}, {LEVELS[level]} sweeps, {threads}"


@functools.cache
def load() -> tuple[Kernel | None, str]:
    """(the kernel, how it runs) or (None, why it cannot run here). Loaded once, after torch, so
    that the library binds to PyTorch's own OpenMP runtime."""
    if os.environ.get("VAVL_NATIVE", "1") == "0":
        return None, "turned off by VAVL_NATIVE=0"
    path = library_path()
    if path is None:
        return None, ("not built: it is opt-in; reinstall vavl with VAVL_BUILD_KERNEL=1 (and gcc or clang on PATH) "
                      "to get it")
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as err:
        return None, f"{path.name} does not load ({err}); reinstall vavl with VAVL_BUILD_KERNEL=1"
    return bind(lib, path.name)

"""vavl's compiled CPU kernel: fused attention for small heads (attention.c).

An optional C extension, built only on request (`VAVL_BUILD_KERNEL=1 pip install ...`; setup.py:
portable machine code, the ISA level picked at run time, OpenMP when the compiler has it). Nothing is
compiled, or loaded from anywhere but this folder, at run time. `attention` binds it and registers the
torch op `vavl::cpu_attention`; models reach it through `attn_implementation="cpu_kernel"` (or
"auto" with VAVL_ATTENTION=cpu_kernel; see vavl/nn/attention.py).
"""
from __future__ import annotations


def availability() -> tuple[bool, str]:
    """(whether the attention kernel can run here, how it runs or why it cannot)."""
    from .library import load

    kernel, reason = load()
    return kernel is not None, reason

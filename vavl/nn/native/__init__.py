"""vavl's compiled CPU kernel: fused attention for small heads (attention.c).

It is an optional C extension built at install time by the package build (setup.py: portable
machine code, the ISA level picked at run time, OpenMP when the compiler has it); an install
without a C compiler warns and leaves it out, and vavl then runs SDPA. Nothing is compiled, or
loaded from anywhere but this folder, at run time. `attention` binds it and registers the torch op
`vavl::cpu_attention`; models reach it through `attn_implementation` ("auto" or "cpu_kernel", see
vavl/attention.py).
"""
from __future__ import annotations


def availability() -> tuple[bool, str]:
    """(whether the attention kernel can run here, how it runs or why it cannot)."""
    from .library import load

    kernel, reason = load()
    return kernel is not None, reason

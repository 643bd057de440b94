"""Checking a `--device` value before any work starts: one line naming the option, not a traceback later;
which precision `--precision auto` means on this CPU (vavl.encoders.precision does the conversion)."""
from __future__ import annotations

from .errors import ConfigError

KINDS = ("cpu", "cuda", "mps")


def check_device(name: str, option: str = "--device") -> str:
    """"cpu", "cuda", "cuda:1", "mps" -> the same string, once the device is known to exist here."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None or device.type not in KINDS:
        raise ConfigError(f"{option} {name!r}: not a device; use cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{option} {name}: no CUDA device on this machine; use {option} cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{option} {name}: this machine has CUDA devices 0..{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option} {name}: MPS is not available here; use {option} cpu")
    return str(name)


PRECISIONS = ("fp32", "bf16", "int8", "auto")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")   # /proc/cpuinfo flags that make bf16 matmuls native


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _torch_bf16() -> tuple[list[str], str]:
    """torch's own detection (any OS): (["amx_bf16" and / or "avx512_bf16" where found], its CPU capability)."""
    try:
        import torch

        found = [name for name, ask in (("amx_bf16", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
                 if getattr(torch.cpu, ask, lambda: False)()]
        return found, torch.backends.cpu.get_cpu_capability()
    except Exception:   # a torch without these helpers
        return [], "unknown"


def cpu_bf16_support(flags: set[str] | None = None) -> tuple[bool, str]:
    """(native bf16 on this CPU?, why): the /proc/cpuinfo flags on Linux, torch's detection elsewhere
    (torch's "AVX512" capability alone does not mean bf16)."""
    flags = _cpu_flags() if flags is None else flags
    if flags:
        found = [f for f in BF16_FLAGS if f in flags]
        if found:
            return True, f"CPU flags {', '.join(found)}"
        return False, "no AMX / AVX-512 BF16 in the CPU flags: bf16 would be emulated, slower than fp32"
    found, capability = _torch_bf16()
    if found:
        return True, f"torch finds {', '.join(found)}"
    return False, f"torch finds no AMX / AVX-512 BF16 (CPU capability {capability})"


def resolve_precision(precision: str, device: str = "cpu", flags: set[str] | None = None) -> str:
    """fp32 | bf16 | int8 | auto -> fp32 | bf16 | int8. int8 (dynamic quantisation) runs on the CPU only;
    auto on a GPU is fp32 (use the GPU's own --bf16 there)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    kind = device.split(":")[0]
    if precision == "int8" and kind != "cpu":
        raise ConfigError(f"--precision int8 is dynamic quantisation for the CPU; on {device} use fp32 or bf16")
    if precision == "auto":
        return "bf16" if kind == "cpu" and cpu_bf16_support(flags)[0] else "fp32"
    return precision

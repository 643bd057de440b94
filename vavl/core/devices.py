"""Checking a `--device` value before any work starts: one line naming the option, not a traceback later."""
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

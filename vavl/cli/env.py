"""`vavl env`: what a bug report needs — versions, devices, the CPU attention kernel, cache folders.

    vavl env            # a table to paste into an issue
    vavl env --json     # the same, for machines

Versions come from the installed distributions' metadata (nothing heavy is imported for them);
torch itself is imported once, for its CUDA / cuDNN build and the devices it sees.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib import metadata
from typing import Any

# distribution names, in the order a report lists them
PACKAGES = ("vavl", "torch", "torchvision", "transformers", "timm", "accelerate", "facenet-pytorch",
            "av", "wandb", "huggingface_hub", "safetensors", "numpy")


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch_facts() -> dict[str, Any]:
    try:
        import torch
    except Exception as err:  # a broken install is what this command exists to report
        return {"import_error": f"{type(err).__name__}: {err}"}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    devices = [f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return {"cuda_build": torch.version.cuda, "cudnn": cudnn, "cuda_available": torch.cuda.is_available(),
            "devices": devices}


def _ffmpeg() -> str | None:
    try:
        import av
    except Exception as err:
        return f"PyAV does not import ({type(err).__name__}: {err})"
    libs = getattr(av, "library_versions", {}) or {}
    ffmpeg = getattr(av, "ffmpeg_version_info", None)
    parts = [f"FFmpeg {ffmpeg}"] if ffmpeg else []
    parts += [f"{name} {'.'.join(map(str, v))}" for name, v in sorted(libs.items()) if name in ("libavcodec", "libavformat")]
    return ", ".join(parts) or None


def _kernel() -> dict[str, Any]:
    from ..nn import native

    available, reason = native.availability()
    auto = os.environ.get("VAVL_ATTENTION") or "sdpa"
    return {"available": available, "reason": reason, "auto_attention": auto}


def _precision() -> dict[str, Any]:
    """What `--precision auto` picks on this CPU, and why."""
    from ..core.devices import cpu_bf16_support

    native, reason = cpu_bf16_support()
    return {"auto": "bf16" if native else "fp32", "reason": reason}


def _caches() -> dict[str, str]:
    """Where downloaded weights go (encoders from the Hugging Face hub; timm's too), and the
    environment variables that change what vavl does."""
    out = {}
    try:
        from huggingface_hub import constants

        out["huggingface_hub"] = str(constants.HF_HUB_CACHE)
    except Exception:
        pass
    out["torch_hub"] = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "WANDB_MODE", "VAVL_ATTENTION", "VAVL_NATIVE", "VAVL_NATIVE_ISA"):
        if os.environ.get(var) is not None:
            out[f"${var}"] = os.environ[var]
    return out


def versions() -> dict[str, Any]:
    """What needs no import of torch: Python, the platform, the packages' versions, PyAV's FFmpeg."""
    return {"python": sys.version.split()[0], "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
            "packages": {name: version(name) for name in PACKAGES}, "ffmpeg": _ffmpeg()}


def runtime() -> dict[str, Any]:
    """What torch is asked for (about a second to import): its build and devices, the kernel, caches."""
    return {"torch": _torch_facts(), "cpu_attention_kernel": _kernel(), "cpu_precision": _precision(), "caches": _caches()}


def collect() -> dict[str, Any]:
    """Everything `vavl env` prints, as plain data."""
    return {**versions(), **runtime()}


WIDTH = 24  # the name column of the table


def version_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("python", info["python"]), ("platform", info["platform"])]
    rows += [(name, v or "not installed") for name, v in info["packages"].items()]
    return rows + [("PyAV's FFmpeg", info["ffmpeg"] or "unknown")]


def runtime_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    t = info["torch"]
    if "import_error" in t:
        rows.append(("torch import", t["import_error"]))
    else:
        rows.append(("torch CUDA build", t["cuda_build"] or "none (CPU build)"))
        rows.append(("cuDNN", str(t["cudnn"]) if t["cudnn"] else "none"))
        rows.append(("devices", "; ".join(t["devices"])))
    k = info["cpu_attention_kernel"]
    rows.append(("CPU attention kernel", "available" + (f" ({k['reason']})" if k["reason"] else "")
                 if k["available"] else f"not available: {k['reason']}"))
    rows.append(("attention \"auto\"", k["auto_attention"] + ("" if os.environ.get("VAVL_ATTENTION") else
                                                              " (set VAVL_ATTENTION=cpu_kernel to opt in to the kernel)")))
    p = info.get("cpu_precision")
    if p:
        rows.append(("precision \"auto\" (CPU)", f"{p['auto']} ({p['reason']})"))
    return rows + [(f"cache: {name}", path) for name, path in info["caches"].items()]


def format_rows(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"- {name.ljust(WIDTH)}  {value}" for name, value in rows)


def format_report(info: dict[str, Any]) -> str:
    return format_rows(version_rows(info) + runtime_rows(info))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(collect(), indent=2))
        return 0
    print(format_rows(version_rows(versions())), flush=True)   # at once; torch's facts follow
    print(format_rows(runtime_rows(runtime())))
    return 0

"""C kernels compiled on first use with the machine's C compiler and loaded with ctypes.

Each kernel is one C file next to this module, built with `-O3 -march=native` into
`$VAVL_CACHE/native` (default `~/.cache/vavl/native`) under a name that hashes the source, the
compiler, the flags and the CPU's feature flags, so a shared home directory never hands one CPU
another's build. The build writes to a temporary file and renames it into place, so processes
that start together never load half a library; where the cache cannot be written, the build goes
to the temporary directory. Where there is no compiler, or the build fails,
`load` returns None (with one warning) and callers keep their PyTorch path. `VAVL_NATIVE=0`
turns the kernels off.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

FLAGS = ("-O3", "-march=native", "-fPIC", "-shared")
THREADS = ("-fopenmp",)  # tried first; without OpenMP a kernel runs on one thread


def cache_dir() -> Path:
    root = os.environ.get("VAVL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "vavl")
    return Path(root) / "native"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build(name: str, out_dir: Path | None = None) -> Path:
    """Compile `name`.c (next to this file) unless an up-to-date build is cached -> the .so path.
    Raises RuntimeError with the compiler's message when it cannot."""
    source = Path(__file__).with_name(f"{name}.c")
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc / clang)")
    key = hashlib.sha256("\0".join([source.read_text(), compiler, *FLAGS, *THREADS, _cpu_flags()]).encode()).hexdigest()[:16]
    out_dir = out_dir or cache_dir()
    lib = out_dir / f"{name}-{key}.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        for extra in (THREADS, ()):
            try:
                done = subprocess.run([compiler, *FLAGS, *extra, str(source), "-o", tmp, "-lm"], capture_output=True, text=True)
            except OSError as err:
                raise RuntimeError(f"cannot run the C compiler {compiler!r} ({err}); set CC to a working one") from err
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"{compiler} could not build {source}:\n{done.stderr.strip()}")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


@functools.cache
def load(name: str) -> ctypes.CDLL | None:
    """The compiled kernel library `name`, or None where it is turned off or cannot be built."""
    if os.environ.get("VAVL_NATIVE", "1") == "0":
        return None
    try:
        try:
            path = build(name)
        except OSError:  # the cache cannot be written (read-only home, say): build in the temp directory
            path = build(name, Path(tempfile.gettempdir()) / f"vavl-native-{getattr(os, 'getuid', lambda: 0)()}")
        return ctypes.CDLL(str(path))
    except (OSError, RuntimeError) as err:
        warnings.warn(f"vavl: the C kernel '{name}' is not available, using the slower PyTorch path ({err})", stacklevel=2)
        return None


def availability() -> tuple[bool, str]:
    """(whether the attention kernel can be used here, why not / how it was built)."""
    if os.environ.get("VAVL_NATIVE", "1") == "0":
        return False, "turned off by VAVL_NATIVE=0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            path = build("attention")
        except (OSError, RuntimeError) as err:
            return False, str(err).splitlines()[0]
    return True, f"built at {path}"

"""Writing files so that nothing is lost or half-written: atomic writes (a temporary file in the
same folder, renamed into place) that end with the permissions the user's umask gives a new file
(`tempfile.mkstemp` alone leaves them 0600, unreadable to colleagues on a shared server), writes
that fail for lack of space or permission as one line naming the file, and output folders checked
before any long work starts."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import DataError


def umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status;
    elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_mode(path: str | os.PathLike) -> None:
    """Give a file the mode a plain `open(path, "w")` would have: 0666 less the umask."""
    os.chmod(path, 0o666 & ~umask())


def public_modes(folder: str | os.PathLike, pattern: str = "*.safetensors") -> None:
    """public_mode for the files in `folder` matching `pattern`: safetensors' save_file (and so
    transformers' save_pretrained) creates its files 0600 whatever the umask."""
    for path in Path(folder).glob(pattern):
        if path.is_file():
            public_mode(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to `path`; when the block ends without an error it is given
    the umask's permissions and renamed to `path`, otherwise removed. A write that fails with an
    OS error (a full disk, a read-only folder) becomes a DataError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:80]}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        yield tmp
        public_mode(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically, with the umask's permissions."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return Path(path)


def write_error(path: str | os.PathLike, e: OSError) -> DataError:
    """An OSError from writing `path` as one line saying what to do."""
    hint = {errno.ENOSPC: "the disk is full: free some space and run again",
            errno.EDQUOT: "the disk quota is exceeded: free some space and run again",
            errno.EFBIG: "the file is larger than this system allows (ulimit -f?)",
            errno.EROFS: "the file system is read-only: write somewhere else",
            errno.EACCES: "no permission to write there: write somewhere else",
            errno.EPERM: "no permission to write there: write somewhere else",
            errno.ENAMETOOLONG: "the file name is too long"}.get(e.errno, "")
    reason = e.strerror or type(e).__name__
    return DataError(f"{path}: could not write ({reason}){'; ' + hint if hint else ''}")


def check_output_dir(folder: str | os.PathLike, what: str = "output folder", create: bool = True) -> Path:
    """Prove, before any long work, that files can be written in `folder`: a DataError naming the
    folder otherwise (a file in the way, read-only, no permission). create=False: a folder that
    does not exist yet is left uncreated; the nearest existing folder above it must be writable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: the {what} is a file, not a folder; give a folder path")
    if not folder.exists() and not create:
        parent = next((p for p in folder.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise DataError(f"{folder}: the {what} cannot be created ({parent} is not a folder you can write to); "
                            "give a folder you can write to")
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".vavl-write-check.", suffix=".tmp")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise DataError(f"{folder}: the {what} cannot be written ({reason}); give a folder you can write to") from None
    return folder

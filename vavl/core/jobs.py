"""What the batch commands (`vavl predict`, `vavl extract`) share: exit codes, output paths checked
before the work starts, one-line reasons for failed items, and a log file that takes the
tracebacks of unexpected errors (the console gets one line per item, never a traceback)."""
from __future__ import annotations

import os
import traceback
from pathlib import Path

from .errors import ConfigError, VavlError

OK, NOTHING_USABLE, SOME_FAILED = 0, 2, 3
EXIT_CODES = ("exit codes: 0 every {items} processed; 2 bad arguments, or not one {items} could be used; "
              "3 some {items}s failed (each listed with its reason, the others processed)")


def exit_code(done: int, failed: int) -> int:
    """0 nothing failed; 3 some failed; 2 every item failed."""
    if not failed:
        return OK
    return SOME_FAILED if done else NOTHING_USABLE


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """A file the command writes at the end: its folder must exist and be writable now."""
    p = Path(path)
    folder = p.parent
    if p.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {path}: cannot write in {folder}; choose another place")
    return p


def is_expected(e: BaseException) -> bool:
    """Errors that mean "this input is bad" and explain themselves in one line."""
    import av

    return isinstance(e, (VavlError, OSError, av.error.FFmpegError))


def error_line(e: BaseException) -> str:
    """A vavl error's own line, also when a DataLoader worker raised it (torch re-raises it with
    "Caught X in DataLoader worker process N" and the worker's traceback in the message)."""
    text = str(e).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].endswith(type(e).__name__) else last
    return text


def describe(item: str, e: BaseException) -> tuple[str, str | None]:
    """Why `item` failed, in one line, and the traceback when the error was unexpected (else None)."""
    first = (str(e).strip().splitlines() or [""])[0][:300]
    if is_expected(e):
        return (first if isinstance(e, VavlError) and item in first else f"{item}: {first or type(e).__name__}"), None
    return f"{item}: unexpected error ({type(e).__name__}: {first})", "".join(traceback.format_exception(e))


class ErrorLog:
    """Tracebacks of unexpected errors, one block per item; the file is created on first use.
    exclusive=True (a default path in a shared temporary folder): the file is created new, never
    through a link or over a file someone else put there (then a fresh name is taken). A log that
    cannot be written costs the traceback, never the item's line."""

    def __init__(self, path: str | os.PathLike, exclusive: bool = False):
        self.path, self.count, self.exclusive = Path(path), 0, exclusive

    def _open(self):
        if self.count:
            return open(self.path, "a", encoding="utf-8")
        if not self.exclusive:
            return open(self.path, "w", encoding="utf-8")
        try:
            return open(self.path, "x", encoding="utf-8")   # O_CREAT | O_EXCL: fails on any existing name, links too
        except FileExistsError:
            import tempfile

            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.stem + "-", suffix=self.path.suffix)
            self.path = Path(name)
            return os.fdopen(fd, "w", encoding="utf-8")

    def record(self, item: str, line: str, trace: str | None) -> str:
        """`line`, plus where its traceback went when there is one."""
        if trace is None:
            return line
        try:
            with self._open() as f:
                f.write(f"==== {item}\n{trace.rstrip()}\n\n")
        except OSError as e:   # a full disk: the item's line still says what happened
            return f"{line}; its traceback could not be written to {self.path} ({e.strerror or type(e).__name__})"
        self.count += 1
        return f"{line}; traceback in {self.path}"

"""Feature caches: encoder outputs per clip, on disk, read lazily.

A cache is a folder:

    cache.json                  the encoders and settings the features came from
    clips/<id>.safetensors      one file per clip: "audio" (ta, da) and/or "visual" (tv, dv),
                                clip metadata (JSON) in the safetensors header
    index.jsonl                 one line per clip: id, file, frame counts, metadata

A clip file appears only complete (written to a temp file, then renamed), so a killed run leaves
no half-written clip: `has(id)` is "the file exists". The index is rebuilt from the files' headers
(`rebuild_index`), so several processes can fill one cache and one of them writes the index.

Nothing wrong is read silently. A clip's file name is its id made safe plus a hash of the id (so
two ids never share a file), and the header records the id, which a read checks. The header also
holds a sha256 of the tensors (also in index.jsonl), checked on every read, and features that are
not finite (NaN / inf) are refused when written and when read. A file damaged later (a copy cut
short, a flipped bit) is named in a DataError; `vavl extract` checks every file when it starts
again (`remove_invalid`), removes the bad ones and computes them again. Caches written before
checksums (file name without the hash for plain ids, no sha256) are still read.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..core.errors import DataError
from ..core.files import atomic_path, atomic_write_text
from .collate import collate, encode_labels

SETTINGS = "cache.json"
INDEX = "index.jsonl"
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
NAME_CHARS = 100   # of the id kept in a file name (the hash keeps longer ids apart)


class FeatureCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.clips = self.root / "clips"
        self._index: dict[str, dict[str, Any]] | None = None

    # -- settings -------------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        path = self.root / SETTINGS
        return json.loads(path.read_text()) if path.is_file() else {}

    def init(self, settings: dict[str, Any]) -> None:
        """Create the cache for `settings`, or check that an existing one was made with the same."""
        settings = json.loads(json.dumps(settings))   # as stored: tuples become lists
        current = self.settings
        if current and current != settings:
            changed = sorted(k for k in set(current) | set(settings) if current.get(k) != settings.get(k))
            raise DataError(f"{self.root}: this cache was made with other settings ({', '.join(changed)}: "
                            f"{[current.get(k) for k in changed]} vs {[settings.get(k) for k in changed]}); "
                            "write to another --out folder")
        self.clips.mkdir(parents=True, exist_ok=True)
        if not current:
            atomic_write_text(self.root / SETTINGS, json.dumps(settings, indent=2, sort_keys=True) + "\n")

    # -- clips ----------------------------------------------------------------------------
    def path(self, clip_id: str) -> Path:
        """clips/<id made safe>-<hash of the id>.safetensors: distinct ids never share a file."""
        safe = UNSAFE.sub("_", clip_id)[:NAME_CHARS].lstrip(".")
        return self.clips / f"{safe}-{hashlib.sha1(clip_id.encode()).hexdigest()[:16]}.safetensors"

    def _legacy_path(self, clip_id: str) -> Path:
        """Where caches written before the hash suffix became constant keep a clip."""
        safe = UNSAFE.sub("_", clip_id)
        if safe != clip_id or not safe.strip("."):
            safe = f"{safe}-{hashlib.sha1(clip_id.encode()).hexdigest()[:10]}"
        return self.clips / f"{safe}.safetensors"

    def locate(self, clip_id: str) -> Path | None:
        """The clip's file, or None. An older cache's file counts only when its header names this id."""
        path = self.path(clip_id)
        if path.is_file():
            return path
        old = self._legacy_path(clip_id)
        if old != path and _is_file(old):
            try:
                if _header(old)[0]["id"] == clip_id:
                    return old
            except DataError:
                return old   # damaged: reading it says so
        return None

    def has(self, clip_id: str) -> bool:
        return self.locate(clip_id) is not None

    def write(self, clip_id: str, audio: torch.Tensor | None, visual: torch.Tensor | None,
              meta: dict[str, Any] | None = None) -> Path:
        """Store (ta, da) audio and (tv, dv) visual features (either may be None) atomically, with a
        checksum; non-finite features are refused (DataError)."""
        tensors = {}
        for name, x in (("audio", audio), ("visual", visual)):
            if x is not None:
                if x.ndim != 2:
                    raise DataError(f"{clip_id}: {name} features must be (t, d), got {tuple(x.shape)}")
                x = x.detach().to("cpu").contiguous()
                if not _finite(x):
                    raise DataError(f"{clip_id}: {name} features are not finite (NaN / inf); not cached")
                tensors[name] = x
        if not tensors:   # a clip with neither modality still records that it was processed
            tensors = {"empty": torch.zeros(0)}
        header = {"id": clip_id, "meta": json.dumps(meta or {}), "sha256": checksum(tensors)}
        path = self.path(clip_id)
        self.clips.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=header)
        old = self._legacy_path(clip_id)
        if old != path and _is_file(old):   # an older cache's copy of this clip: replaced by the new file
            try:
                if _header(old)[0]["id"] == clip_id:
                    old.unlink(missing_ok=True)
            except DataError:
                pass
        return path

    def read(self, clip_id: str) -> dict[str, Any]:
        path = self.locate(clip_id)
        if path is None:
            raise DataError(f"{self.root}: no features for clip {clip_id!r}; run `vavl extract` for it")
        return read_clip_file(path, clip_id)

    def ids(self) -> list[str]:
        return list(self.index())

    # -- index ----------------------------------------------------------------------------
    def index(self) -> dict[str, dict[str, Any]]:
        """clip id -> index entry, from index.jsonl (rebuilt from the files when absent or stale)."""
        if self._index is None:
            path = self.root / INDEX
            if path.is_file():
                with open(path, encoding="utf-8") as f:
                    self._index = {e["id"]: e for e in map(json.loads, f)}
            if self._index is None or len(self._index) != self._count_files():
                self._index = self.rebuild_index()
        return self._index

    def rebuild_index(self) -> dict[str, dict[str, Any]]:
        """Read every clip file's header and write index.jsonl atomically."""
        entries = {}
        for path in self._files():
            try:
                header, shapes = _header(path)
            except DataError as e:
                raise DataError(f"{e}; delete it (or run `vavl extract` again, which removes such files)") from None
            entries[header["id"]] = {"id": header["id"], "file": f"clips/{path.name}",
                                     "audio_frames": shapes.get("audio", [0])[0],
                                     "visual_frames": shapes.get("visual", [0])[0],
                                     "meta": header["meta"], "sha256": header["sha256"]}
        self._index = entries   # kept even when the write below fails (a full disk)
        atomic_write_text(self.root / INDEX, "".join(json.dumps(e) + "\n" for e in entries.values()))
        return entries

    def remove_invalid(self) -> list[tuple[str, str]]:
        """Read every clip file whole and delete those that are damaged (unreadable, checksum
        mismatch, non-finite values, or a file that is not where its id belongs); call only while
        no one writes. Returns (file name, reason) of each removed file."""
        removed = []
        for path in self._files():
            try:
                header, _ = _header(path)
                if path not in (self.path(header["id"]), self._legacy_path(header["id"])):
                    raise DataError(f"{path}: holds clip {header['id']!r}, whose file is {self.path(header['id']).name}")
                read_clip_file(path, header["id"])
            except DataError as e:
                path.unlink(missing_ok=True)
                removed.append((path.name, str(e)))
        return removed

    def remove_unreadable(self) -> list[str]:
        """remove_invalid, file names only."""
        return [name for name, _ in self.remove_invalid()]

    def _files(self) -> list[Path]:
        return sorted(self.clips.glob("*.safetensors")) if self.clips.is_dir() else []

    def remove_temp_files(self, own: bool = False) -> int:
        """Delete temp files a killed writer left behind (call only while no one else writes: under
        `vavl extract`'s lock). own=True: only this process's (their names carry its pid)."""
        pattern = f".*.{os.getpid()}.*.tmp" if own else ".*.tmp"
        stale = list(self.clips.glob(pattern)) if self.clips.is_dir() else []
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return len(stale)

    def _count_files(self) -> int:
        return sum(1 for _ in self.clips.glob("*.safetensors")) if self.clips.is_dir() else 0


class CacheLock:
    """An exclusive lock on a cache folder (fcntl.flock on <cache>/.lock, released by the OS when
    the process ends however it ends): a second writer refuses in one line instead of doing the
    same work twice and deleting the first one's temporary files."""

    NAME = ".lock"

    def __init__(self, root: str | os.PathLike):
        self.path, self.fd = Path(root) / self.NAME, None

    def acquire(self) -> "CacheLock":
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataError(f"{self.path.parent}: another `vavl extract` (pid {holder}) is writing to this cache; "
                            "wait for it to finish, then run again (it resumes), or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> "CacheLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class BackgroundWriter:
    """FeatureCache.write on a background thread behind a bounded queue, so whoever computes the
    features (a GPU) never waits on the disk. Each write stays atomic; a write that fails is that
    clip's failure, reported as on_error(clip_id, exception). close() waits for every queued
    write and returns how many succeeded."""

    def __init__(self, cache: FeatureCache, on_error, depth: int = 64):
        import queue
        import threading

        self.cache, self.on_error, self.written = cache, on_error, 0
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name="vavl-cache-writer", daemon=True)
        self.thread.start()

    def write(self, clip_id: str, audio: torch.Tensor | None, visual: torch.Tensor | None, meta: dict[str, Any]) -> None:
        if not self.thread.is_alive():
            raise RuntimeError("the cache writer thread is not running (closed)")
        self.queue.put((clip_id, audio, visual, meta))   # blocks while `depth` clips wait

    def close(self) -> int:
        self.queue.put(None)
        self.thread.join()
        return self.written

    def _run(self) -> None:
        while (job := self.queue.get()) is not None:
            try:
                self.cache.write(*job)
                self.written += 1
            except Exception as e:   # this clip only
                self.on_error(job[0], e)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:   # e.g. a name too long for the file system: an older cache could not have it
        return False


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        x = tensors[name].contiguous()
        h.update(f"{name}:{x.dtype}:{list(x.shape)};".encode())
        if x.numel():
            h.update(x.reshape(-1).view(torch.uint8).numpy())   # the tensor's own buffer, not a copy
    return h.hexdigest()


def _finite(x: torch.Tensor) -> bool:
    """All values finite. numpy's check: torch's spins up threads, which costs far more on a busy machine."""
    if x.dtype in (torch.float32, torch.float64, torch.float16):
        import numpy as np

        return bool(np.isfinite(x.numpy()).all())
    return bool(torch.isfinite(x.float()).all()) if x.is_floating_point() else True


def _header(path: Path) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """A clip file's header ({"id", "meta", "sha256"}) and tensor shapes; DataError naming the file if unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        return {"id": header["id"], "meta": json.loads(header.get("meta", "{}")), "sha256": header.get("sha256")}, shapes
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: unreadable clip file ({reason})") from None


def read_clip_file(path: str | os.PathLike, clip_id: str | None = None) -> dict[str, Any]:
    """One clip file -> {"audio_features", "visual_features", "meta"} (tensors float32 or None),
    checked: the id in the header is `clip_id` (when given), the tensors match the header's
    checksum (files written before checksums have none) and are finite. DataError naming the file
    otherwise. safetensors memory-maps the file and copies out only the tensors asked for."""
    redo = "run `vavl extract` again to recompute it"
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(header.get("meta", "{}"))
    except (SafetensorError, OSError, ValueError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: unreadable clip file ({reason}); {redo}") from None
    if clip_id is not None and header.get("id") != clip_id:
        raise DataError(f"{path}: holds the features of clip {header.get('id')!r}, not {clip_id!r}; {redo}")
    if header.get("sha256") is not None and checksum(tensors) != header["sha256"]:
        raise DataError(f"{path}: damaged clip file (its features do not match their checksum); {redo}")
    out = {f"{m}_features": tensors[m].float() if m in tensors else None for m in ("audio", "visual")}
    for m in ("audio", "visual"):
        x = out[f"{m}_features"]
        if x is not None and not _finite(x):
            raise DataError(f"{path}: the {m} features are not finite (NaN / inf); {redo}")
    out["meta"] = meta
    return out


class FeatureDataset(torch.utils.data.Dataset):
    """Manifest records joined with their cached features, read lazily per item.

    Records without cached features are left out (reported once). Batch with `collate`
    (`FeatureDataset.collate` is the same function): masks mark real frames, a missing modality
    is an all-false row.
    """

    collate = staticmethod(collate)

    def __init__(self, cache: FeatureCache | str | os.PathLike, records: list[dict[str, Any]], config=None):
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        self.config = config
        files = {r["id"]: self.cache.locate(r["id"]) for r in records}
        self.records = [r for r in records if files[r["id"]] is not None]
        self.missing = [r["id"] for r in records if files[r["id"]] is None]
        if self.missing:
            import warnings

            warnings.warn(f"{self.cache.root}: {len(self.missing)} of {len(records)} clips have no cached features "
                          f"and are left out, e.g. {', '.join(self.missing[:5])}", stacklevel=2)
        if not self.records:
            raise DataError(f"{self.cache.root}: none of the {len(records)} clips has cached features; "
                            "run `vavl extract` with this manifest first")
        self._files = [str(files[r["id"]]) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        _fixed_mmap_threshold()
        record = self.records[i]
        clip = read_clip_file(self._files[i], record["id"])
        return {
            "id": record["id"], "speaker": record.get("speaker"),
            "audio_features": clip["audio_features"], "visual_features": clip["visual_features"],
            "labels": encode_labels(record, self.config) if self.config is not None else None,
            "record": record,
        }


def loader_options(num_workers: int, pin_memory: bool = False) -> dict[str, Any]:
    """DataLoader settings that keep a GPU fed from a cache: pinned memory (for copies that do not
    block), and with workers, workers kept between epochs that read a few batches ahead."""
    if num_workers < 0:
        raise DataError(f"num_workers={num_workers}: give 0 (read in the training process) or more")
    ahead = {"persistent_workers": True, "prefetch_factor": 4} if num_workers else {}
    return {"num_workers": num_workers, "pin_memory": pin_memory, **ahead}


_MALLOC_SET_IN: int | None = None


def _fixed_mmap_threshold() -> None:
    """Once per process: glibc raises its mmap threshold after large frees, so a DataLoader
    worker's heap grows with every batch it builds (peak RSS then grows with the corpus); a fixed
    threshold hands large tensor buffers back to the OS when freed. No-op off glibc."""
    global _MALLOC_SET_IN
    if _MALLOC_SET_IN == os.getpid():
        return
    _MALLOC_SET_IN = os.getpid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)   # M_MMAP_THRESHOLD = 128 KiB
    except (OSError, AttributeError):
        pass

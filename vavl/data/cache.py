"""Feature caches: encoder outputs per clip, on disk, read lazily.

A cache is a folder:

    cache.json                  the encoders and settings the features came from
    clips/<id>.safetensors      one file per clip: "audio" (ta, da) and/or "visual" (tv, dv),
                                clip metadata (JSON) in the safetensors header
    index.jsonl                 one line per clip: id, file, frame counts, metadata

A clip file appears only complete (written to a temp file, then renamed), so a killed run leaves
no half-written clip: `has(id)` is "the file exists". The index is rebuilt from the files' headers
(`rebuild_index`), so several processes can fill one cache and one of them writes the index. A
file damaged later (a copy cut short) is named in a DataError; `vavl extract` removes such files
(`remove_unreadable`) and computes them again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..core.errors import DataError
from .collate import collate, encode_labels

SETTINGS = "cache.json"
INDEX = "index.jsonl"
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


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
            _atomic_write(self.root / SETTINGS, json.dumps(settings, indent=2, sort_keys=True) + "\n")

    # -- clips ----------------------------------------------------------------------------
    def path(self, clip_id: str) -> Path:
        """clips/<id>.safetensors; ids with characters unsafe in file names get a hash suffix."""
        safe = UNSAFE.sub("_", clip_id)
        if safe != clip_id or not safe.strip("."):
            safe = f"{safe}-{hashlib.sha1(clip_id.encode()).hexdigest()[:10]}"
        return self.clips / f"{safe}.safetensors"

    def has(self, clip_id: str) -> bool:
        return self.path(clip_id).is_file()

    def write(self, clip_id: str, audio: torch.Tensor | None, visual: torch.Tensor | None,
              meta: dict[str, Any] | None = None) -> Path:
        """Store (ta, da) audio and (tv, dv) visual features (either may be None) atomically."""
        tensors = {}
        for name, x in (("audio", audio), ("visual", visual)):
            if x is not None:
                if x.ndim != 2:
                    raise DataError(f"{clip_id}: {name} features must be (t, d), got {tuple(x.shape)}")
                tensors[name] = x.detach().to("cpu").contiguous()
        header = {"id": clip_id, "meta": json.dumps(meta or {})}
        path = self.path(clip_id)
        self.clips.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.clips, prefix=f".{path.stem}.", suffix=".tmp")
        os.close(fd)
        try:
            if tensors:
                save_file(tensors, tmp, metadata=header)
            else:   # a clip with neither modality still records that it was processed
                save_file({"empty": torch.zeros(0)}, tmp, metadata=header)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    def read(self, clip_id: str) -> dict[str, Any]:
        path = self.path(clip_id)
        if not path.is_file():
            raise DataError(f"{self.root}: no features for clip {clip_id!r}; run `vavl extract` for it")
        return read_clip_file(path)

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
                                     "meta": header["meta"]}
        _atomic_write(self.root / INDEX, "".join(json.dumps(e) + "\n" for e in entries.values()))
        self._index = entries
        return entries

    def remove_unreadable(self) -> list[str]:
        """Delete clip files whose header cannot be read (call only while no one writes); returns their names."""
        removed = []
        for path in self._files():
            try:
                _header(path)
            except DataError:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def _files(self) -> list[Path]:
        return sorted(self.clips.glob("*.safetensors")) if self.clips.is_dir() else []

    def remove_temp_files(self) -> int:
        """Delete temp files a killed writer left behind (call only while no one writes)."""
        stale = list(self.clips.glob(".*.tmp")) if self.clips.is_dir() else []
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return len(stale)

    def _count_files(self) -> int:
        return sum(1 for _ in self.clips.glob("*.safetensors")) if self.clips.is_dir() else 0


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


def _header(path: Path) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """A clip file's header ({"id", "meta"}) and tensor shapes; DataError naming the file if unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        return {"id": header["id"], "meta": json.loads(header.get("meta", "{}"))}, shapes
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: unreadable clip file ({reason})") from None


def read_clip_file(path: str | os.PathLike) -> dict[str, Any]:
    """One clip file -> {"audio_features", "visual_features", "meta"} (tensors float32 or None).
    safetensors memory-maps the file and copies out only the tensors asked for."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            keys = set(f.keys())
            out = {f"{m}_features": f.get_tensor(m).float() if m in keys else None for m in ("audio", "visual")}
        out["meta"] = json.loads(header.get("meta", "{}"))
    except (SafetensorError, OSError, ValueError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: unreadable clip file ({reason}); run `vavl extract` again to recompute it") from None
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
        self.records = [r for r in records if self.cache.has(r["id"])]
        self.missing = [r["id"] for r in records if not self.cache.has(r["id"])]
        if self.missing:
            import warnings

            warnings.warn(f"{self.cache.root}: {len(self.missing)} of {len(records)} clips have no cached features "
                          f"and are left out, e.g. {', '.join(self.missing[:5])}", stacklevel=2)
        if not self.records:
            raise DataError(f"{self.cache.root}: none of the {len(records)} clips has cached features; "
                            "run `vavl extract` with this manifest first")
        self._files = [str(self.cache.path(r["id"])) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        _fixed_mmap_threshold()
        record = self.records[i]
        clip = read_clip_file(self._files[i])
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


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)

"""Manifests: one JSON object per clip per line.

    {"id": "1001_DFA_ANG_XX", "speaker": "1001", "gender": "male",
     "audio": "/data/AudioWAV/1001_DFA_ANG_XX.wav", "video": "/data/VideoFlash/1001_DFA_ANG_XX.flv",
     "label": "angry", "attributes": null, "label_distribution": {"angry": 0.8, "neutral": 0.2},
     "folds": {"speaker-5fold": 0, "vavl-1": "train"}}

`audio` / `video` may be null (that modality is missing). Relative paths are read relative to
the manifest's folder. `label` is null when raters tied. `folds` maps a protocol to the clip's
test fold index (k-fold protocols) or its split ("train" / "dev" / "test").
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..core.errors import DataError
from ..core.files import atomic_path
from .protocols import refuse_speaker_overlap

REQUIRED = ("id",)
SPLITS = ("train", "dev", "test")
MAX_ID = 1000   # characters; clip ids appear in one-line messages and (hashed) in cache file names


def write_manifest(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write atomically (temp file + rename): a killed run never leaves half a manifest."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and check a manifest; media paths come back absolute."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; create one with `vavl prepare`")
    base = path.resolve().parent
    records, seen = [], set()
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{n}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                "save the manifest as UTF-8") from None
            if n == 1:
                line = line.removeprefix("\ufeff")   # a byte-order mark some editors write
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg}); each line must be one JSON object") from None
            if not isinstance(rec, dict) or any(k not in rec for k in REQUIRED):
                raise DataError(f"{path}:{n}: each line needs at least the keys {REQUIRED}")
            _check_record(rec, f"{path}:{n}")
            if rec["id"] in seen:
                raise DataError(f"{path}:{n}: clip id {rec['id']!r} appears twice")
            seen.add(rec["id"])
            for key in ("audio", "video"):
                p = rec.get(key)
                if p and not os.path.isabs(p):
                    rec[key] = str(base / p)
            if rec.get("folds") is None:
                rec["folds"] = {}
            records.append(rec)
    if not records:
        raise DataError(f"{path}: manifest has no clips")
    return records


def _check_record(rec: dict[str, Any], where: str) -> None:
    """The fields every command relies on, with their types: one line naming file:line otherwise."""
    clip_id = rec["id"]
    if not isinstance(clip_id, str) or not clip_id.strip():
        raise DataError(f"{where}: \"id\" must be a non-empty string, got {_shown(clip_id)}")
    if len(clip_id) > MAX_ID:
        raise DataError(f"{where}: \"id\" is {len(clip_id)} characters long; use at most {MAX_ID}")
    if any(ord(c) < 32 or ord(c) == 127 for c in clip_id):
        raise DataError(f"{where}: \"id\" {clip_id[:60]!r} holds control characters (a line break, a tab...); remove them")
    for key in ("audio", "video"):
        value = rec.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise DataError(f"{where}: \"{key}\" must be a file path (a string) or null, got {_shown(value)}")
        if isinstance(value, str) and "\x00" in value:
            raise DataError(f"{where}: \"{key}\" holds a NUL character; give a file path")
    if rec.get("folds") is not None and not isinstance(rec["folds"], dict):
        raise DataError(f"{where}: \"folds\" must be an object mapping a protocol to a split or fold, "
                        f"got {_shown(rec['folds'])}")


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}" if value is not None else "null"


def split_records(records: list[dict[str, Any]], protocol: str, fold: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """train / dev / test lists under a protocol.

    Split protocols (values "train"/"dev"/"test", e.g. "vavl-1"): taken as written; clips
    without the key are left out. Fold protocols (integer test-fold index, e.g.
    "speaker-5fold"): test = `fold`, dev = the next fold, train = the rest.

    A protocol that puts a speaker in two of its parts is refused (vavl.data.protocols) unless
    its name ends in "-speaker-overlap" (what `vavl prepare --allow-speaker-overlap` names it):
    recipes and `vavl evaluate` split through here, so a leaky protocol stops them at the start.
    """
    refuse_speaker_overlap(records, protocol)
    values = [r["folds"].get(protocol) for r in records]
    known = [v for v in values if v is not None]
    if not known:
        raise DataError(f"no clip in the manifest has a fold for protocol {protocol!r}; "
                        f"known protocols: {sorted({p for r in records for p in r['folds']})}")
    out: dict[str, list] = {s: [] for s in SPLITS}
    if all(isinstance(v, str) for v in known):
        for r, v in zip(records, values):
            if v in out:
                out[v].append(r)
        return out
    n_folds = max(int(v) for v in known) + 1
    if fold is None or not 0 <= fold < n_folds:
        raise DataError(f"protocol {protocol!r} has folds 0..{n_folds - 1}; choose one with fold=N (got {fold})")
    dev = (fold + 1) % n_folds
    for r, v in zip(records, values):
        if v is None:
            continue
        out["test" if v == fold else "dev" if v == dev else "train"].append(r)
    return out

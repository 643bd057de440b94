"""Protocols that refuse speaker leaks.

A protocol is speaker-independent when no speaker has clips in two of its parts: two of train /
dev / test (split protocols, e.g. "vavl-1") or two folds (k-fold protocols, e.g. "speaker-5fold":
every fold is the test set once, so a speaker in two folds is tested on a model trained on them).
Clips without a speaker (unknown) are not counted: vavl never invents a speaker.

`check_protocols` refuses a leaky protocol with one line naming the speakers. With
`allow_overlap=True` the protocol is kept under a name that says so,
`<protocol>-speaker-overlap`, so every result computed on it carries that in its protocol name.
"""
from __future__ import annotations

from typing import Any

from ..core.errors import DataError

OVERLAP = "-speaker-overlap"
SHOW = 8


def overlapping_speakers(records: list[dict[str, Any]], protocol: str) -> dict[str, list]:
    """speaker -> the parts (splits or folds) it has clips in, for speakers in more than one."""
    parts: dict[str, set] = {}
    for r in records:
        value = (r.get("folds") or {}).get(protocol)
        if value is None or r.get("speaker") in (None, ""):
            continue
        parts.setdefault(str(r["speaker"]), set()).add(value)
    return {s: sorted(p, key=str) for s, p in sorted(parts.items()) if len(p) > 1}


def describe(shared: dict[str, list]) -> str:
    items = [f"{s} ({', '.join(map(str, p))})" for s, p in list(shared.items())[:SHOW]]
    return ", ".join(items) + (f" and {len(shared) - SHOW} more" if len(shared) > SHOW else "")


def check_protocols(records: list[dict[str, Any]], allow_overlap: bool = False, source: str = "manifest") -> list[str]:
    """Refuse (DataError) a protocol that puts a speaker in two parts, or with `allow_overlap`
    rename it `<name>-speaker-overlap` in every record. Returns the renamed protocols."""
    protocols = sorted({p for r in records for p in (r.get("folds") or {})})
    renamed = []
    for protocol in protocols:
        if protocol.endswith(OVERLAP):
            continue
        shared = overlapping_speakers(records, protocol)
        if not shared:
            continue
        if not allow_overlap:
            raise DataError(f"{source}: protocol {protocol!r} puts {len(shared)} speaker(s) in more than one of its "
                            f"parts: {describe(shared)}; fix the split, or pass --allow-speaker-overlap to keep it "
                            f"as {protocol + OVERLAP!r}")
        for r in records:
            folds = r.get("folds") or {}
            if protocol in folds:
                folds[protocol + OVERLAP] = folds.pop(protocol)
        renamed.append(protocol + OVERLAP)
    return renamed


def refuse_speaker_overlap(records: list[dict[str, Any]], protocol: str, source: str = "manifest") -> None:
    """DataError naming the shared speakers when `protocol` (not named *-speaker-overlap) leaks."""
    if protocol.endswith(OVERLAP):
        return
    shared = overlapping_speakers(records, protocol)
    if shared:
        raise DataError(f"{source}: protocol {protocol!r} puts {len(shared)} speaker(s) in more than one of its parts: "
                        f"{describe(shared)}; re-run `vavl prepare` with a speaker-independent split, or with "
                        f"--allow-speaker-overlap to name it {protocol + OVERLAP!r}")

"""`vavl prepare`: index a corpus folder into a manifest (.jsonl), without decoding any media.

    vavl prepare crema-d --root CREMA-D --out crema_d.jsonl --label perceived-av --drop-ambiguous
    vavl prepare ravdess --root RAVDESS --out ravdess.jsonl
    vavl prepare msp-improv --root MSP-IMPROV --out msp.jsonl [--labels Evalution.txt]
    vavl prepare custom --root my_clips.csv --out mine.jsonl

A listed clip whose media file is missing is reported (count and first ids) and either kept with
that modality missing (`--missing keep`, default) or dropped (`--missing drop`). A clip with no
media left at all is always dropped, and said so.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..core.errors import DataError
from .corpora import get_indexer
from .manifest import write_manifest

SYNTHETIC_MARKER = "VAVL_SYNTHETIC.txt"   # written by vavl.data.synthetic.make_corpus in a corpus root

SHOW = 5   # ids named in a report


CORPUS_NAMES = {"crema-d": "CREMA-D", "ravdess": "RAVDESS", "msp-improv": "MSP-IMPROV"}


def prepare(corpus: str, root: str | os.PathLike, out: str | os.PathLike, drop_ambiguous: bool = False,
            missing: str = "keep", log=None, **options: Any) -> dict[str, Any]:
    """Index `root` as `corpus` and write the manifest to `out`. Options go to the corpus
    indexer (crema-d: label, metadata_dir; msp-improv: labels, flip_arousal; custom: csv,
    attributes). Returns a summary: clips written, and the ids dropped or kept without media."""
    log = log or sys.stderr
    if missing not in ("keep", "drop"):
        raise DataError(f"missing={missing!r}: choose 'keep' or 'drop'")
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: corpus folder not found")
    records = get_indexer(corpus)(root, **{k: v for k, v in options.items() if v is not None})
    synthetic = (root / SYNTHETIC_MARKER).is_file()   # vavl.data.synthetic's clips: cards must not name a corpus
    for rec in records:   # which corpus a clip is from travels with it (model cards name it, with its license)
        if corpus in CORPUS_NAMES:
            rec.setdefault("corpus", CORPUS_NAMES[corpus])
        if synthetic:
            rec["synthetic"] = True
    listed = len(records)
    lacking = {"audio": [], "video": []}
    kept, dropped, no_media = [], [], []
    exists = _ExistsCache()
    for rec in records:
        gone = [k for k in ("audio", "video") if rec.get(k) and not exists(rec[k])]
        for key in gone:
            lacking[key].append(rec["id"])
        if gone and missing == "drop":
            dropped.append(rec["id"])
            continue
        for key in gone:
            rec[key] = None
        if not rec.get("audio") and not rec.get("video"):
            no_media.append(rec["id"])
            continue
        kept.append(rec)
    ambiguous = [r["id"] for r in kept if r.get("label") is None and not r.get("attributes")]
    if drop_ambiguous:
        drop = set(ambiguous)
        kept = [r for r in kept if r["id"] not in drop]
    if not kept:
        raise DataError(f"{root}: no clip of {listed} listed has media; check --root (see `vavl prepare {corpus} -h`)")
    write_manifest(kept, out)
    for key in ("audio", "video"):
        if lacking[key]:
            action = "dropped" if missing == "drop" else f"kept without {key}"
            print(f"vavl prepare: {len(lacking[key])} of {listed} clips have no {key} file ({action}), "
                  f"e.g. {_first(lacking[key])}", file=log)
    if no_media:
        print(f"vavl prepare: {len(no_media)} clips have no media at all (dropped), e.g. {_first(no_media)}", file=log)
    if ambiguous:
        action = "dropped (--drop-ambiguous)" if drop_ambiguous else "kept with label null"
        print(f"vavl prepare: {len(ambiguous)} clips have no single label (tied votes), {action}, "
              f"e.g. {_first(ambiguous)}", file=log)
    print(f"vavl prepare: wrote {len(kept)} clips to {out}", file=log)
    return {"manifest": str(out), "listed": listed, "clips": len(kept), "missing_audio": lacking["audio"],
            "missing_video": lacking["video"], "dropped_missing": dropped, "dropped_no_media": no_media,
            "ambiguous": ambiguous, "dropped_ambiguous": ambiguous if drop_ambiguous else []}


class _ExistsCache:
    """os.path.isfile for many files in few folders: one listing per folder instead of a stat per file."""

    def __init__(self):
        self.listings: dict[str, set[str]] = {}

    def __call__(self, path: str) -> bool:
        folder, name = os.path.split(path)
        if folder not in self.listings:
            try:
                self.listings[folder] = {e.name for e in os.scandir(folder) if e.is_file()}
            except OSError:
                self.listings[folder] = set()
        return name in self.listings[folder]


def _first(ids: list[str]) -> str:
    return ", ".join(ids[:SHOW]) + (", ..." if len(ids) > SHOW else "")

"""`vavl prepare`: index a corpus folder into a manifest (.jsonl), without decoding any media.

    vavl prepare crema-d --root CREMA-D --out crema_d.jsonl --label perceived-av --drop-ambiguous
    vavl prepare ravdess --root RAVDESS --out ravdess.jsonl
    vavl prepare msp-improv --root MSP-IMPROV --out msp.jsonl [--labels Evalution.txt]
    vavl prepare mafw --root MAFW --out mafw.jsonl [--labels "MAFW/Train & Test Set"]
    vavl prepare custom --root my_clips.csv --out mine.jsonl
    vavl prepare iemocap --root IEMOCAP_full_release --out iemocap.jsonl [--label-set 6class]

Every protocol is checked for speaker leaks (vavl.data.protocols): a speaker in two of train /
dev / test (or two folds) is an error naming the speakers, unless `allow_speaker_overlap`, which
keeps the protocol as `<name>-speaker-overlap`. Records with a `video_segment` (IEMOCAP turns in a
dialog video) get their clip cut into `clips_dir` (vavl.data.segments), or lose their video with
`cut_video=False`.

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
from .corpora import get_indexer, known_bad
from .manifest import write_manifest
from .protocols import check_protocols

SYNTHETIC_MARKER = "VAVL_SYNTHETIC.txt"   # written by vavl.data.synthetic.make_corpus in a corpus root

SHOW = 5   # ids named in a report


CORPUS_NAMES = {"crema-d": "CREMA-D", "ravdess": "RAVDESS", "msp-improv": "MSP-IMPROV", "mafw": "MAFW",
                "iemocap": "IEMOCAP", "msp-podcast": "MSP-Podcast", "meld": "MELD"}


def prepare(corpus: str, root: str | os.PathLike, out: str | os.PathLike, drop_ambiguous: bool = False,
            missing: str = "keep", log=None, drop_unlabelled: bool = False, allow_speaker_overlap: bool = False,
            clips_dir: str | os.PathLike | None = None, cut_video: bool = True, drop_known_bad: bool = False,
            **options: Any) -> dict[str, Any]:
    """Index `root` as `corpus` and write the manifest to `out`. Options go to the corpus
    indexer (crema-d: label, metadata_dir; msp-improv: labels, flip_arousal; mafw: labels; custom: csv,
    attributes; iemocap: label_set, face_side). `drop_unlabelled`: leave out clips whose `label`
    is null even when they have attributes. Returns a summary: clips written, and the ids dropped or kept without media."""
    log = log or sys.stderr
    if missing not in ("keep", "drop"):
        raise DataError(f"missing={missing!r}: choose 'keep' or 'drop'")
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: corpus folder not found")
    records = get_indexer(corpus)(root, **{k: v for k, v in options.items() if v is not None})
    bad = known_bad(corpus)
    broken = [r["id"] for r in records if r["id"] in bad]
    if drop_known_bad:
        records = [r for r in records if r["id"] not in bad]
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
    unlabelled = [r["id"] for r in kept if r.get("label") is None]
    if drop_unlabelled:
        kept = [r for r in kept if r.get("label") is not None]
    if not kept:
        raise DataError(f"{root}: no clip of {listed} listed has media; check --root (see `vavl prepare {corpus} -h`)")
    renamed = check_protocols(kept, allow_speaker_overlap, source=f"{corpus} at {root}")   # the clips written
    cut = {"written": [], "kept": [], "empty": []}
    if any(r.get("video_segment") for r in kept):
        if cut_video:
            from .segments import cut_segments   # decodes video: imported only where a corpus needs it

            cut = cut_segments(kept, clips_dir or Path(out).with_name(Path(out).stem + "_clips"), log=log)
        else:
            for r in kept:
                if r.pop("video_segment", None) is not None:
                    r["video"] = None
            print("vavl prepare: video not cut (cut_video off): clips kept without video", file=log)
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
        print(f"vavl prepare: {len(ambiguous)} clips have no single label (tied votes; MAFW: several emotions), "
              f"{action}, e.g. {_first(ambiguous)}", file=log)
    if drop_unlabelled and unlabelled:
        print(f"vavl prepare: {len(unlabelled)} clips have no label in this label set (dropped, --drop-unlabelled), "
              f"e.g. {_first(unlabelled)}", file=log)
    if broken:
        action = "dropped (--drop-known-bad)" if drop_known_bad else "kept; --drop-known-bad leaves them out"
        print(f"vavl prepare: {len(broken)} clips are known to be broken in the released corpus ({action}): "
              + "; ".join(f"{i} ({bad[i]})" for i in broken[:SHOW]) + ("; ..." if len(broken) > SHOW else ""), file=log)
    for name in renamed:
        print(f"vavl prepare: protocol {name[:-len('-speaker-overlap')]!r} shares speakers between its parts; "
              f"kept as {name!r} (--allow-speaker-overlap)", file=log)
    print(f"vavl prepare: wrote {len(kept)} clips to {out}", file=log)
    return {"manifest": str(out), "listed": listed, "clips": len(kept), "missing_audio": lacking["audio"],
            "missing_video": lacking["video"], "dropped_missing": dropped, "dropped_no_media": no_media,
            "ambiguous": ambiguous, "dropped_ambiguous": ambiguous if drop_ambiguous else [],
            "dropped_unlabelled": unlabelled if drop_unlabelled else [], "overlap_protocols": renamed,
            "clips_cut": cut["written"], "clips_reused": cut["kept"], "known_bad": broken,
            "dropped_known_bad": broken if drop_known_bad else []}


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

"""Your own data: one CSV row per clip.

    path,label,speaker                       one media file holding audio and video (or either)
    audio,video,label,speaker                separate files (either may be empty: modality missing)
    path,arousal,valence,speaker             attributes instead of (or besides) a class label

Columns: `path` or `audio`/`video` (relative paths are read relative to the CSV's folder), `label`
(class name, empty = unknown), `speaker`, optional `id` (default: the media path relative to the
CSV's folder, without suffix: `s1/001.mp4` -> "s1/001"; ids must be unique),
`gender`, `split` (train/dev/test -> protocol "split"), `fold` (integer -> protocol "fold").
Every other numeric column is an attribute (or only those named in `attributes=`). With five or
more speakers, "speaker-5fold" is added (speaker-disjoint folds).
Pass the CSV as the root, or a folder holding `labels.csv` (or `csv=FILE`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...core.errors import DataError
from . import find_file, number, read_csv, speaker_folds

KNOWN = {"id", "path", "audio", "video", "label", "speaker", "gender", "split", "fold"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".m4a"}
SPLITS = {"train": "train", "dev": "dev", "development": "dev", "valid": "dev", "validation": "dev", "test": "test"}


def index(root: str | os.PathLike, csv: str | os.PathLike | None = None, attributes: str | list[str] | None = None,
          **_: Any) -> list[dict[str, Any]]:
    root = Path(root)
    path = root if root.is_file() else find_file(root, ("labels.csv", "manifest.csv"), csv)
    if path is None:
        raise DataError(f"{root}: no labels.csv; give the CSV itself as --root or pass --csv FILE")
    rows = read_csv(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    columns = list(rows[0])
    if not {"path", "audio", "video"} & set(columns):
        raise DataError(f"{path}: needs a `path` column or `audio`/`video` columns; found {columns}")
    if isinstance(attributes, str):
        attributes = [a.strip() for a in attributes.split(",") if a.strip()]
    attr_cols = attributes or [c for c in columns if c not in KNOWN and _numeric(r.get(c) for r in rows)]
    base = path.resolve().parent
    records, lines = [], {}
    for n, row in enumerate(rows, 2):
        audio, video = _media(row, base)
        if audio is None and video is None:
            raise DataError(f"{path}:{n}: no media path in this row")
        rec: dict[str, Any] = {
            "id": row.get("id") or _default_id(audio or video, base),
            "speaker": row.get("speaker") or None, "gender": row.get("gender") or None,
            "audio": audio, "video": video, "label": row.get("label") or None,
            "attributes": {a: number(row[a], f"{path}:{n}: column {a}") for a in attr_cols
                           if row.get(a) not in (None, "")} or None,
            "folds": {},
        }
        if rec["id"] in lines:
            raise DataError(f"{path}:{n}: clip id {rec['id']!r} is also the id of line {lines[rec['id']]}; "
                            "give each row its own `id` (or files their own names)")
        lines[rec["id"]] = n
        if row.get("split"):
            if row["split"].lower() not in SPLITS:
                raise DataError(f"{path}:{n}: split {row['split']!r} is not train, dev or test")
            rec["folds"]["split"] = SPLITS[row["split"].lower()]
        if row.get("fold"):
            rec["folds"]["fold"] = number(row["fold"], f"{path}:{n}: column fold", int)
        records.append(rec)
    speakers = {r["speaker"]: r["gender"] for r in records if r["speaker"]}
    if len(speakers) >= 5:
        folds = speaker_folds(speakers, 5)
        for r in records:
            if r["speaker"]:
                r["folds"]["speaker-5fold"] = folds[r["speaker"]]
    return records


def _default_id(media: str, base: Path) -> str:
    """The media path relative to the CSV's folder, without suffix (the file's stem if outside it)."""
    p = Path(media)
    try:
        return p.relative_to(base).with_suffix("").as_posix()
    except ValueError:
        return p.stem


def _media(row: dict[str, str], base: Path) -> tuple[str | None, str | None]:
    def resolve(p: str | None) -> str | None:
        return str((base / p).resolve()) if p else None

    if row.get("audio") or row.get("video"):
        return resolve(row.get("audio")), resolve(row.get("video"))
    p = resolve(row.get("path"))
    if p is None:
        return None, None
    return (p, None) if Path(p).suffix.lower() in AUDIO_SUFFIXES else (p, p)


def _numeric(values) -> bool:
    seen = False
    for v in values:
        if v in (None, ""):
            continue
        try:
            float(v)
        except ValueError:
            return False
        seen = True
    return seen

"""MELD (affective-meld.github.io), MELD.Raw unpacked:

    train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv      (in the root or its split folders)
    train_splits/dia0_utt0.mp4                                    train (the folder may sit in train/)
    dev_splits_complete/dia0_utt0.mp4                             dev
    output_repeated_splits_test/dia0_utt0.mp4                     test

The CSVs: Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season,
Episode, StartTime, EndTime. One record per row, id `<split>_dia<D>_utt<U>` (dialogue and
utterance numbers restart in each split). Audio and video both come from the utterance's .mp4.
macOS resource files (`._dia0_utt0.mp4`) in the archives are ignored. KNOWN_BAD lists the clips
known to be broken; `vavl prepare` reports them.

Labels (`label_set=`): "emotion" (default; neutral, joy, sadness, anger, surprise, fear,
disgust) or "sentiment" (positive, negative, neutral); `labels` holds both, `text` the utterance.
Speakers by name as the CSV writes them.

Protocol: the official split, named "official-speaker-overlap": the same characters speak in
train, dev and test (MELD is cut from one TV series), so it is not speaker-independent, and every
result computed on it says so in its protocol name.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from ...core.errors import DataError
from ..protocols import OVERLAP

EMOTIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
SENTIMENTS = ("negative", "neutral", "positive")
LABEL_SETS = {"emotion": EMOTIONS, "sentiment": SENTIMENTS}
FOLDERS = {"train": ("train_splits",), "dev": ("dev_splits_complete", "dev_splits"),
           "test": ("output_repeated_splits_test", "test_splits")}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
VIDEO = re.compile(r"dia(\d+)_utt(\d+)\.mp4", re.IGNORECASE)
PROTOCOL = "official" + OVERLAP
# reported by several public MELD loaders, which skip them
KNOWN_BAD = {"train_dia125_utt3": "the .mp4 does not decode (no playable audio or video)",
             "dev_dia110_utt7": "no .mp4 in the MELD.Raw package"}


def _read(path: Path) -> list[dict[str, str]]:
    """MELD's CSVs hold a few bytes that are not UTF-8 in some releases: replaced, not fatal."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.DictReader(f)
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
        header = [(k or "").strip() for k in reader.fieldnames or []]
    lacking = [c for c in COLUMNS if c not in header]
    if lacking:
        raise DataError(f"{path}: lacks the column(s) {', '.join(map(repr, lacking))} (found {header[:8]}); "
                        "is it a MELD *_sent_emo.csv?")
    return rows


def _videos(root: Path) -> dict[tuple[str, int, int], str]:
    """(split, dialogue, utterance) -> .mp4 path, for files in a split's video folder."""
    owner = {name: split for split, names in FOLDERS.items() for name in names}
    out = {}
    for dirpath, _, names in os.walk(root):
        split = owner.get(Path(dirpath).name)
        if split is None:
            continue
        for name in names:
            m = VIDEO.fullmatch(name)
            if m:
                out[split, int(m[1]), int(m[2])] = str(Path(dirpath, name).resolve())
    return out


def index(root: str | os.PathLike, label_set: str = "emotion", **_: Any) -> list[dict[str, Any]]:
    root = Path(root)
    if label_set not in LABEL_SETS:
        raise DataError(f"MELD label set {label_set!r} is not one of {sorted(LABEL_SETS)}")
    videos = _videos(root)
    records = []
    for split in ("train", "dev", "test"):
        name = f"{split}_sent_emo.csv"
        path = next((p for p in (root / name, root / split / name) if p.is_file()), None)
        if path is None:
            raise DataError(f"{root}: {name} not found (looked in the root and {split}/); give the MELD.Raw folder")
        for n, row in enumerate(_read(path), 2):
            try:
                d, u = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
            except ValueError:
                raise DataError(f"{path}:{n}: Dialogue_ID / Utterance_ID {row['Dialogue_ID']!r} / "
                                f"{row['Utterance_ID']!r} are not whole numbers") from None
            emotion, sentiment = row["Emotion"].lower(), row["Sentiment"].lower()
            labels = {"emotion": emotion if emotion in EMOTIONS else None,
                      "sentiment": sentiment if sentiment in SENTIMENTS else None}
            folder = root / split / FOLDERS[split][0]
            media = videos.get((split, d, u), str((folder / f"dia{d}_utt{u}.mp4").resolve()))
            records.append({
                "id": f"{split}_dia{d}_utt{u}", "speaker": row["Speaker"] or None, "gender": None,
                "audio": media, "video": media, "label": labels[label_set], "labels": labels,
                "text": row["Utterance"], "dialogue": d, "utterance": u,
                "season": row.get("Season") or None, "episode": row.get("Episode") or None,
                "folds": {PROTOCOL: split},
            })
    return records

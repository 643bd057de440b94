"""MAFW (Liu et al., ACM MM 2022; github.com/MAFW-database/MAFW; research use under its own terms) as it is
released:

    data/clips/00019.mp4 ...                               the 10,045 clips (video with its audio track)
    Train & Test Set/single/no_caption/set_1..5/train.txt  "00025.mp4 anger": the single-label sets
    Train & Test Set/single/no_caption/set_1..5/test.txt
    Train & Test Set/compound/no_caption/set_1..5/...      "00019.mp4 anger_disgust": compound labels
    Labels/*.xlsx, Labels(auto)/...                        not read (the lists above hold the same labels)

Clips are found by name (`NNNNN.mp4`) in data/clips/, or when there is none anywhere under the root
(a flat folder works too);
`labels=DIR` points at the "Train & Test Set" folder when it is elsewhere.

Labels: `label` is the single-label class (11: anger, disgust, fear, happiness, neutral, sadness,
surprise, contempt, anxiety, helplessness, disappointment, in MAFW's and HiCMAE's order). A clip of
the compound lists only (several emotions) has `label` null. `labels` keeps both: `labels.single`
and `labels.compound` (the class the compound lists give it, "anger_disgust", or one emotion; null for
the 176 single-label clips those lists leave out), so `label_field: labels.compound` trains the
43-class compound task.

Folds (train / test, MAFW has no dev set): "mafw-1".."mafw-5" (the single-label sets), "mafw-compound-1"
.."mafw-compound-5" (the compound sets) and HiCMAE's "hicmae-1".."hicmae-5" (the single-label sets
less the 16 clips HiCMAE has no audio for; see hicmae.py). MAFW names no speakers: `speaker` is null.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...core.errors import DataError
from . import hicmae

CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
           "helplessness", "disappointment")
SPLIT_FOLDERS = ("Train & Test Set", "Train_Test_Set", "train_test_set/Train & Test Set")
SETS = {"single": "single/no_caption", "compound": "compound/no_caption"}
CLIP = re.compile(r"\d{5}")


def read_list(path: Path, compound: bool) -> dict[str, str]:
    """A MAFW set list ("00025.mp4 anger" per line) -> clip id -> label, each part checked."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            clip = os.path.splitext(os.path.basename(parts[0]))[0]
            label = parts[1] if len(parts) > 1 else ""
            emotions = label.split("_") if compound else [label]
            if not CLIP.fullmatch(clip) or not label or any(e not in CLASSES for e in emotions):
                raise DataError(f"{path}:{n}: {line.strip()[:60]!r} is not a MAFW line like '00025.mp4 anger' "
                                f"(classes: {', '.join(CLASSES)})")
            out[clip] = label
    return out


def read_sets(folder: Path, compound: bool) -> tuple[dict[str, str], dict[str, int]]:
    """set_1..set_5: clip -> label, and clip -> the set whose test list holds it."""
    labels, fold = {}, {}
    for k in range(1, 6):
        for split in ("train", "test"):
            path = folder / f"set_{k}" / f"{split}.txt"
            if not path.is_file():
                raise DataError(f"{path}: not found; MAFW's {folder.name} lists are set_1..set_5/train.txt, test.txt")
            for clip, label in read_list(path, compound).items():
                if labels.setdefault(clip, label) != label:
                    raise DataError(f"{path}: clip {clip} is labelled {label!r} here and {labels[clip]!r} in another set")
                if split == "test":
                    if clip in fold:
                        raise DataError(f"{path}: clip {clip} is also in set_{fold[clip]}/test.txt")
                    fold[clip] = k
    return labels, fold


def find_splits(root: Path, explicit: str | os.PathLike | None) -> Path:
    if explicit is not None:
        path = Path(explicit)
        if not (path / SETS["single"]).is_dir():
            raise DataError(f"{path}: no {SETS['single']}/ folder; give MAFW's 'Train & Test Set' folder")
        return path
    for name in SPLIT_FOLDERS:
        if (root / name / SETS["single"]).is_dir():
            return root / name
    raise DataError(f"{root}: no 'Train & Test Set/{SETS['single']}' folder; pass MAFW's 'Train & Test Set' "
                    "folder with --labels DIR")


def index(root: str | os.PathLike, labels: str | os.PathLike | None = None, **_: Any) -> list[dict[str, Any]]:
    root = Path(root)
    splits = find_splits(root, labels)
    single, single_fold = read_sets(splits / SETS["single"], compound=False)
    compound, compound_fold = {}, {}
    if (splits / SETS["compound"]).is_dir():
        compound, compound_fold = read_sets(splits / SETS["compound"], compound=True)
    clips = {}
    media_root = root / "data" / "clips" if (root / "data" / "clips").is_dir() else root
    for dirpath, _, names in os.walk(media_root):
        for name in names:
            stem, ext = os.path.splitext(name)
            if ext.lower() == ".mp4" and CLIP.fullmatch(stem):
                clips.setdefault(stem, str(Path(dirpath, name).resolve()))
    records = []
    for clip in sorted(set(single) | set(compound)):
        # a clip not found on disk keeps its expected path so that `prepare` reports it
        media = clips.get(clip, str(root.resolve() / "data" / "clips" / f"{clip}.mp4"))
        folds: dict[str, Any] = {}
        if clip in single_fold:
            folds.update({f"mafw-{k}": "test" if k == single_fold[clip] else "train" for k in range(1, 6)})
            folds.update(hicmae.folds("mafw", hicmae.mafw_fold(clip, single_fold[clip])))
        if clip in compound_fold:
            folds.update({f"mafw-compound-{k}": "test" if k == compound_fold[clip] else "train" for k in range(1, 6)})
        records.append({
            "id": clip, "speaker": None, "gender": None, "audio": media, "video": media,
            "label": single.get(clip), "labels": {"single": single.get(clip), "compound": compound.get(clip)},
            "folds": folds,
        })
    return records

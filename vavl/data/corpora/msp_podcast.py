"""MSP-Podcast (ecs.utdallas.edu/research/researchlabs/msp-lab) as the lab distributes it:

    Audios/MSP-PODCAST_0001_0008.wav    one speaking turn of a podcast
    Labels/labels_consensus.csv         FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set
    Labels/labels_detailed.csv          one row per rater: FileName, EmoClass_Major, ... (optional)
    Transcripts/MSP-PODCAST_0001_0008.txt  (optional; the text goes into the manifest)

Audio only: `video` is null, so audio-visual models train and score on it with video missing.

Classes. EmoClass codes A S H U F D C N are angry, sad, happy, surprise, fear, disgust, contempt,
neutral. O ("other") and X ("no agreement") are not classes: such a clip keeps `label` null and
says which in `emotion` ("other" / "no-agreement"). Label sets (`label_set=`): "8class" (default)
and "4class" (angry, happy, neutral, sad; the other four also give a null `label`). Attributes:
arousal / valence / dominance from EmoAct / EmoVal / EmoDom, on the corpus' 1-7 scale.

Soft labels: with labels_detailed.csv, `label_distribution` is each class's share of the raters
whose primary choice (EmoClass_Major) is one of the label set's classes; raters who chose another
category are counted in `raters_outside` and left out of the shares.

Speakers: SpkrID as written; "Unknown" (or empty) gives a null speaker, never an invented one, and
such clips are outside the speaker-leak check. Protocols: "test1", "test2", "test3": Train ->
train, Development -> dev, and that test set -> test (the other test sets are not in it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...core.errors import DataError
from . import find_file, number, read_csv

CODES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust", "C": "contempt",
         "N": "neutral"}
NOT_A_CLASS = {"O": "other", "X": "no-agreement"}
LABEL_SETS = {"8class": tuple(sorted(CODES.values())), "4class": ("angry", "happy", "neutral", "sad")}
SPLITS = {"train": "train", "development": "dev", "test1": "test1", "test2": "test2", "test3": "test3"}
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
UNKNOWN = {"", "unknown", "nan", "na"}
ATTRIBUTES = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}


def _name(value: str) -> str | None:
    """'A' / 'Angry' / 'angry' -> 'angry'; anything else -> None."""
    value = value.strip()
    if value.upper() in CODES:
        return CODES[value.upper()]
    value = value.lower()
    return value if value in CODES.values() else None


def soft_labels(path: Path, classes: tuple[str, ...]) -> dict[str, tuple[dict[str, float], int]]:
    """labels_detailed.csv -> clip id -> (share of each class among raters choosing one of
    `classes`, raters who chose something else)."""
    counts: dict[str, dict[str, int]] = {}
    outside: dict[str, int] = {}
    for row in read_csv(path, required=("FileName", "EmoClass_Major")):
        clip = Path(row["FileName"]).stem
        name = _name(row["EmoClass_Major"])
        counts.setdefault(clip, {})
        if name in classes:
            counts[clip][name] = counts[clip].get(name, 0) + 1
        else:
            outside[clip] = outside.get(clip, 0) + 1
    out = {}
    for clip, c in counts.items():
        total = sum(c.values())
        out[clip] = ({k: c.get(k, 0) / total for k in classes} if total else {}, outside.get(clip, 0))
    return out


def index(root: str | os.PathLike, labels: str | os.PathLike | None = None, label_set: str = "8class",
          **_: Any) -> list[dict[str, Any]]:
    root = Path(root)
    if label_set not in LABEL_SETS:
        raise DataError(f"MSP-Podcast label set {label_set!r} is not one of {sorted(LABEL_SETS)}")
    classes = LABEL_SETS[label_set]
    path = find_file(root, ("Labels/labels_consensus.csv", "labels_consensus.csv"), labels)
    if path is None:
        raise DataError(f"{root}: no Labels/labels_consensus.csv; give the MSP-Podcast folder or --labels FILE")
    detailed_path = path.parent / "labels_detailed.csv"
    detailed = soft_labels(detailed_path, classes) if detailed_path.is_file() else {}
    transcripts = root / "Transcripts"
    records = []
    for n, row in enumerate(read_csv(path, required=COLUMNS), 2):
        clip = Path(row["FileName"]).stem
        split = SPLITS.get(row["Split_Set"].lower())
        if split is None:
            raise DataError(f"{path}:{n}: Split_Set {row['Split_Set']!r} is not one of Train, Development, Test1, "
                            "Test2, Test3")
        code = row["EmoClass"].strip().upper()
        emotion = CODES.get(code) or NOT_A_CLASS.get(code)
        attrs = {a: number(row[c], f"{path}:{n}: column {c}") for a, c in ATTRIBUTES.items()
                 if row[c].lower() not in UNKNOWN}
        speaker = None if row["SpkrID"].lower() in UNKNOWN else row["SpkrID"]
        gender = row["Gender"].lower() if row["Gender"].lower() in ("female", "male") else None
        text_path = transcripts / f"{clip}.txt"
        rec: dict[str, Any] = {
            "id": clip, "speaker": speaker, "gender": gender,
            "audio": str((root / "Audios" / f"{clip}.wav").resolve()), "video": None,
            "label": emotion if emotion in classes else None, "emotion": emotion,
            "attributes": attrs or None, "split_set": row["Split_Set"],
            "text": text_path.read_text(encoding="utf-8", errors="replace").strip() if text_path.is_file() else None,
            "folds": ({f"test{k}": split for k in (1, 2, 3)} if split in ("train", "dev") else {split: "test"}),
        }
        if clip in detailed:
            shares, others = detailed[clip]
            if shares:
                rec["label_distribution"] = shares
            rec["raters_outside"] = others
        records.append(rec)
    if not records:
        raise DataError(f"{path}: no clips listed")
    return records

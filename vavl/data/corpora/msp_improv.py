"""MSP-IMPROV (ecs.utdallas.edu/research/researchlabs/msp-lab) as the lab distributes it:

    Evalution.txt                                          consensus labels (spelled so)
    Audio/session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav   speech
    Video/session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.avi   video

Media are found by name anywhere under the root (`MSP-IMPROV-*.wav|.avi|.mp4`), so a flat
folder works too. Clip ids: `MSP-IMPROV-S01A-F02-R-FF01` = sentence 01 of the angry (A/H/S/N)
scenario, speaker sex F and session 02 (the speaker is "F02"), type R (read) / S (improvised) /
P (target sentence in improvisation) / T (natural interaction), then the dyad and turn.

Labels: `labels=FILE` or Evalution.txt in the root. Either the lab's Evalution.txt (lines
`UTD-IMPROV-S01A-F01-S-FM01.avi; N; A:3.0; V:3.5; D:3.0; N:2.0;`, rater lines ignored), the VAVL
CSV (FileName, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set), or a plain CSV with an id
column (id / FileName) and any of arousal/valence/dominance (or EmoAct/EmoVal/EmoDom) and a
category column (label / emotion / EmoClass: A H N S or angry happy neutral sad). Categories
outside these four (no consensus) give a null `label`. Attributes go to `attributes` on the
1-5 scale.

Arousal has one meaning from either source: 5 = most aroused. The VAVL CSVs already run that way
(EmoAct's mean by scenario, partition files: angry 2.67, happy 2.81, neutral 2.24, sad 2.30). For
Evalution.txt neither the official VAVL code nor its docs say which end is which (the official loader
reads only the CSVs), so with `flip_arousal=None` (default) the file's own clips decide, whichever the
source: if the angry and happy scenarios' mean arousal (scenario letter of the clip id) is below the
neutral and sad scenarios', the file runs 1 = most aroused and vavl stores 6 - x; otherwise as it is. A
file where that cannot be told (a group without arousal, equal means) is refused: pass
`flip_arousal=True/False` (`--flip-arousal yes/no`); a file without arousal is read as it is. The official loader's flip in place on every
read (VV utils/dataset.py:79-83: targets alternate between x and 6 - x) is not copied.

Folds: "session-6fold" (leave one session out: the fold is the session 1-6 minus one) and the
VAVL partitions "vavl-1".."vavl-5" (vavl/data/partitions/MSP-IMPROV, MIT) and HiCMAE's
"hicmae-1".."hicmae-6" (test = session k, train = the other five, on the 7,787 clips HiCMAE lists;
see hicmae.py).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...core.errors import DataError
from . import find_file, hicmae, number, read_csv, vavl_partitions

CLASSES = ("angry", "happy", "neutral", "sad")
ATTRIBUTES = ("arousal", "valence", "dominance")
LETTERS = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
CLIP_ID = re.compile(r"MSP-IMPROV-S(\d\d)([AHNS])-([FM])(\d\d)-([RSPT])-([FM][FM])(\d\d)")
TYPES = {"R": "read", "S": "improvised", "P": "target-improvised", "T": "natural"}
MEDIA = {".wav": "audio", ".avi": "video", ".mp4": "video"}
COLUMNS = {"arousal": ("arousal", "emoact", "act", "a"), "valence": ("valence", "emoval", "val", "v"),
           "dominance": ("dominance", "emodom", "dom", "d")}


def parse_id(clip_id: str) -> dict[str, Any]:
    m = CLIP_ID.fullmatch(clip_id)
    if not m:
        raise DataError(f"{clip_id!r} is not an MSP-IMPROV clip id like MSP-IMPROV-S01A-F02-R-FF01")
    return {"sentence": int(m[1]), "scenario": LETTERS[m[2]], "gender": "female" if m[3] == "F" else "male",
            "session": int(m[4]), "speaker": f"{m[3]}{m[4]}", "type": TYPES[m[5]]}


def clip_id_of(name: str) -> str:
    """'UTD-IMPROV-S01A-F01-S-FM01.avi' or 'MSP-IMPROV-....wav' -> 'MSP-IMPROV-S01A-F01-S-FM01'."""
    stem = Path(name.strip()).stem
    return "MSP-IMPROV-" + stem.split("-IMPROV-", 1)[1] if "-IMPROV-" in stem else stem


def _category(value: str | None) -> str | None:
    value = (value or "").strip()
    return LETTERS.get(value.upper()) or (value.lower() if value.lower() in CLASSES else None)


def read_evaluation(path: Path) -> dict[str, dict[str, Any]]:
    """Evalution.txt -> clip id -> {"label", "attributes"} (raw SAM scales)."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = [p.strip() for p in line.strip().split(";")]
            if len(parts) < 3 or not CLIP_ID.fullmatch(clip_id_of(parts[0])):
                continue   # blank lines and the individual raters' lines
            values = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
            attrs = {name: number(values[key], f"{path}: {parts[0]}: {key}") for name, key in zip(ATTRIBUTES, "AVD")
                     if key in values}
            out[clip_id_of(parts[0])] = {"label": _category(parts[1]), "attributes": attrs}
    if not out:
        raise DataError(f"{path}: no label lines like 'UTD-IMPROV-S01A-F01-S-FM01.avi; N; A:3.0; V:3.5; D:3.0;'")
    return out


def read_label_csv(path: Path) -> dict[str, dict[str, Any]]:
    rows = read_csv(path)
    if not rows:
        raise DataError(f"{path}: empty label file")
    lower = {k.lower(): k for k in rows[0]}
    id_col = next((lower[k] for k in ("id", "filename", "file", "name") if k in lower), None)
    if id_col is None:
        raise DataError(f"{path}: needs an id column (id or FileName); found {list(rows[0])}")
    attr_cols = {a: lower[c] for a, names in COLUMNS.items() for c in names if c in lower}
    cat_col = next((lower[k] for k in ("label", "emotion", "emoclass", "category", "class") if k in lower), None)
    out = {}
    for n, row in enumerate(rows, 2):
        attrs = {a: number(row[c], f"{path}:{n}: column {c}") for a, c in attr_cols.items() if row[c] not in ("", "nan", "NA")}
        out[clip_id_of(row[id_col])] = {"label": _category(row[cat_col]) if cat_col else None, "attributes": attrs}
    return out


HIGH_AROUSAL, LOW_AROUSAL = ("angry", "happy"), ("neutral", "sad")


def runs_calm_to_aroused(table: dict[str, dict[str, Any]], path: Path) -> bool:
    """True when the file's arousal grows with arousal (5 = most aroused), False when it runs the other
    way: the angry and happy scenarios' mean arousal against the neutral and sad scenarios'."""
    groups: dict[bool, list[float]] = {True: [], False: []}
    for clip_id, entry in table.items():
        scenario = parse_id(clip_id)["scenario"]
        if "arousal" in entry["attributes"]:
            groups[scenario in HIGH_AROUSAL].append(entry["attributes"]["arousal"])
    if not groups[True] or not groups[False] or sum(groups[True]) / len(groups[True]) == sum(groups[False]) / len(groups[False]):
        raise DataError(f"{path}: cannot tell which end of the arousal scale is aroused (needs arousal for clips of the "
                        "angry/happy and of the neutral/sad scenarios, with different means); pass --flip-arousal yes "
                        "(the file's 1 = most aroused) or no")
    return sum(groups[True]) / len(groups[True]) > sum(groups[False]) / len(groups[False])


def index(root: str | os.PathLike, labels: str | os.PathLike | None = None, flip_arousal: bool | None = None,
          **_: Any) -> list[dict[str, Any]]:
    root = Path(root)
    label_path = find_file(root, ("Evalution.txt", "Evaluation.txt", "labels.csv"), labels)
    if label_path is None:
        raise DataError(f"{root}: no Evalution.txt; pass the label file with --labels FILE")
    table = read_evaluation(label_path) if label_path.suffix.lower() == ".txt" else read_label_csv(label_path)
    has_arousal = any("arousal" in e["attributes"] for e in table.values())
    if has_arousal and (flip_arousal if flip_arousal is not None else not runs_calm_to_aroused(table, label_path)):
        for entry in table.values():
            if "arousal" in entry["attributes"]:
                entry["attributes"]["arousal"] = 6.0 - entry["attributes"]["arousal"]
    media: dict[str, dict[str, str]] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            kind = MEDIA.get(Path(name).suffix.lower())
            if kind and name.startswith("MSP-IMPROV-"):
                media.setdefault(Path(name).stem, {}).setdefault(kind, str(Path(dirpath, name).resolve()))
    partitions = vavl_partitions("MSP-IMPROV", "labels_consensus_EmoP_4class_D")
    records = []
    for clip_id in sorted(table):
        info, entry = parse_id(clip_id), table[clip_id]
        # a clip not found on disk keeps its expected path so that `prepare` reports it
        found = media.get(clip_id, {})
        expected = f"session{info['session']}/S{info['sentence']:02d}{clip_id[14]}/{clip_id[20]}/{clip_id}"
        records.append({
            "id": clip_id, "speaker": info["speaker"], "gender": info["gender"],
            "audio": found.get("audio", str(root.resolve() / "Audio" / f"{expected}.wav")),
            "video": found.get("video", str(root.resolve() / "Video" / f"{expected}.avi")),
            "label": entry["label"], "attributes": entry["attributes"] or None,
            "session": info["session"], "scenario": info["scenario"], "type": info["type"],
            "folds": {"session-6fold": info["session"] - 1,
                      **{p: split[clip_id] for p, split in partitions.items() if clip_id in split},
                      **hicmae.folds("msp-improv", hicmae.msp_improv_fold(clip_id, info["session"]))},
        })
    return records

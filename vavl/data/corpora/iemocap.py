"""IEMOCAP (sail.usc.edu/iemocap) in its released layout:

    Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav   one turn's speech
    Session1/dialog/EmoEvaluation/Ses01F_impro01.txt               labels, one block per turn
    Session1/dialog/transcriptions/Ses01F_impro01.txt              what was said
    Session1/dialog/avi/DivX/Ses01F_impro01.avi                    the dialog's video (both actors)

An EmoEvaluation block opens with the turn line `[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu
<TAB>[2.5000, 2.5000, 2.5000]` (start, end, turn id, consensus category, consensus valence,
arousal, dominance on 1-5) followed by the raters' own lines (`C-E2: Neutral; ()`, `A-E3: val 3;
...`), which are not needed for the consensus and are skipped.

Speakers. The speaker of a turn is the gender letter of the turn id's LAST field (`..._F000` is
the session's female actor, `..._M012` its male actor), with the session: "S1F", "S1M", ...
The dialog name's letter (`Ses01F_...`) says which actor wore the motion-capture markers, not who
speaks; taking the speaker from it merges both actors of a session.

Labels (`label_set=`): "4class" (default): ang, hap + exc, neu, sad -> angry, happy, neutral,
sad; "6class": ang, hap, exc, sad, fru, neu -> angry, happy, excited, sad, frustrated, neutral;
"raw": the ten categories and xxx as written. A turn outside the set (e.g. fru or xxx under
4class) keeps `label` null; `labels` holds all three, `emotion` the raw code, `attributes` the
consensus valence / arousal / dominance.

Folds: "session-5fold" (leave one session out: the fold is the session minus one) and
"speaker-10fold" (leave one speaker out: fold 2 * (session - 1) + (0 for F, 1 for M)).

Video: the dialog video shows both actors side by side, each in one half of the frame. A turn's
record carries the dialog video, the turn's time stamps and the half its speaker sits in
(`video_segment`); `vavl prepare` cuts that half of that stretch into a clip of its own (see
vavl/data/segments.py). Which half: the actor who wears the markers (the dialog name's letter)
sits in the left half, the other actor in the right half (`face_side="marker-left"`, the layout
public IEMOCAP face-cropping scripts assume); `face_side="marker-right"` swaps them.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...core.errors import DataError
from . import number

RAW = ("ang", "hap", "exc", "sad", "neu", "fru", "fea", "sur", "dis", "oth", "xxx")
LABEL_SETS = {
    "4class": {"ang": "angry", "hap": "happy", "exc": "happy", "neu": "neutral", "sad": "sad"},
    "6class": {"ang": "angry", "hap": "happy", "exc": "excited", "sad": "sad", "fru": "frustrated", "neu": "neutral"},
    "raw": {c: c for c in RAW},
}
CLASSES = {"4class": ("angry", "happy", "neutral", "sad"),
           "6class": ("angry", "excited", "frustrated", "happy", "neutral", "sad"), "raw": RAW}
FACE_SIDES = ("marker-left", "marker-right")
TURN = re.compile(r"\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[\s*([^\]]*)\]")
TRANSCRIPT = re.compile(r"(\S+)\s+\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s*:\s?(.*)")
DIALOG = re.compile(r"Ses(\d\d)([FM])_.+")
SPEAKER = re.compile(r"([FM])\d+")


def speaker_of(turn_id: str) -> tuple[int, str]:
    """'Ses01F_impro01_M012' -> (1, 'M'): the session and the gender letter of the last field."""
    m = DIALOG.fullmatch(turn_id)
    last = SPEAKER.fullmatch(turn_id.rsplit("_", 1)[-1]) if "_" in turn_id else None
    if not m or not last:
        raise DataError(f"{turn_id!r} is not an IEMOCAP turn id like Ses01F_impro01_F000")
    return int(m[1]), last[1]


def read_evaluation(path: Path) -> list[dict[str, Any]]:
    """An EmoEvaluation file -> its turns: id, start, end, raw category, consensus V/A/D."""
    turns = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = TURN.match(line.strip())
            if not m:
                continue   # the header, blank lines and the raters' lines
            vad = [v.strip() for v in m[5].split(",")]
            if len(vad) != 3:
                raise DataError(f"{path}:{n}: expected [V, A, D] after the category, found [{m[5]}]")
            v, a, d = (number(x, f"{path}:{n}: [V, A, D]") for x in vad)
            turns.append({"id": m[3], "start": number(m[1], f"{path}:{n}: start"),
                          "end": number(m[2], f"{path}:{n}: end"), "emotion": m[4].lower(),
                          "attributes": {"arousal": a, "valence": v, "dominance": d}})
    return turns


def read_transcript(path: Path) -> dict[str, str]:
    """`Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.` lines -> turn id -> text."""
    if not path.is_file():
        return {}
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = TRANSCRIPT.match(line.strip())
            if m:
                out[m[1]] = m[4].strip()
    return out


def index(root: str | os.PathLike, label_set: str = "4class", face_side: str = "marker-left",
          **_: Any) -> list[dict[str, Any]]:
    root = Path(root)
    if label_set not in LABEL_SETS:
        raise DataError(f"IEMOCAP label set {label_set!r} is not one of {sorted(LABEL_SETS)}")
    if face_side not in FACE_SIDES:
        raise DataError(f"IEMOCAP face side {face_side!r} is not one of {FACE_SIDES}")
    sessions = sorted(p for p in root.glob("Session[1-5]") if p.is_dir())
    if not sessions:
        raise DataError(f"{root}: no Session1..Session5 folders; give the IEMOCAP_full_release folder")
    records = []
    for session_dir in sessions:
        k = int(session_dir.name[-1])
        label_files = sorted((session_dir / "dialog" / "EmoEvaluation").glob("Ses*.txt"))
        if not label_files:
            raise DataError(f"{session_dir}/dialog/EmoEvaluation: no Ses*.txt label files")
        for label_path in label_files:
            dialog = label_path.stem
            m = DIALOG.fullmatch(dialog)
            if not m or int(m[1]) != k:
                raise DataError(f"{label_path}: {dialog!r} is not a dialog of session {k} (like Ses0{k}F_impro01)")
            texts = read_transcript(session_dir / "dialog" / "transcriptions" / f"{dialog}.txt")
            avi = (session_dir / "dialog" / "avi" / "DivX" / f"{dialog}.avi").resolve()
            for turn in read_evaluation(label_path):
                session, letter = speaker_of(turn["id"])
                if session != k:
                    raise DataError(f"{label_path}: turn {turn['id']!r} is not of session {k}")
                marker = letter == m[2]
                left = marker if face_side == "marker-left" else not marker
                labels = {name: mapping.get(turn["emotion"]) for name, mapping in LABEL_SETS.items()}
                speaker_fold = 2 * (k - 1) + (letter == "M")
                records.append({
                    "id": turn["id"], "speaker": f"S{k}{letter}", "gender": "female" if letter == "F" else "male",
                    "audio": str((session_dir / "sentences" / "wav" / dialog / f"{turn['id']}.wav").resolve()),
                    "video": str(avi),
                    "video_segment": {"start": turn["start"], "end": turn["end"], "side": "left" if left else "right"},
                    "label": labels[label_set], "labels": labels, "emotion": turn["emotion"],
                    "attributes": turn["attributes"], "text": texts.get(turn["id"]),
                    "session": k, "dialog": dialog,
                    "folds": {"session-5fold": k - 1, "speaker-10fold": speaker_fold},
                })
    return records

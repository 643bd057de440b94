"""RAVDESS (zenodo.org/record/1188976): `Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4|.wav` anywhere under
the root (the speech/song and audio/video archives may be unpacked side by side).

    MM modality   01 audio-visual .mp4, 02 video-only .mp4, 03 audio-only .wav
    VV channel    01 speech, 02 song
    EE emotion    01 neutral 02 calm 03 happy 04 sad 05 angry 06 fearful 07 disgust 08 surprised
    II intensity  01 normal, 02 strong;  SS statement 01 "Kids...", 02 "Dogs..."
    RR repetition 01/02;  AA actor 01-24 (odd male, even female)

One record per utterance (id `VV-EE-II-SS-RR-AA`, the name without its modality field); the
files of one utterance are paired: video from the 01 .mp4, else the 02 .mp4; audio from the 03
.wav when present (the original 48 kHz recording, cheaper to decode), else from the 01 .mp4's
audio track. An utterance with only a 02 file is video-only; only a 03 file, audio-only.

Folds: "speaker-6fold", 6 folds of 4 consecutive actors (2 male, 2 female each): actors 1-4 are
fold 0, 5-8 fold 1, ...; HiCMAE's "hicmae-1".."hicmae-6" (the same actor folds, speech only,
train/test; see hicmae.py).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...core.errors import DataError
from . import hicmae

CLASSES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
NAME = re.compile(r"(0[123])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)\.(mp4|wav)", re.IGNORECASE)


def parse_name(name: str) -> dict[str, Any] | None:
    m = NAME.fullmatch(name)
    if not m:
        return None
    actor = int(m[7])
    return {
        "modality": m[1], "key": "-".join(m.groups()[1:7]), "actor": actor,
        "channel": "speech" if m[2] == "01" else "song", "emotion": CLASSES[int(m[3]) - 1],
        "intensity": "normal" if m[4] == "01" else "strong", "statement": int(m[5]), "repetition": int(m[6]),
        "gender": "male" if actor % 2 else "female",
    }


def index(root: str | os.PathLike, **_: Any) -> list[dict[str, Any]]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; give the folder holding the Actor_XX/ folders")
    files: dict[str, dict[str, Path]] = {}
    info: dict[str, dict[str, Any]] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            parsed = parse_name(name)
            if parsed is None:
                continue
            files.setdefault(parsed["key"], {})[parsed["modality"]] = Path(dirpath, name).resolve()
            info[parsed["key"]] = parsed
    if not files:
        raise DataError(f"{root}: no RAVDESS files (Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4|.wav) found")
    records = []
    for key in sorted(files):
        have, p = files[key], info[key]
        video = have.get("01") or have.get("02")
        audio = have.get("03") or have.get("01")
        records.append({
            "id": key, "speaker": f"{p['actor']:02d}", "gender": p["gender"],
            "audio": str(audio) if audio else None, "video": str(video) if video else None,
            "label": p["emotion"], "channel": p["channel"], "intensity": p["intensity"],
            "statement": p["statement"], "repetition": p["repetition"],
            "folds": {"speaker-6fold": (p["actor"] - 1) // 4,
                      **hicmae.folds("ravdess", hicmae.ravdess_fold(p["actor"], p["channel"]))},
        })
    return records

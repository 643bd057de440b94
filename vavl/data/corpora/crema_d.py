"""CREMA-D in its own layout (github.com/CheyneyComputerScience/CREMA-D):

    AudioWAV/1001_DFA_ANG_XX.wav        16 kHz speech
    VideoFlash/1001_DFA_ANG_XX.flv      video with audio
    processedResults/summaryTable.csv   raters' majority vote per clip, per modality
    processedResults/tabulatedVotes.csv vote counts per clip, per modality
    VideoDemographics.csv               actor sex and age
    SentenceFilenames.csv               the 7,442 clip ids (optional: summaryTable.csv lists them too)

Metadata CSVs are looked up in `processedResults/`, then the root, or `metadata_dir`.

Labels (`label=`): "intended" (the actor's emotion, from the file name), "perceived-av",
"perceived-audio", "perceived-video" (raters' majority in summaryTable.csv for audio-visual,
audio-only and video-only presentations), "soft" (audio-visual vote distribution from
tabulatedVotes.csv, with its majority class as `label`). A tied vote such as "N:S" is never
turned into one class: `label` is null. Perceived and soft labels also carry
`label_distribution` (votes / responses of the matching presentation). Every record in the VAVL
partitions also gets `labels.consensus-av`: the class with the highest share in the VAVL consensus
files (labels_consensus_6class_M, shipped in vavl/data/partitions/CREMA-D), which the official
AuxFormer / VAVL code trains and scores on. It equals `labels.perceived-av` on 5,814 of the 5,820
clips; the other 6 tie in summaryTable.csv (e.g. "F:S") and the consensus files give the first of
the two 0.532 and the second 0.428, a definite class.

Folds: "speaker-5fold" (actor-disjoint, sex-balanced: 91 actors dealt into 5 folds) and the
VAVL partitions "vavl-1".."vavl-5" (shipped in vavl/data/partitions/CREMA-D, MIT) and HiCMAE's
"hicmae-1".."hicmae-5" (see hicmae.py; they score the intended label: prepare with the default label).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...core.labels import CREMA_D_CLASSES
from ...core.errors import DataError
from . import PARTITIONS, hicmae, number, read_csv, speaker_folds, vavl_partitions

CLASSES = CREMA_D_CLASSES
EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
VOTES = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
LABELS = ("intended", "perceived-av", "perceived-audio", "perceived-video", "soft")
# summaryTable.csv column and tabulatedVotes.csv row-id prefix of each presentation
PRESENTATION = {"perceived-audio": ("VoiceVote", "1"), "perceived-video": ("FaceVote", "2"),
                "perceived-av": ("MultiModalVote", "3"), "soft": ("MultiModalVote", "3")}
SUMMARY_COLUMNS = tuple(sorted({col for col, _ in PRESENTATION.values()}))
AUDIO_ALIASES = {"1040_ITH_SAD_XX": "1040_ITH_SAD_X"}   # the only audio file not named as its clip
# reported in github.com/CheyneyComputerScience/CREMA-D/issues/8
KNOWN_BAD = {
    "1076_MTI_NEU_XX": "the audio does not play and the video has no sound",
    "1076_MTI_SAD_XX": "the audio is silent and the video shows no face",
    "1064_TIE_SAD_XX": "the video (and mp3) have no duration",
    "1064_IEO_DIS_MD": "the video (and mp3) run about a minute and hold several emotions",
}
CLIP_ID = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")


def parse_id(clip_id: str) -> dict[str, str]:
    m = CLIP_ID.fullmatch(clip_id)
    if not m or m[3] not in EMOTIONS or m[4] not in LEVELS:
        raise DataError(f"{clip_id!r} is not a CREMA-D clip id like 1001_DFA_ANG_XX")
    return {"speaker": m[1], "sentence": m[2], "intended": EMOTIONS[m[3]], "intensity": LEVELS[m[4]]}


def majority(vote: str) -> str | None:
    """'N' -> 'neutral'; a tie such as 'N:S' (or an empty cell) -> None."""
    return VOTES.get(vote.strip()) if vote and ":" not in vote else None


def consensus_labels() -> dict[str, str]:
    """clip id -> the class with the highest share in the shipped VAVL consensus files (the same in
    all five partition files; a clip in none of them is absent)."""
    out: dict[str, str] = {}
    for k in range(1, 6):
        path = PARTITIONS / "CREMA-D" / f"label_consensus_6class_M_{k}.csv"
        for row in read_csv(path, required=("FileName", *CLASSES)):
            shares = {c: number(row[c], f"{path}: {row['FileName']} {c}", float) for c in CLASSES}
            out[Path(row["FileName"]).stem] = max(shares, key=shares.get)
    return out


def vote_distributions(path: Path, prefix: str) -> dict[str, dict[str, float]]:
    """clip id -> {class: share of responses} for one presentation of tabulatedVotes.csv
    (its row ids start with 1 audio, 2 video, 3 audio-visual)."""
    out = {}
    for n, row in enumerate(read_csv(path, required=("", "fileName", *VOTES)), 2):
        if not row[""].startswith(prefix):
            continue
        counts = {VOTES[k]: number(row[k], f"{path}:{n}: column {k}", int) for k in VOTES}
        total = sum(counts.values())
        if total:
            out[row["fileName"]] = {k: v / total for k, v in counts.items()}
    return out


def index(root: str | os.PathLike, label: str = "intended", metadata_dir: str | os.PathLike | None = None,
          **_: Any) -> list[dict[str, Any]]:
    root = Path(root)
    if label not in LABELS:
        raise DataError(f"CREMA-D label {label!r} is not one of {LABELS}")
    meta = Path(metadata_dir) if metadata_dir else None
    places = (meta,) if meta else (root / "processedResults", root)

    def locate(name: str) -> Path | None:
        return next((p / name for p in places if (p / name).is_file()), None)

    summary_path = locate("summaryTable.csv")
    if summary_path is None:
        raise DataError(f"{root}: summaryTable.csv not found in {' or '.join(map(str, places))}; "
                        "point --metadata-dir at the CREMA-D processedResults folder")
    summary = {row["FileName"]: row for row in read_csv(summary_path, required=("FileName", *SUMMARY_COLUMNS))}
    names_path = locate("SentenceFilenames.csv")
    ids = [row["Filename"] for row in read_csv(names_path, required=("Filename",))] if names_path else list(summary)
    demo_path = locate("VideoDemographics.csv")
    demographics = {row["ActorID"]: row for row in read_csv(demo_path, required=("ActorID",))} if demo_path else {}
    distributions = {}
    if label != "intended":
        votes_path = locate("tabulatedVotes.csv")
        if votes_path is None and label == "soft":
            raise DataError(f"{root}: tabulatedVotes.csv not found; it holds the vote counts soft labels need")
        if votes_path is not None:
            distributions = vote_distributions(votes_path, PRESENTATION[label][1])
    partitions = vavl_partitions("CREMA-D", "label_consensus_6class_M")
    consensus = consensus_labels()

    parsed = {clip_id: parse_id(clip_id) for clip_id in ids}
    genders = {p["speaker"]: _gender(demographics.get(p["speaker"])) for p in parsed.values()}
    folds = speaker_folds(genders, 5)
    records = []
    for clip_id in ids:
        info = parsed[clip_id]
        row = summary.get(clip_id)
        perceived = {name: majority(row[col]) if row else None for name, (col, _) in PRESENTATION.items()}
        rec: dict[str, Any] = {
            "id": clip_id,
            "speaker": info["speaker"],
            "gender": genders[info["speaker"]],
            "audio": str((root / "AudioWAV" / f"{_audio_name(root, clip_id)}.wav").resolve()),
            "video": str((root / "VideoFlash" / f"{clip_id}.flv").resolve()),
            "label": info["intended"] if label == "intended" else perceived[label],
            "sentence": info["sentence"],
            "intensity": info["intensity"],
            "labels": {"intended": info["intended"], **{k: v for k, v in perceived.items() if k != "soft"},
                       "consensus-av": consensus.get(clip_id)},
        }
        if clip_id in distributions:
            rec["label_distribution"] = distributions[clip_id]
        rec["folds"] = {"speaker-5fold": folds[info["speaker"]],
                        **{p: split[clip_id] for p, split in partitions.items() if clip_id in split},
                        **hicmae.folds("crema-d", hicmae.crema_d_fold(clip_id))}
        records.append(rec)
    return records


def _audio_name(root: Path, clip_id: str) -> str:
    """CREMA-D ships one clip's audio under another name: 1040_ITH_SAD_X.wav for 1040_ITH_SAD_XX."""
    if clip_id in AUDIO_ALIASES and not (root / "AudioWAV" / f"{clip_id}.wav").exists():
        return AUDIO_ALIASES[clip_id]
    return clip_id


def _gender(row: dict[str, str] | None) -> str | None:
    sex = (row or {}).get("Sex", "").lower()
    return sex if sex in ("male", "female") else None

"""A synthetic MAFW corpus in MAFW's release layout (vavl/data/corpora/mafw.py):

    data/clips/NNNNN.mp4                                       empty files (indexing never decodes media)
    Train & Test Set/single/no_caption/set_k/{train,test}.txt  "00025.mp4 anger"
    Train & Test Set/compound/no_caption/set_k/{train,test}.txt "00019.mp4 anger_disgust"

Labels are made up (class i % 11 of the clip's position); only the layout and the fold
membership are MAFW's.
"""
from __future__ import annotations

from pathlib import Path

CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
           "helplessness", "disappointment")
COMPOUNDS = ("anger_disgust", "sadness_helplessness", "fear_surprise", "surprise_anxiety", "anger_disgust_anxiety")
SETS = "Train & Test Set"


def build_mafw(root: Path, single: dict[str, int], compound_only: dict[str, int] | None = None,
               not_in_compound: tuple[str, ...] = (), media: bool = True) -> dict[str, dict]:
    """Write the corpus. `single`: clip id -> test set (1-5) of the single-label clips, which the
    compound lists hold too (same set, same emotion) unless named in `not_in_compound`;
    `compound_only`: clip id -> test set of the multi-emotion clips. Returns clip -> {"single", "compound"}."""
    compound_only = compound_only or {}
    truth = {}
    for i, clip in enumerate(sorted(single)):
        truth[clip] = {"single": CLASSES[i % len(CLASSES)],
                       "compound": None if clip in not_in_compound else CLASSES[i % len(CLASSES)]}
    for i, clip in enumerate(sorted(compound_only)):
        truth[clip] = {"single": None, "compound": COMPOUNDS[i % len(COMPOUNDS)]}
    fold = {**single, **compound_only}
    lists = {"single": {c: (fold[c], t["single"]) for c, t in truth.items() if t["single"]},
             "compound": {c: (fold[c], t["compound"]) for c, t in truth.items() if t["compound"]}}
    for kind, entries in lists.items():
        for k in range(1, 6):
            folder = root / SETS / kind / "no_caption" / f"set_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for split in ("train", "test"):
                lines = [f"{c}.mp4 {label}\n" for c, (fold, label) in entries.items() if (fold == k) == (split == "test")]
                (folder / f"{split}.txt").write_text("".join(lines))
    if media:
        (root / "data" / "clips").mkdir(parents=True, exist_ok=True)
        for clip in truth:
            (root / "data" / "clips" / f"{clip}.mp4").touch()
    return truth


def read_folds(path: Path) -> dict[str, int]:
    """tests/fixtures/hicmae-splits/mafw_single_folds.txt: clip id -> MAFW single-label set."""
    return {clip: int(k) for clip, k in (line.split() for line in path.read_text().splitlines() if line.strip())}

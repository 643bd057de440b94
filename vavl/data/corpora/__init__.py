"""Corpus indexers: a corpus folder in its own layout -> manifest records (see vavl/data/manifest.py).

Each module has `index(root, **options) -> list[dict]`. Records carry the media paths the corpus
lists; `vavl.data.prepare` checks that they exist and applies the missing-media policy. Indexing
never decodes media.
"""
from __future__ import annotations

import csv
import importlib
from pathlib import Path
from typing import Any, Callable

from ...errors import DataError

CORPORA = {
    "crema-d": "vavl.data.corpora.crema_d",
    "ravdess": "vavl.data.corpora.ravdess",
    "msp-improv": "vavl.data.corpora.msp_improv",
    "custom": "vavl.data.corpora.custom",
}
PARTITIONS = Path(__file__).resolve().parents[1] / "partitions"


def get_indexer(name: str) -> Callable[..., list[dict[str, Any]]]:
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; choose one of {sorted(CORPORA)}")
    return importlib.import_module(CORPORA[name]).index


def speaker_folds(speakers: dict[str, str | None], n_folds: int) -> dict[str, int]:
    """Speaker -> test-fold index, disjoint by speaker and balanced by gender: speakers sorted
    within each gender and dealt round-robin, so every fold holds both genders."""
    by_gender: dict[str, list[str]] = {}
    for spk, gender in speakers.items():
        by_gender.setdefault(str(gender), []).append(spk)
    folds, i = {}, 0
    for gender in sorted(by_gender):
        for spk in sorted(by_gender[gender]):
            folds[spk] = i % n_folds
            i += 1
    return folds


def read_csv(path: Path) -> list[dict[str, str]]:
    """A CSV as a list of row dicts (header from the first line, CRLF or LF, BOM tolerated)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]


def vavl_partitions(corpus: str, stem: str) -> dict[str, dict[str, str]]:
    """The five VAVL partitions shipped in the package: protocol ("vavl-1".."vavl-5") ->
    {clip id: "train" | "dev" | "test"}. Clips a partition leaves out are absent."""
    split_names = {"train": "train", "development": "dev", "test": "test"}
    out = {}
    for k in range(1, 6):
        rows = read_csv(PARTITIONS / corpus / f"{stem}_{k}.csv")
        out[f"vavl-{k}"] = {Path(r["FileName"]).stem: split_names[r["Split_Set"].lower()] for r in rows}
    return out


def find_file(root: Path, names: tuple[str, ...], explicit: str | Path | None = None) -> Path | None:
    """`explicit` if given, else the first of root/<name> that exists."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        return path
    for name in names:
        if (root / name).is_file():
            return root / name
    return None

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

from ...core.errors import DataError

CORPORA = {
    "crema-d": "vavl.data.corpora.crema_d",
    "ravdess": "vavl.data.corpora.ravdess",
    "msp-improv": "vavl.data.corpora.msp_improv",
    "mafw": "vavl.data.corpora.mafw",
    "custom": "vavl.data.corpora.custom",
}
CORPORA["iemocap"] = "vavl.data.corpora.iemocap"
CORPORA["msp-podcast"] = "vavl.data.corpora.msp_podcast"
CORPORA["meld"] = "vavl.data.corpora.meld"
PARTITIONS = Path(__file__).resolve().parents[1] / "partitions"


def get_indexer(name: str) -> Callable[..., list[dict[str, Any]]]:
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; choose one of {sorted(CORPORA)}")
    return importlib.import_module(CORPORA[name]).index


def known_bad(name: str) -> dict[str, str]:
    """Clip id -> what is wrong with it, for clips known to be broken in the released corpus
    (the indexer module's KNOWN_BAD; empty when it has none)."""
    return dict(getattr(importlib.import_module(CORPORA[name]), "KNOWN_BAD", {})) if name in CORPORA else {}


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


def read_csv(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """A CSV as a list of row dicts (header from the first line, CRLF or LF, BOM tolerated).
    `required`: columns the header must have. DataError naming the file for anything unreadable."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None}   # None: extra cells
                    for row in reader]
            header = [(k or "").strip() for k in reader.fieldnames or []]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text table (is it a binary file?); give a CSV file") from None
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV ({e}); give a comma-separated table with a header line") from None
    lacking = [c for c in required if c not in header]
    if lacking:
        raise DataError(f"{path}: lacks the column(s) {', '.join(map(repr, lacking))} (found {header[:8]}); "
                        "is it the right file?")
    return rows


def number(value: str, where: str, kind=float):
    """float(value) / int(value), or a DataError that says where the value came from."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise DataError(f"{where}: {value!r} is not {what}") from None


def vavl_partitions(corpus: str, stem: str) -> dict[str, dict[str, str]]:
    """The five VAVL partitions shipped in the package: protocol ("vavl-1".."vavl-5") ->
    {clip id: "train" | "dev" | "test"}. Clips a partition leaves out are absent."""
    split_names = {"train": "train", "development": "dev", "test": "test"}
    out = {}
    for k in range(1, 6):
        rows = read_csv(PARTITIONS / corpus / f"{stem}_{k}.csv", required=("FileName", "Split_Set"))
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

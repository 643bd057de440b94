"""Label maps for cross-corpus evaluation: a model trained on one corpus scored on another.

    vavl evaluate --model crema_model --manifest ravdess.jsonl --label-map ravdess-to-crema-d --out report

A map sends each of the test corpus' labels to one of the model's classes, or to null (dropped:
the clip is left out and counted). A preset name or a file: JSON (`{"calm": "neutral",
"surprised": null}`) or a two-column CSV `from,to` (an empty `to` drops). A label the map does not
name is kept when it already is a model class; any other label is an error that lists it, so
nothing is dropped without being asked.
"""
from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any

from ..core.errors import DataError

CREMA_D = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral", "sad": "sad"}
PRESETS: dict[str, dict[str, str | None]] = {
    # RAVDESS: calm is closest to neutral; surprised has no CREMA-D class
    "ravdess-to-crema-d": {"neutral": "neutral", "calm": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
                           "fearful": "fear", "disgust": "disgust", "surprised": None},
    "ravdess-to-crema-d-no-calm": {"neutral": "neutral", "calm": None, "happy": "happy", "sad": "sad", "angry": "angry",
                                   "fearful": "fear", "disgust": "disgust", "surprised": None},
    # IEMOCAP (4class or 6class names): excited joins happy as in the usual 4-class set; frustrated is dropped
    "iemocap-to-crema-d": {"angry": "angry", "happy": "happy", "excited": "happy", "neutral": "neutral", "sad": "sad",
                           "frustrated": None},
    "meld-to-crema-d": {"anger": "angry", "disgust": "disgust", "fear": "fear", "joy": "happy", "neutral": "neutral",
                        "sadness": "sad", "surprise": None},
    "msp-podcast-to-crema-d": {**CREMA_D, "surprise": None, "contempt": None},
}


def load_label_map(spec: str | os.PathLike) -> tuple[str, dict[str, str | None]]:
    """(name, mapping) of a preset name or a .json / .csv file."""
    if str(spec) in PRESETS:
        return str(spec), dict(PRESETS[str(spec)])
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"label map {str(spec)!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a file")
    if path.suffix.lower() == ".json":
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not a JSON label map ({e}); write {{\"calm\": \"neutral\", \"surprised\": null}}") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, (str, type(None))) for v in mapping.values()):
            raise DataError(f"{path}: a label map is one JSON object of label -> class name or null")
        return path.name, mapping
    from .corpora import read_csv

    rows = read_csv(path, required=("from", "to"))
    return path.name, {r["from"]: r["to"] or None for r in rows}


def apply_label_map(records: list[dict[str, Any]], mapping: dict[str, str | None], classes, source: str = "label map"
                    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Records relabelled by `mapping` (copies), those mapped to null left out, and the count of
    dropped clips per original label. Clips without a label pass unchanged."""
    classes = set(classes)
    bad_targets = sorted({v for v in mapping.values() if v is not None and v not in classes})
    if bad_targets:
        raise DataError(f"{source}: maps to {bad_targets}, which are not classes of the model ({sorted(classes)}); "
                        "map them to null to drop them")
    unmapped = sorted({r["label"] for r in records if r.get("label") is not None and r["label"] not in mapping
                       and r["label"] not in classes})
    if unmapped:
        raise DataError(f"{source}: the manifest's labels {unmapped} are not model classes and the map does not name "
                        f"them; map each to one of {sorted(classes)} or to null")
    kept, dropped = [], collections.Counter()
    for r in records:
        label = r.get("label")
        if label is None or label not in mapping:
            kept.append(r)
        elif mapping[label] is None:
            dropped[label] += 1
        else:
            kept.append({**r, "label": mapping[label], "label_before_map": label})
    return kept, dict(sorted(dropped.items()))

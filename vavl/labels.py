"""Label sets and label constants shared by data, models and metrics (nothing here imports vavl)."""
from __future__ import annotations

IGNORE_INDEX = -100  # a clip without a usable label (tied votes, missing label): losses and metrics skip it

# CREMA-D's six emotions in vavl's (alphabetical) class order
CREMA_D_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad")


def id2label(classes) -> dict[int, str]:
    """("angry", "sad") -> {0: "angry", 1: "sad"}, the transformers config field."""
    return dict(enumerate(classes))

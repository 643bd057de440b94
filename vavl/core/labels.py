"""Label sets and label constants shared by data, models and metrics (nothing here imports vavl)."""
from __future__ import annotations

IGNORE_INDEX = -100  # a clip without a usable label (tied votes, missing label): losses and metrics skip it

# CREMA-D's six emotions in vavl's (alphabetical) class order
CREMA_D_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad")

# The orders the official AuxFormer and VAVL code train and save in: class k of an official
# checkpoint is OFFICIAL_CLASSES[corpus][k] (config/config_files/crema-d/six.json and
# improv/four.json of both repositories), and a dimensional checkpoint's outputs are
# OFFICIAL_ATTRIBUTES (utils/data_manager.py reads EmoAct, EmoDom, EmoVal in that order).
OFFICIAL_CLASSES = {
    "crema-d": ("angry", "sad", "disgust", "fear", "neutral", "happy"),
    "msp-improv": ("angry", "sad", "neutral", "happy"),
}
OFFICIAL_ATTRIBUTES = ("arousal", "dominance", "valence")


def id2label(classes) -> dict[int, str]:
    """("angry", "sad") -> {0: "angry", 1: "sad"}, the transformers config field."""
    return dict(enumerate(classes))

"""What an official AuxFormer / VAVL checkpoint's outputs mean: the class order or attribute order
and scale of the corpus it was trained on, as config fields for the converted model.

The official code trains classes in the order of its corpus config (CREMA-D: angry, sad, disgust,
fear, neutral, happy) and attributes as (arousal, dominance, valence), each normalised to
(x - 1) / 4 after flipping arousal (6 - x) in place on every read, so that its arousal targets alternate
between x and 6 - x from epoch to epoch (VAVL utils/dataset.py:79-83); the converted model maps outputs
back with output_scale 4 and output_offset 1 and predicts on the labels' 1-5 scale, with whichever
arousal orientation the checkpoint happened to learn.
"""
from __future__ import annotations

from ..core.errors import DataError
from ..core.labels import OFFICIAL_ATTRIBUTES, OFFICIAL_CLASSES, id2label

CORPORA = tuple(OFFICIAL_CLASSES)
CORPUS_NAMES = {"crema-d": "CREMA-D", "msp-improv": "MSP-IMPROV"}
TASKS = ("classification", "regression")


def label_fields(source, num_outputs: int, corpus: str | None, task: str = "classification",
                 labels: list[str] | None = None) -> dict:
    """Config fields naming the checkpoint's outputs. `labels` (class names in the checkpoint's
    order) overrides the corpus' official order; one of the two is needed for classification."""
    if task == "regression":
        if num_outputs != len(OFFICIAL_ATTRIBUTES):
            raise DataError(f"{source}: a dimensional checkpoint has {len(OFFICIAL_ATTRIBUTES)} outputs "
                            f"({', '.join(OFFICIAL_ATTRIBUTES)}), this one has {num_outputs}; is it categorical?")
        n = len(OFFICIAL_ATTRIBUTES)
        return {"task": "regression", "attributes": list(OFFICIAL_ATTRIBUTES),
                "output_scale": [4.0] * n, "output_offset": [1.0] * n}
    if task != "classification":
        raise DataError(f"task={task!r}: use one of {TASKS}")
    if labels is None:
        if corpus not in OFFICIAL_CLASSES:
            raise DataError(f"{source}: say what the {num_outputs} outputs are: --corpus {{{','.join(CORPORA)}}} "
                            "(the official class order) or --labels NAME,NAME,... (the checkpoint's order)")
        labels = list(OFFICIAL_CLASSES[corpus])
    if len(labels) != num_outputs:
        raise DataError(f"{source}: {num_outputs} outputs but {len(labels)} class names ({', '.join(labels)}); "
                        "check --corpus / --labels")
    return {"id2label": id2label(labels)}

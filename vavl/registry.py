"""Model registry in the timm manner: names `arch.tag` -> plain-data entries -> models.

    vavl.list_models("auxformer*")          # names
    vavl.create_model("auxformer", num_labels=4, audio_dim=768)
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

NO_WEIGHTS = "architecture only — no trained weights published yet"


@dataclass(frozen=True)
class ModelEntry:
    """One zoo entry: which class, which config, and what it was (or will be) trained on."""

    name: str                      # "arch.tag", e.g. "auxformer_w2v2l_effb2.crema_d"
    model_class: type              # a vavl PreTrainedModel subclass
    config: dict[str, Any] = field(default_factory=dict)  # defaults passed to model_class.config_class
    description: str = ""
    audio_encoder: str | None = None   # encoder preset name feeding audio_features
    visual_encoder: str | None = None  # encoder preset name feeding visual_features
    corpus: str | None = None
    labels: str | None = None          # label definition, e.g. "intended emotion, 6 classes"
    protocol: str | None = None        # e.g. "vavl-1 partition"
    recipe: str | None = None          # e.g. "recipes/configs/crema_d/auxformer.yaml"
    hub_id: str | None = None          # where trained weights live, when published
    paper: str | None = None
    status: str = NO_WEIGHTS

    @property
    def architecture(self) -> str:
        return self.name.split(".")[0]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY and _REGISTRY[entry.name] != entry:
        raise ValueError(f"model name {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; `pattern` is a shell-style wildcard ("vavl*", "*.crema_d")."""
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_entry(name: str) -> ModelEntry:
    """An entry by full name, or by architecture alone ("auxformer"): its first registered tag."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for entry in _REGISTRY.values():
        if entry.architecture == name:
            return entry
    for entry in _REGISTRY.values():  # a family name: "vavl" -> "vavl_w2v2l_effb2.crema_d"
        if entry.architecture.startswith(name + "_"):
            return entry
    close = [n for n in _REGISTRY if name.split(".")[0] in n][:5]
    hint = f" Did you mean one of {close}?" if close else " See vavl.list_models()."
    raise ConfigError(f"unknown model {name!r}.{hint}")


def create_model(
    name: str,
    pretrained: bool = False,
    audio_encoder: str | None = None,
    visual_encoder: str | None = None,
    pretrained_encoders: bool = False,
    **config_overrides: Any,
):
    """Build a registered model. Keyword arguments override the entry's config fields.

    With `audio_encoder` / `visual_encoder` (a preset name, a saved directory, or a timm
    name) the result is a full model that takes raw `input_values` / `pixel_values`.
    """
    entry = get_entry(name)
    if pretrained:
        if entry.hub_id is None:
            raise ConfigError(f"{name}: {entry.status}; create it with pretrained=False or train it with recipes/finetune.py")
        model = entry.model_class.from_pretrained(entry.hub_id, **config_overrides)
    else:
        defaults = dict(entry.config)
        if "id2label" in config_overrides or "num_labels" in config_overrides:  # the caller's labels win
            for key in ("id2label", "label2id", "num_labels"):
                defaults.pop(key, None)
        config = entry.model_class.config_class(**{**defaults, **config_overrides})
        model = entry.model_class(config)
    if audio_encoder is None and visual_encoder is None:
        return model
    from .models.with_encoders import AudioVisualModel  # encoders pull in timm / MTCNN: import lazily

    return AudioVisualModel.from_parts(
        model,
        audio_encoder=audio_encoder or entry.audio_encoder,
        visual_encoder=visual_encoder or entry.visual_encoder,
        pretrained_encoders=pretrained_encoders,
    )

"""Model registry in the timm manner: names `arch.tag` -> plain-data entries. Data only: the
model families fill it when imported, `vavl.models.factory.create_model` builds from it.

    vavl.list_models("auxformer*")          # names
    vavl.get_entry("auxformer_w2v2l_effb2.crema_d").corpus
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigError

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
    weights: str | None = None         # how to get published weights that are not on the Hub (markdown)
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
    """An entry by full name ("auxformer_w2v2l_effb2.crema_d"); by architecture ("auxformer"), its
    default (first registered) tag, as in timm; or by a family name that starts exactly one
    architecture ("vavl" -> "vavl_w2v2l_effb2"). A name that fits several architectures is an
    error that lists them."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    by_architecture: dict[str, list[str]] = {}
    for entry in _REGISTRY.values():
        by_architecture.setdefault(entry.architecture, []).append(entry.name)
    if name in by_architecture:
        return _REGISTRY[by_architecture[name][0]]
    family = sorted(arch for arch in by_architecture if arch.startswith(name + "_"))
    if len(family) == 1:
        return _REGISTRY[by_architecture[family[0]][0]]
    if family:
        names = [n for arch in family for n in by_architecture[arch]]
        raise ConfigError(f"model name {name!r} fits several architectures: {', '.join(names)}; give the full name")
    close = [n for n in sorted(_REGISTRY) if name.split(".")[0] in n][:5]
    hint = f" Did you mean one of {close}?" if close else " See vavl.list_models()."
    raise ConfigError(f"unknown model {name!r}.{hint}")

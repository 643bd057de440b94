"""One entry point for every encoder: a preset name, a saved folder, or a timm model name.

    build_encoder("wav2vec2-large-robust")  build_encoder("efficientnet_b2")  build_encoder("resnet18")
    build_encoder("runs/my_encoder")        # a saved encoder, or a transformers speech / Whisper / AST / VideoMAE folder
    encoder_spec(enc) -> dict; encoder_from_spec(spec)   # architecture only, for full-model configs
"""
from __future__ import annotations

import importlib
import json
import os
from typing import Any

from ..errors import ConfigError
from .base import Encoder, _load_presets, _PRESETS

CONFIG_NAME = "encoder_config.json"
# encoder kinds backed by one transformers model family: kind -> (module, model_type in config.json)
TRANSFORMERS_KINDS = {"whisper": ("vavl.encoders.whisper", "whisper"),
                      "ast": ("vavl.encoders.ast", "audio-spectrogram-transformer"),
                      "videomae": ("vavl.encoders.videomae", "videomae")}


def build_encoder(name_or_path: str | os.PathLike, pretrained: bool = False, **options) -> Encoder:
    """A preset name, a directory saved by transformers/vavl, or any timm model name -> Encoder."""
    name = str(name_or_path)
    if os.path.isdir(name):
        return load_encoder(name, **options)
    _load_presets()
    if name in _PRESETS:
        encoder = _PRESETS[name].build(pretrained=pretrained, **options)
        encoder._vavl_preset = (name, dict(options))
        return encoder
    import timm

    if timm.is_model(name):
        from . import faces

        return faces.from_timm(name, pretrained=pretrained, **options)
    known = ", ".join(sorted(_PRESETS))
    raise ConfigError(f"unknown encoder {name!r}: not a folder, a preset ({known}) or a timm model name")


def load_encoder(directory: str | os.PathLike, **options) -> Encoder:
    """A folder written by an encoder's save_pretrained, or a plain transformers speech model folder."""
    cfg_path = os.path.join(directory, CONFIG_NAME)
    saved = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    if "classic_preset" in saved:
        from . import classic

        return classic.build_from_config(directory, **options)
    if saved.get("kind") == "timm":
        from . import faces

        return faces.from_directory(directory, **options)
    kind = saved.get("kind") or _transformers_kind(directory)
    if kind in TRANSFORMERS_KINDS:
        return importlib.import_module(TRANSFORMERS_KINDS[kind][0]).from_directory(directory, **options)
    if saved.get("kind") == "speech" or os.path.exists(os.path.join(directory, "config.json")):
        from . import speech

        return speech.from_directory(directory, **options)
    raise ConfigError(f"{directory}: no encoder_config.json or config.json; save encoders with encoder.save_pretrained(dir)")


def _transformers_kind(directory) -> str | None:
    """The encoder kind of a plain transformers folder, from its config.json's model_type."""
    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        model_type = json.load(f).get("model_type")
    return next((kind for kind, (_, mt) in TRANSFORMERS_KINDS.items() if mt == model_type), None)


def encoder_spec(encoder: Encoder) -> dict[str, Any]:
    """A JSON-able description that rebuilds the encoder's architecture (random weights)."""
    if hasattr(encoder, "spec"):
        return encoder.spec()
    if getattr(encoder, "preset", None):  # hand-crafted encoders: preset name + options
        return {"kind": "classic", "classic_preset": encoder.preset, "options": dict(getattr(encoder, "options", {}))}
    if hasattr(encoder, "_vavl_preset"):
        name, options = encoder._vavl_preset
        return {"kind": "preset", "name": name, "options": options}
    raise ConfigError(f"{type(encoder).__name__}: cannot describe this encoder for saving; give it a spec() method")


def encoder_from_spec(spec: dict[str, Any]) -> Encoder:
    kind = spec.get("kind")
    if kind == "speech":
        from . import speech

        return speech.from_spec(spec)
    if kind == "timm":
        from . import faces

        return faces.from_spec(spec)
    if kind in TRANSFORMERS_KINDS:
        return importlib.import_module(TRANSFORMERS_KINDS[kind][0]).from_spec(spec)
    if kind == "classic":
        _load_presets()
        return _PRESETS[spec["classic_preset"]].build(False, **spec.get("options", {}))
    if kind == "preset":
        return build_encoder(spec["name"], pretrained=False, **spec.get("options", {}))
    raise ConfigError(f"unknown encoder spec kind {kind!r}")

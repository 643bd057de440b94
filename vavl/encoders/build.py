"""One entry point for every encoder: a preset name, a saved folder, or a timm model name.

    build_encoder("wav2vec2-large-robust")  build_encoder("efficientnet_b2")  build_encoder("resnet18")
    build_encoder("runs/my_encoder")        # a saved encoder, or a transformers speech / Whisper / AST / VideoMAE folder
    encoder_spec(enc) -> dict; encoder_from_spec(spec)   # architecture only, for full-model configs
    weights_identity(enc) -> {"weights": "pretrained" | "random-init" | "folder" | "none", "source", "sha256"}

`pretrained=True` fetches the upstream weights (or takes them from the local Hugging Face cache);
when they can be neither found nor downloaded, a ConfigError names the hub id and what to do.
`pretrained=False` builds the untrained network from `seed` (default 0, as `vavl extract --random-init`
does), so that the same name and seed always give the same weights; the seed is recorded with them.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..core.errors import ConfigError
from .base import Encoder, _load_presets, _PRESETS, unreachable_weights

CONFIG_NAME = "encoder_config.json"
# encoder kinds backed by one transformers model family: kind -> (module, model_type in config.json)
TRANSFORMERS_KINDS = {"whisper": ("vavl.encoders.whisper", "whisper"),
                      "ast": ("vavl.encoders.ast", "audio-spectrogram-transformer"),
                      "videomae": ("vavl.encoders.videomae", "videomae")}


def build_encoder(name_or_path: str | os.PathLike, pretrained: bool = True, seed: int = 0, **options) -> Encoder:
    """A preset name, a directory saved by transformers/vavl, or any timm model name -> Encoder.
    A name means its pretrained weights (hub or local Hugging Face cache); pretrained=False builds an
    untrained network of the same architecture, its weights drawn from `seed` (the global random
    state is left as it was). A folder always brings its own weights."""
    name = str(name_or_path)
    if os.path.isdir(name):
        return _mark(load_encoder(name, **options), "folder", str(Path(name).resolve()))
    _load_presets()
    if name in _PRESETS:
        source = _PRESETS[name].source
        with _fetching(name, source if pretrained else None), _seeded(None if pretrained else seed):
            encoder = _PRESETS[name].build(pretrained=pretrained, **options)
        encoder._vavl_preset = (name, dict(options))
        if not source:
            return _mark(encoder, "none", None)
        return _mark(encoder, "pretrained", source) if pretrained else _mark(encoder, "random-init", source, seed)
    import timm

    if timm.is_model(name):
        from . import faces

        cfg = timm.models.get_pretrained_cfg(name)
        source = cfg and (cfg.hf_hub_id or cfg.url) or None
        if pretrained and not source:
            raise ConfigError(f"{name}: timm publishes no pretrained weights for this model; pass a folder that holds "
                              "weights, or ask for an untrained network (--random-init, pretrained_encoders=False)")
        with _fetching(name, source if pretrained else None), _seeded(None if pretrained else seed):
            encoder = faces.from_timm(name, pretrained=pretrained, **({"source": source} if source else {}), **options)
        return _mark(encoder, "pretrained", source) if pretrained else _mark(encoder, "random-init", source, seed)
    known = ", ".join(sorted(_PRESETS))
    raise ConfigError(f"unknown encoder {name!r}: not a folder, a preset ({known}) or a timm model name")


@contextmanager
def _fetching(name: str, hub_id: str | None):
    """Turn "weights neither cached nor downloadable" into one line naming the hub id and what to do."""
    try:
        yield
    except OSError as e:
        if hub_id is None:
            raise
        raise unreachable_weights(hub_id, name, e) from None


@contextmanager
def _seeded(seed: int | None):
    """Untrained weights drawn from `seed` on the CPU generator, the caller's random state untouched."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _mark(encoder: Encoder, weights: str, source: str | None, seed: int | None = None) -> Encoder:
    """Record where the encoder's weights came from (read by weights_identity and full-model configs)."""
    encoder._vavl_weights = {"weights": weights, "source": source, **({"seed": seed} if seed is not None else {})}
    return encoder


def weights_identity(encoder: Encoder) -> dict[str, Any]:
    """Where the weights came from and a sha256 of their values (names, dtypes, shapes, bytes): equal
    hashes mean equal weights, whatever the name or folder they were loaded by."""
    digest = hashlib.sha256()
    for key, value in sorted(encoder.state_dict().items()):
        value = value.detach().to("cpu").contiguous()
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy())
    origin = getattr(encoder, "_vavl_weights", {"weights": "given", "source": None})
    return {**origin, "sha256": digest.hexdigest()}


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


def import_for_spec(spec: dict[str, Any] | None) -> None:
    """Import every module that `encoder_from_spec(spec)` needs (vavl's encoder module, the
    transformers model family, timm). Loading a full model calls this before transformers builds it
    on the meta device: a module first imported inside that context would create its module-level
    tensors there, and they hold no data (the AST encoder's first use failed so)."""
    if not isinstance(spec, dict):   # None, or a hand-edited wrong type: the model's __init__ refuses it in one line
        return
    kind = spec.get("kind")
    if kind == "speech":
        from transformers import AutoConfig, AutoModel

        from . import speech  # noqa: F401

        AutoModel._model_mapping[type(AutoConfig.for_model(spec["model_type"]))]   # imports the modeling module
    elif kind == "timm":
        import timm  # noqa: F401

        from . import faces  # noqa: F401
    elif kind in TRANSFORMERS_KINDS:
        importlib.import_module(TRANSFORMERS_KINDS[kind][0])
    elif kind in ("classic", "preset"):
        _load_presets()


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

"""What the transformers-backed encoders (Whisper, AST, VideoMAE) share: freezing, saving and
loading one folder, and loading hub weights with a check that every weight arrived.

A saved folder is the transformers model's own save_pretrained output (config.json +
model.safetensors), its feature extractor's preprocessor_config.json (audio), and
encoder_config.json: {"kind": ..., "name", "source", options...}. `spec()` is the same without
weights, so a full model's config rebuilds the architecture offline.
"""
from __future__ import annotations

import json
import os
import pickle
from typing import Any

import torch
from torch import nn

from ..core.errors import ConfigError
from .base import Encoder, unreachable_weights

CONFIG_NAME = "encoder_config.json"


class TransformersEncoder(Encoder):
    """A transformers model (`self.model`) plus this encoder's options. Subclasses set `kind` and
    implement `forward`, `options()` and, when they have one, `feature_extractor`."""

    kind = ""
    feature_extractor = None

    def __init__(self, model: nn.Module, freeze: bool = True, name: str | None = None, source: str | None = None):
        super().__init__()
        self.model, self.freeze, self.name, self.source = model, freeze, name, source
        if freeze:
            self.model.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.model.eval()  # a frozen backbone keeps dropout off
        return self

    def grad_enabled(self) -> bool:
        """Whether the backbone's forward records gradients (never for a frozen one)."""
        return torch.is_grad_enabled() and not self.freeze

    def options(self) -> dict[str, Any]:
        return {"freeze": self.freeze}

    def extra_state(self) -> dict[str, Any]:
        """Small learned values kept in encoder_config.json (e.g. layer weights)."""
        return {}

    def spec(self) -> dict[str, Any]:
        spec = {"kind": self.kind, "name": self.name, "source": self.source,
                "config": self.model.config.to_diff_dict(), **self.options()}
        if self.feature_extractor is not None:
            spec["feature_extractor"] = self.feature_extractor.to_dict()
        return spec

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from ..core.files import public_modes

        os.makedirs(directory, exist_ok=True)
        self.model.save_pretrained(directory)
        public_modes(directory)   # safetensors writes 0600 whatever the umask
        if self.feature_extractor is not None:
            self.feature_extractor.save_pretrained(directory)
        saved = {k: v for k, v in self.spec().items() if k not in ("config", "feature_extractor")}
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump({**saved, **self.extra_state()}, f, indent=2)


class LayerChoice:
    """Which hidden states a multi-layer encoder gives: the last layer, one of them (`layer`: 0 =
    the input to the first block, L = the last) or a learned softmax-weighted sum of all
    (`weighted`; the weights are kept in encoder_config.json)."""

    def choose_layers(self, n: int, layer: int | None, weighted: bool, what: str) -> None:
        """Check and set the choice for an encoder with `n` blocks (hidden states 0..n)."""
        if layer is not None and not 0 <= layer <= n:
            raise ConfigError(f"layer={layer}: {what} has hidden states 0..{n}")
        if weighted and layer is not None:
            raise ConfigError("give either layer=... or weighted=True, not both")
        self.layer, self.weighted = layer, weighted
        self.layer_weights = nn.Parameter(torch.zeros(n + 1)) if weighted else None

    def mix(self, states) -> torch.Tensor:
        """Hidden states, each (b, t, d), from the input up to the chosen layer at least -> the output."""
        if self.weighted:
            return torch.einsum("l,lbtd->btd", self.layer_weights.softmax(0), torch.stack(tuple(states)))
        return states[-1 if self.layer is None else self.layer]

    def extra_state(self) -> dict[str, Any]:
        return {} if self.layer_weights is None else {"layer_weights": self.layer_weights.detach().cpu().tolist()}

    def load_layer_weights(self, saved: list[float] | None) -> None:
        """Learned layer weights from a saved folder, when they fit this encoder's choice."""
        if saved is not None and self.layer_weights is not None and len(saved) == len(self.layer_weights):
            self.layer_weights.data = torch.tensor(saved)


def read_saved(directory: str | os.PathLike) -> dict[str, Any]:
    """encoder_config.json of a folder ({} for a plain transformers folder)."""
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def quiet_hub() -> None:
    """For command-line runs: one line per problem on stderr. No loading bars or notices from
    transformers, and no retry warnings from huggingface_hub (offline, it retries five times
    before giving up; the error that follows says what to do)."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logging.set_verbosity_error()


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def require_safetensors(directory) -> None:
    """A local encoder folder must hold its weights as safetensors: one with only pickled weights
    (pytorch_model.bin ...) is refused in one line, before anything is unpickled."""
    from pathlib import Path

    folder = Path(directory)
    if not folder.is_dir() or any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ConfigError(f"{folder}: the weights are only in {pickles[0]}, a pickle (loading one can run code); vavl "
                          "loads encoder folders from safetensors files only: where you trust the file, load it and "
                          "save it again with save_pretrained (which writes model.safetensors)")


def load_weights(model_class, source: str, part: str | None = None, allow_pickle: bool = False) -> nn.Module:
    """`model_class.from_pretrained(source)` in float32 (a hub id or a folder). Raises ConfigError
    when a weight of the model (or of its sub-module `part`) was not in the checkpoint, instead
    of going on with random weights. transformers' load report is kept quiet: the weights left
    out on purpose (a decoder, a classifier) are not news, and missing ones raise here. A local
    folder with pickled weights only is refused unless allow_pickle (an official checkpoint read
    by a converter; transformers then unpickles tensors only)."""
    from transformers.utils import logging as hf_logging

    if not allow_pickle:
        require_safetensors(source)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = model_class.from_pretrained(str(source), dtype=torch.float32, output_loading_info=True)
    except OSError as e:  # not cached and not downloadable
        raise unreachable_weights(str(source), model_class.__name__, e) from None
    except (ValueError, KeyError) as e:
        raise ConfigError(f"{source}: cannot load {model_class.__name__} weights ({str(e).splitlines()[0]})") from None
    except pickle.UnpicklingError:   # transformers unpickles tensors only; its message advises turning that off
        raise ConfigError(f"{source}: the pickled weights hold more than tensors and were not loaded (vavl unpickles "
                          "tensors only); use a safetensors copy of the weights") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    prefix = f"{part}." if part else ""
    missing = sorted(k for k in info["missing_keys"] if k.startswith(prefix))
    if missing:
        raise ConfigError(f"{source}: the checkpoint has no {model_class.__name__} weights for {len(missing)} tensors "
                          f"(e.g. {missing[:2]}); is it the right kind of model?")
    return getattr(model, part) if part else model


def feature_extractor_from(extractor_class, source: str, defaults: dict[str, Any]):
    """The feature extractor saved with the weights (hub id or folder), else one built from `defaults`."""
    try:
        return extractor_class.from_pretrained(str(source))
    except OSError:
        return extractor_class(**defaults)


def extractor_from_dict(extractor_class, settings: dict[str, Any] | None, defaults: dict[str, Any]):
    """A feature extractor from a spec's saved settings (or `defaults` when the spec has none)."""
    return extractor_class.from_dict(dict(settings)) if settings else extractor_class(**defaults)

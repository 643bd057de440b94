"""Loading a trained model: `load_model("runs/auxformer")` -> the model in eval mode.

Used by `vavl predict`, `vavl evaluate`, `vavl analyze` and the fine-tune recipe alike. Loading is
strict: the folder's weights must be exactly the model's (no parameter missing, none left over).
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from ..core.errors import ConfigError


def load_model(model, device: str = "cpu", media: bool = False):
    """A save_pretrained folder, a zoo name with published weights, or a model -> the model in eval
    mode on `device`. media=True: it must take media files (an AudioVisualModel with encoders, or a
    model that scores test views with its own processor, such as HiCMAE)."""
    from .with_encoders import AudioVisualModel

    if isinstance(model, (str, os.PathLike)):
        name = str(model)
        if os.path.isdir(name):
            model = _from_folder(name)
        elif os.path.exists(name):
            raise ConfigError(f"{name}: not a folder; give the folder a model was saved to (save_pretrained, "
                              "the output folder of recipes/finetune.py)")
        elif os.sep in name or "/" in name or name.startswith((".", "~")):   # a path, never a zoo name
            raise ConfigError(f"{name}: no such folder; give the folder a model was saved to (save_pretrained, "
                              "the output folder of recipes/finetune.py)")
        else:
            from .factory import create_model

            model = create_model(name, pretrained=True)
    if media and not (isinstance(model, AudioVisualModel) or getattr(model, "takes_views", False)):
        raise ConfigError(f"{type(model).__name__} takes features, not media files: build a full model with "
                          "vavl.create_model(name, audio_encoder=..., visual_encoder=...)")
    return model.to(device).eval()


def _from_folder(path: str):
    from safetensors import SafetensorError
    from transformers import AutoModel

    from .. import models  # noqa: F401  (registers vavl's classes with AutoModel)

    if not Path(path, "config.json").is_file():
        raise ConfigError(f"{path}: no config.json; give a folder written by save_pretrained "
                          "(e.g. the output folder of recipes/finetune.py)")
    if not any(Path(path, f).is_file() for f in ("model.safetensors", "model.safetensors.index.json")):
        raise ConfigError(f"{path}: no model.safetensors; vavl loads weights from safetensors files only (a "
                          "pytorch_model.bin is a pickle, which can run code): re-save the model with save_pretrained "
                          "where you trust it")
    try:
        model, info = AutoModel.from_pretrained(path, output_loading_info=True, use_safetensors=True)
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise ConfigError(f"{path}: cannot load the model ({str(e).splitlines()[0]}); the folder may be incomplete: "
                          "copy or save it again") from None
    # transformers' own report, after its renames of legacy parameter names (AST's, wav2vec2's
    # weight norm): a parameter missing from the file or left over in it means the wrong folder
    missing, extra = sorted(info.get("missing_keys") or ()), sorted(info.get("unexpected_keys") or ())
    mismatched = [k for k, *_ in info.get("mismatched_keys") or ()]
    if missing or extra or mismatched:
        raise ConfigError(f"{path}: the weights do not fit the model in config.json ({len(missing)} missing, e.g. "
                          f"{missing[:3]}; {len(extra)} unexpected, e.g. {extra[:3]}; {len(mismatched)} of another "
                          "shape); save the model again with save_pretrained")
    return model


def takes_raw_media(model) -> bool:
    """Whether the model's forward takes waveforms / face crops (models with encoders)."""
    params = inspect.signature(model.forward).parameters
    return "input_values" in params or "pixel_values" in params

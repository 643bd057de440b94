"""Encoders: speech SSL models and Whisper / AST / VideoMAE (transformers), face backbones (timm),
hand-crafted features.

Presets register themselves from `speech.py`, `whisper.py`, `ast.py`, `faces.py`, `videomae.py`
and `classic.py` (base.PRESET_MODULES); see base.py for the interface every encoder follows and
hf.py for what the transformers-backed ones share.
"""
from .base import Encoder, EncoderPreset, get_encoder_preset, list_encoders, register_encoder


def build_encoder(name_or_path: str, pretrained: bool = True, **options) -> Encoder:
    """A preset name, a directory saved by transformers/vavl, or any timm model name -> Encoder.
    A name means its pretrained weights (hub or local Hugging Face cache); pretrained=False builds an
    untrained network of the same architecture. A folder always brings its own weights."""
    from .build import build_encoder as _build

    return _build(name_or_path, pretrained=pretrained, **options)


__all__ = ["Encoder", "EncoderPreset", "build_encoder", "get_encoder_preset", "list_encoders", "register_encoder"]

"""Building models from registry entries: `create_model("arch.tag", **overrides)`.

Above the registry and the model families: it may import any of them (full models with encoders
come from `vavl.models.with_encoders`)."""
from __future__ import annotations

from typing import Any

from ..core.errors import ConfigError
from .with_encoders import AudioVisualModel
from .registry import get_entry


def create_model(
    name: str,
    pretrained: bool = False,
    audio_encoder: str | None = None,
    visual_encoder: str | None = None,
    pretrained_encoders: bool = True,
    **config_overrides: Any,
):
    """Build a registered model. Keyword arguments override the entry's config fields.

    With `audio_encoder` / `visual_encoder` (a preset name, a saved directory, or a timm
    name) the result is a full model that takes raw `input_values` / `pixel_values`. Named
    encoders come with their pretrained weights (from the hub, or the local Hugging Face cache);
    `pretrained_encoders=False` builds them untrained, and the model's config says so.
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
        # nothing trained yet: predictions say so until a trainer records what it did (recipes/finetune.py)
        model.config.provenance = {"weights": "random-init", "model": entry.name}
    if audio_encoder is None and visual_encoder is None:
        return model
    return AudioVisualModel.from_parts(
        model,
        audio_encoder=audio_encoder or entry.audio_encoder,
        visual_encoder=visual_encoder or entry.visual_encoder,
        pretrained_encoders=pretrained_encoders,
    )

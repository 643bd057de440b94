"""Starting a model from weights trained elsewhere: `initialize_from(model, source)` (the fine-tune
recipe's `model.init`)."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import ConfigError
from .auxformer import load_official_auxformer
from .vavl import load_official_vavl


def _source_state(model, source: Path, labels: list[str] | None) -> dict:
    c = model.config
    names = {"task": "regression"} if c.task == "regression" else {"labels": labels or c.label_names}
    if source.is_dir() and (source / "config.json").is_file():
        from ..models.loading import load_model

        return load_model(str(source)).state_dict()
    if source.is_file():
        if not hasattr(c, "causal_mask"):
            raise ConfigError(f"{source}: an official AuxFormer checkpoint, but the model is {type(model).__name__}")
        return load_official_auxformer(source, num_heads=c.num_heads, causal_mask=c.causal_mask, **names).state_dict()
    if source.is_dir():
        if not hasattr(c, "framewise"):
            raise ConfigError(f"{source}: read as an official VAVL run folder, but the model is {type(model).__name__}")
        return load_official_vavl(source, num_heads=c.num_attention_heads, framewise=c.framewise, **names).state_dict()
    raise ConfigError(f"{source}: no such file or folder (model.init takes a save_pretrained folder, an official "
                      "AuxFormer final_head.pt or an official VAVL run folder)")


def initialize_from(model, source, labels: list[str] | None = None) -> None:
    source = Path(source)
    state, own = _source_state(model, source, labels), model.state_dict()
    params = {k for k, _ in model.named_parameters()}
    missing = sorted(params - set(state))
    wrong = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    extra = sorted(set(state) - set(own))
    if missing or wrong or extra:
        raise ConfigError(f"{source}: its weights do not fit {type(model).__name__} as configured (missing {missing[:3]}, "
                          f"other shapes {wrong[:3]}, unexpected {extra[:3]}); check model.config against the checkpoint")
    model.load_state_dict(state, strict=False)

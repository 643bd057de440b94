"""Registering vavl classes with the transformers Auto classes."""
from transformers import AutoConfig, AutoModel


def register_auto(config_class, model_class) -> None:
    """After this, AutoModel.from_pretrained(dir) rebuilds `model_class` from save_pretrained(dir)."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)

"""vavl: a model zoo for audio-visual emotion recognition.

    import vavl
    vavl.list_models()
    model = vavl.create_model("auxformer", num_labels=4, audio_dim=768)
    from transformers import AutoModel; AutoModel.from_pretrained(dir)   # works after import vavl

`import vavl` itself is light (no torch, no transformers), so the `vavl` command starts at once:
the public names below load on first use, and the model families register with the transformers
Auto classes as soon as transformers is imported (at once, if it already was; see `_autoload`).
"""
from . import _autoload
from .core.errors import ConfigError, DataError, MediaError, VavlError

__version__ = "0.1.0"

# public name -> the module that defines it; reading one imports every model family first, so the
# registry is complete
_LAZY = {
    "EmotionRecognitionOutput": "vavl.models.outputs",
    "ModelEntry": "vavl.models.registry",
    "get_entry": "vavl.models.registry",
    "list_models": "vavl.models.registry",
    "register_model": "vavl.models.registry",
    "create_model": "vavl.models.factory",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'vavl' has no attribute {name!r}")
    import importlib

    _autoload.register()   # every model family (and the pipeline task) registered
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def predict(path, model, **kwargs):
    """Emotion scores for one media file (see `vavl.inference.predict.predict`)."""
    from .inference.predict import predict as _predict

    return _predict(path, model=model, **kwargs)


_autoload.register_models_with_transformers()

__all__ = ["ConfigError", "DataError", "EmotionRecognitionOutput", "MediaError", "ModelEntry", "VavlError",
           "create_model", "get_entry", "list_models", "predict", "register_model"]

"""vavl: a model zoo for audio-visual emotion recognition.

    import vavl
    vavl.list_models()
    model = vavl.create_model("auxformer", num_labels=4, audio_dim=768)
    from transformers import AutoModel; AutoModel.from_pretrained(dir)   # works after import vavl
"""
from . import models  # noqa: F401  (registers configs/models with Auto classes and the zoo)
from .errors import ConfigError, DataError, MediaError, VavlError
from .outputs import EmotionRecognitionOutput
from .registry import ModelEntry, create_model, get_entry, list_models, register_model

__version__ = "0.1.0"


def predict(path, model, **kwargs):
    """Emotion scores for one media file (see `vavl.pipeline.predict`)."""
    from .pipeline import predict as _predict

    return _predict(path, model=model, **kwargs)


__all__ = ["ConfigError", "DataError", "EmotionRecognitionOutput", "MediaError", "ModelEntry", "VavlError",
           "create_model", "get_entry", "list_models", "predict", "register_model"]

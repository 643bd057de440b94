"""Model families. Importing this package registers every config/model with the transformers
Auto classes and every zoo entry with `vavl.registry`."""
from .. import _autoload
from . import auxformer, baselines, classic, correspondence, mult, vavl, with_encoders  # noqa: F401

_autoload.remove_watcher()  # registered: nothing left to wait for

__all__ = ["auxformer", "baselines", "classic", "correspondence", "mult", "vavl", "with_encoders"]

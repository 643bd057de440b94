"""Model families. Importing this package registers every config/model with the transformers
Auto classes and every zoo entry with `vavl.models.registry`."""
from . import auxformer, baselines, classic, correspondence, hicmae, mult, vavl, with_encoders  # noqa: F401

__all__ = ["auxformer", "baselines", "classic", "correspondence", "hicmae", "mult", "vavl", "with_encoders"]

"""Configurations of the simple baselines: unimodal audio / visual, early fusion, late fusion."""
from __future__ import annotations

from ...core.errors import ConfigError
from ..base import EmotionConfig, check_divides, check_positive_int, check_probability


class BaselineConfig(EmotionConfig):
    """Fields every baseline shares.

    hidden_size: width features are projected to. num_layers: Transformer layers over time in each
    modality branch (0 = projection and masked mean pooling only). num_attention_heads: must divide
    hidden_size when num_layers > 0. dropout: in the branches and heads.
    """

    model_type = "vavl_baseline"

    hidden_size: int = 256
    num_layers: int = 1
    num_attention_heads: int = 4
    dropout: float = 0.1

    def validate(self) -> None:
        super().validate()
        check_positive_int(self, "hidden_size")
        if not isinstance(self.num_layers, int) or self.num_layers < 0:
            raise ConfigError(f"num_layers={self.num_layers!r} must be an integer >= 0")
        if self.num_layers:
            check_divides(self, "hidden_size", "num_attention_heads")
        check_probability(self, "dropout")


class AudioOnlyConfig(BaselineConfig):
    """Audio features alone -> temporal encoder -> masked mean -> MLP. Only `audio_logits`."""

    model_type = "vavl_audio_only"


class VisualOnlyConfig(BaselineConfig):
    """Face features alone -> temporal encoder -> masked mean -> MLP. Only `visual_logits`."""

    model_type = "vavl_visual_only"


class EarlyFusionConfig(BaselineConfig):
    """Both branches pooled, concatenated, one MLP; unimodal heads on each pooled branch.

    absent: what stands in for a missing modality in the concatenation: "learned" (a trained
    embedding per modality) or "zeros".
    """

    model_type = "vavl_early_fusion"

    absent: str = "learned"

    def validate(self) -> None:
        super().validate()
        if self.absent not in ("learned", "zeros"):
            raise ConfigError(f"absent={self.absent!r} must be 'learned' or 'zeros'")


class LateFusionConfig(BaselineConfig):
    """Two unimodal models; the fused prediction averages their outputs.

    fuse: "logits" (mean of the two heads' outputs) or "probabilities" (log of the mean of the
    two softmax distributions; classification only). Regression always averages the predictions.
    """

    model_type = "vavl_late_fusion"

    fuse: str = "logits"

    def validate(self) -> None:
        super().validate()
        if self.fuse not in ("logits", "probabilities"):
            raise ConfigError(f"fuse={self.fuse!r} must be 'logits' or 'probabilities'")
        if self.fuse == "probabilities" and self.task == "regression":
            raise ConfigError("fuse='probabilities' needs a classification task; use fuse='logits' for regression")

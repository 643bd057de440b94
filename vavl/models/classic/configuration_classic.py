"""Configurations of the classic baselines on hand-crafted features (BiLSTM, face CNN, and their
early / late fusion). Class names carry "Classic" where the neural baselines have the same role
(vavl.models.baselines)."""
from __future__ import annotations

import math

from ...core.errors import ConfigError
from ..base import EmotionConfig, check_positive_int, check_probability


def image_shape(dim: int) -> tuple[int, int]:
    """A flattened (c h w) square image width -> (c, s) for c in 1, 2, 3 (unique: √2, √3 are
    irrational). Any other width is read as one channel, zero-padded to the next square."""
    for c in (1, 2, 3):
        s = math.isqrt(dim // c)
        if c * s * s == dim:
            return c, s
    return 1, math.isqrt(dim - 1) + 1


class ClassicConfig(EmotionConfig):
    """Shared fields of the classic baselines.

    hidden_size: LSTM width per direction, and the hidden width of the MLP heads.
    num_layers: stacked BiLSTM layers.
    cnn_channels: output channels of the CNN's 3x3 conv blocks (each halves the image side while
        it is at least 4 pixels). The CNN reads visual_dim as a flattened (c h w) square image,
        c = 1 (grey: face-grey, frame-diff), 2 (optical-flow grid) or 3 (face-rgb); other widths
        (e.g. neural embeddings) are zero-padded into a square one-channel "image".
    dropout: before each head (and between LSTM layers).
    """

    model_type = "vavl_classic"

    audio_dim: int = 40
    visual_dim: int = 48 * 48
    hidden_size: int = 64
    num_layers: int = 2
    cnn_channels: list[int] | None = None
    dropout: float = 0.1

    def __post_init__(self, **kwargs):
        self.cnn_channels = list(self.cnn_channels or (16, 32, 64))
        super().__post_init__(**kwargs)

    def validate(self) -> None:
        super().validate()
        check_positive_int(self, "hidden_size", "num_layers")
        if not self.cnn_channels or any(not isinstance(c, int) or c <= 0 for c in self.cnn_channels):
            raise ConfigError(f"cnn_channels={self.cnn_channels!r} must be a non-empty list of positive integers")
        check_probability(self, "dropout")


class BiLSTMConfig(ClassicConfig):
    model_type = "vavl_bilstm"


class FaceCNNConfig(ClassicConfig):
    model_type = "vavl_face_cnn"


class ClassicEarlyFusionConfig(ClassicConfig):
    model_type = "vavl_classic_early_fusion"


class ClassicLateFusionConfig(ClassicConfig):
    model_type = "vavl_classic_late_fusion"

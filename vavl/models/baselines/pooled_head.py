"""A speech head on mean-pooled frames: mean over time -> dropout -> dense -> tanh -> dropout -> out.

The shape of audeering's dimensional model head (`classifier.dense`, `classifier.out_proj` over the
time mean of wav2vec2's last layer), so `vavl convert audeering` can load its weights as they are.
Audio only: `audio_logits`; a clip without audio gets no prediction.
"""
from __future__ import annotations

import torch
from torch import nn

from ...core.errors import ConfigError
from ...nn.layers import masked_mean
from ..base import EmotionConfig, EmotionModel, check_probability


class PooledHeadConfig(EmotionConfig):
    """hidden_size: width of `dense` (None: audio_dim, as audeering's head). dropout: before
    `dense` and before `out_proj` (audeering's final_dropout)."""

    model_type = "vavl_pooled_head"

    hidden_size: int | None = None
    dropout: float = 0.1

    def validate(self) -> None:
        super().validate()
        if self.hidden_size is not None and (not isinstance(self.hidden_size, int) or self.hidden_size <= 0):
            raise ConfigError(f"hidden_size={self.hidden_size!r} must be a positive integer (or null for audio_dim)")
        check_probability(self, "dropout")


class PooledHeadForEmotionRecognition(EmotionModel):
    config_class = PooledHeadConfig

    def __init__(self, config: PooledHeadConfig):
        super().__init__(config)
        hidden = config.hidden_size or config.audio_dim
        self.dropout = nn.Dropout(config.dropout)
        self.dense = nn.Linear(config.audio_dim, hidden)
        self.out_proj = nn.Linear(hidden, config.num_labels)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask) -> dict[str, torch.Tensor]:
        pooled = masked_mean(audio, audio_mask)                                  # (b, d)
        h = torch.tanh(self.dense(self.dropout(pooled)))
        return {"audio_logits": self.out_proj(self.dropout(h)), "audio_embedding": pooled}

"""Unimodal baselines: audio only, visual only. Each has one head; the other modality is ignored."""
from __future__ import annotations

from ..base import EmotionModel
from .branch import Branch, head
from .configuration_baselines import AudioOnlyConfig, VisualOnlyConfig


class AudioOnlyForEmotionRecognition(EmotionModel):
    """Speech features -> Branch -> MLP. Returns `audio_logits` only (a clip without audio gets no prediction)."""

    config_class = AudioOnlyConfig

    def __init__(self, config: AudioOnlyConfig):
        super().__init__(config)
        self.audio_branch = Branch(config.audio_dim, config)
        self.audio_head = head(config, config.hidden_size)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        rep = self.audio_branch(audio, audio_mask)
        return {"audio_logits": self.audio_head(rep), "audio_embedding": rep}


class VisualOnlyForEmotionRecognition(EmotionModel):
    """Face features -> Branch -> MLP. Returns `visual_logits` only."""

    config_class = VisualOnlyConfig

    def __init__(self, config: VisualOnlyConfig):
        super().__init__(config)
        self.visual_branch = Branch(config.visual_dim, config)
        self.visual_head = head(config, config.hidden_size)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        rep = self.visual_branch(visual, visual_mask)
        return {"visual_logits": self.visual_head(rep), "visual_embedding": rep}

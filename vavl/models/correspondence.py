"""Audio-visual correspondence: does this audio belong to this silent video?

Two towers turn per-second audio and visual features (see vavl.evaluation.correspondence.pool_seconds)
into unit-length embeddings per second; the score of a pair is the mean cosine similarity of
the seconds both have, aligned in time, scaled and shifted into a logit. Aligned similarity
(not similarity of clip means) is what lets the model catch audio shifted within its own clip.

Axis letters: b batch, t seconds, d feature width, e embedding width, i videos, j audios.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from ..core.errors import ConfigError
from .registry import ModelEntry, register_model
from .auto import register_auto
from .base import check_positive_int, check_probability


class AVCorrespondenceConfig(PretrainedConfig):
    """audio_dim / visual_dim: widths of the per-second inputs (pool_seconds gives 2x the frame width:
        mean and standard deviation). hidden_size: tower width. embed_dim: shared embedding width.
    num_layers: residual temporal convolutions per tower. kernel_size: their span in seconds (odd).
    dropout: inside the towers. init_scale: initial logit scale of the cosine similarity."""

    model_type = "vavl_avc"

    audio_dim: int = 80
    visual_dim: int = 64
    hidden_size: int = 64
    embed_dim: int = 32
    num_layers: int = 2
    kernel_size: int = 3
    dropout: float = 0.1
    init_scale: float = 5.0

    def __post_init__(self, **kwargs: Any):
        super().__post_init__(**kwargs)
        self.validate()

    def validate(self) -> None:
        check_positive_int(self, "audio_dim", "visual_dim", "hidden_size", "embed_dim", "num_layers", "kernel_size")
        if self.kernel_size % 2 != 1:
            raise ConfigError(f"kernel_size={self.kernel_size} must be odd (the convolution keeps the length)")
        check_probability(self, "dropout")
        if self.init_scale <= 0:
            raise ConfigError(f"init_scale={self.init_scale} must be > 0")


@dataclass
class CorrespondenceOutput(ModelOutput):
    """loss: binary cross-entropy against labels (1 matched, 0 mismatched).
    logits: (b,) matched-ness of each pair. similarity: (b,) mean aligned cosine similarity.
    audio_embeddings / visual_embeddings: (b, t, e) unit vectors per second (zeros where masked)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    similarity: torch.Tensor | None = None
    audio_embeddings: torch.Tensor | None = None
    visual_embeddings: torch.Tensor | None = None


class Tower(nn.Module):
    """(b, t, d), (b, t) -> (b, t, e): per-second MLP, residual temporal convolutions (masked
    frames are zeroed before every convolution, so padding never leaks in), unit-length output."""

    def __init__(self, in_dim: int, config: AVCorrespondenceConfig):
        super().__init__()
        h = config.hidden_size
        self.inp = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, h), nn.GELU())
        self.convs = nn.ModuleList(nn.Conv1d(h, h, config.kernel_size, padding=config.kernel_size // 2)
                                   for _ in range(config.num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(config.num_layers))
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(h, config.embed_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        h = self.inp(x) * m
        for conv, norm in zip(self.convs, self.norms):
            h = (h + self.drop(F.gelu(conv(norm(h).mul(m).transpose(1, 2)).transpose(1, 2)))) * m
        return F.normalize(self.out(h), dim=-1) * m


class AVCorrespondenceModel(PreTrainedModel):
    """Two towers + aligned cosine similarity (see module docstring)."""

    config_class = AVCorrespondenceConfig
    base_model_prefix = "avc"
    main_input_name = "audio_features"

    def __init__(self, config: AVCorrespondenceConfig):
        super().__init__(config)
        self.audio_tower = Tower(config.audio_dim, config)
        self.visual_tower = Tower(config.visual_dim, config)
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.init_scale)))
        self.bias = nn.Parameter(torch.zeros(()))
        self.post_init()

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """Four pairs of 3-6 seconds (labels 1, 0, 1, 0), padded, for tests."""
        cfg, g = self.config, torch.Generator().manual_seed(0)
        b, t = 4, 6
        lengths = torch.tensor([6, 4, 3, 5])
        mask = torch.arange(t)[None] < lengths[:, None]
        return {"audio_features": torch.randn(b, t, cfg.audio_dim, generator=g), "audio_mask": mask,
                "visual_features": torch.randn(b, t, cfg.visual_dim, generator=g), "visual_mask": mask.clone(),
                "labels": torch.tensor([1.0, 0.0, 1.0, 0.0])}

    def embed(self, features: torch.Tensor, mask: torch.Tensor | None, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, t, d), (b, t) -> (b, t, e) unit embeddings per second (zeros where masked), (b, t) mask."""
        dim = self.config.audio_dim if modality == "audio" else self.config.visual_dim
        if features is None or features.dim() != 3 or features.shape[-1] != dim:
            shape = None if features is None else tuple(features.shape)
            raise ValueError(f"{modality}_features has shape {shape}; expected (batch, seconds, {modality}_dim={dim}) "
                             "— correspondence needs both modalities, pooled per second (vavl.evaluation.correspondence.pool_seconds)")
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device) if mask is None else mask.bool()
        tower = self.audio_tower if modality == "audio" else self.visual_tower
        return tower(features * mask.unsqueeze(-1).to(features.dtype), mask), mask

    def score(self, similarity: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * similarity + self.bias

    def forward(self, audio_features: torch.Tensor | None = None, audio_mask: torch.Tensor | None = None,
                visual_features: torch.Tensor | None = None, visual_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs: Any) -> CorrespondenceOutput:
        a, am = self.embed(audio_features, audio_mask, "audio")    # (b, ta, e)
        v, vm = self.embed(visual_features, visual_mask, "visual")  # (b, tv, e)
        t = min(a.shape[1], v.shape[1])
        both = am[:, :t] & vm[:, :t]                 # seconds both modalities have
        cos = (a[:, :t] * v[:, :t]).sum(-1)          # (b, t)
        similarity = (cos * both).sum(1) / both.sum(1).clamp(min=1)
        logits = self.score(similarity)
        loss = None
        if labels is not None:
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return CorrespondenceOutput(loss=loss, logits=logits, similarity=similarity, audio_embeddings=a, visual_embeddings=v)

    @torch.no_grad()
    def similarity_matrix(self, audio_features, audio_mask, visual_features, visual_mask) -> torch.Tensor:
        """Logits of every (video i, audio j) pair: (n_v, n_a). For retrieval (recall@k)."""
        a, am = self.embed(audio_features, audio_mask, "audio")
        v, vm = self.embed(visual_features, visual_mask, "visual")
        t = min(a.shape[1], v.shape[1])
        cos = torch.einsum("ite,jte->ijt", v[:, :t], a[:, :t])
        both = vm[:, None, :t].float() * am[None, :, :t].float()  # (i, j, t)
        return self.score((cos * both).sum(-1) / both.sum(-1).clamp(min=1))


register_auto(AVCorrespondenceConfig, AVCorrespondenceModel)
register_model(ModelEntry(
    name="avc_two_tower.generic", model_class=AVCorrespondenceModel,
    config={"audio_dim": 80, "visual_dim": 64},
    description="audio-visual correspondence (is this the video's own audio?): two towers over per-second "
                "mean+std of MFCC and optical-flow frames, aligned cosine similarity; other encoders: set "
                "audio_dim / visual_dim to 2x their widths",
    audio_encoder="mfcc", visual_encoder="optical-flow", corpus="any manifest", labels="matched / mismatched",
    protocol="negatives: audio shifted within the clip, audio of another clip", recipe="recipes/correspondence.py",
))

__all__ = ["AVCorrespondenceConfig", "AVCorrespondenceModel", "CorrespondenceOutput"]

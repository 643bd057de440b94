"""Classic baselines on hand-crafted features: a BiLSTM over audio frames (MFCC, log-mel), a 2D
CNN + temporal pooling over flattened face crops (face-grey, face-rgb, frame-diff, optical-flow),
early fusion of pooled features, and late fusion of the two unimodal networks.

Axis letters: b batch, t time, d feature width, n real frames, c channels, s image side.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..errors import ConfigError
from ..layers import masked_mean
from ..registry import ModelEntry, register_model
from .auto import register_auto
from .base import EmotionConfig, EmotionModel, check_positive_int, check_probability

CREMA_D_LABELS = {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "neutral", 5: "sad"}
RECIPE = "recipes/finetune.py"


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


class EarlyFusionConfig(ClassicConfig):
    model_type = "vavl_classic_early_fusion"


class LateFusionConfig(ClassicConfig):
    model_type = "vavl_classic_late_fusion"


# ---- building blocks -----------------------------------------------------------------------------
def left_align(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each sample's real frames to the front, in order: (b, t, d), (b, t) -> (b, t, d), lengths (b,)."""
    order = torch.sort((~mask).int(), dim=1, stable=True).indices
    return x.gather(1, order.unsqueeze(-1).expand_as(x)), mask.sum(1)


def masked_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(b, t, d), (b, t) -> (b, d) standard deviation over real frames (zeros where none)."""
    mean = masked_mean(x, mask)
    return masked_mean((x - mean.unsqueeze(1)) ** 2, mask).clamp(min=1e-8).sqrt() * mask.any(1, keepdim=True)


def mlp_head(in_dim: int, config: ClassicConfig) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(config.dropout), nn.Linear(in_dim, config.hidden_size), nn.GELU(),
                         nn.Dropout(config.dropout), nn.Linear(config.hidden_size, config.num_labels))


class AudioBiLSTM(nn.Module):
    """(b, t, audio_dim), (b, t) -> (b, 2 * hidden): packed BiLSTM over the real frames, mean over time."""

    def __init__(self, config: ClassicConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.audio_dim)
        self.proj = nn.Linear(config.audio_dim, config.hidden_size)
        self.lstm = nn.LSTM(config.hidden_size, config.hidden_size, config.num_layers, batch_first=True,
                            bidirectional=True, dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.output_dim = 2 * config.hidden_size

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, lengths = left_align(x, mask)
        h = self.proj(self.norm(x))
        packed = pack_padded_sequence(h, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        valid = torch.arange(x.shape[1], device=x.device) < lengths.unsqueeze(1)
        return masked_mean(out, valid)  # zeros for a sample without frames


class FaceCNN(nn.Module):
    """(b, t, c*s*s), (b, t) -> (b, channels[-1]): the same 2D CNN on every real frame, then the
    mean over frames. Padded / missing frames never reach the CNN."""

    def __init__(self, config: ClassicConfig):
        super().__init__()
        self.c, self.s = image_shape(config.visual_dim)
        self.pad = self.c * self.s * self.s - config.visual_dim
        layers, c_in, side = [], self.c, self.s
        for c_out in config.cnn_channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(1, c_out), nn.GELU()]
            if side >= 4:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            c_in = c_out
        self.cnn = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.output_dim = c_in

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        frames = torch.zeros(*x.shape[:2], self.output_dim, device=x.device, dtype=x.dtype)  # (b, t, c)
        if mask.any():
            images = rearrange(F.pad(x[mask], (0, self.pad)), "n (c h w) -> n c h w", c=self.c, h=self.s, w=self.s)
            frames[mask] = self.cnn(images).to(x.dtype)
        return masked_mean(frames, mask)


# ---- models --------------------------------------------------------------------------------------
class BiLSTMForEmotionRecognition(EmotionModel):
    """Audio only: BiLSTM over feature frames -> mean over time -> MLP head."""

    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.encoder = AudioBiLSTM(config)
        self.head = mlp_head(self.encoder.output_dim, config)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        emb = self.encoder(audio, audio_mask)
        return {"audio_logits": self.head(emb), "audio_embedding": emb}


class FaceCNNForEmotionRecognition(EmotionModel):
    """Visual only: 2D CNN on each face crop -> mean over frames -> MLP head."""

    config_class = FaceCNNConfig
    main_input_name = "visual_features"

    def __init__(self, config: FaceCNNConfig):
        super().__init__(config)
        self.encoder = FaceCNN(config)
        self.head = mlp_head(self.encoder.output_dim, config)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        emb = self.encoder(visual, visual_mask)
        return {"visual_logits": self.head(emb), "visual_embedding": emb}


class EarlyFusionForEmotionRecognition(EmotionModel):
    """Mean and standard deviation of each modality's frames, concatenated, into an MLP (fused
    head); one MLP per modality on its own statistics answers when the other is missing."""

    config_class = EarlyFusionConfig

    def __init__(self, config: EarlyFusionConfig):
        super().__init__(config)
        self.audio_norm = nn.LayerNorm(2 * config.audio_dim)
        self.visual_norm = nn.LayerNorm(2 * config.visual_dim)
        self.audio_head = mlp_head(2 * config.audio_dim, config)
        self.visual_head = mlp_head(2 * config.visual_dim, config)
        self.fused_head = mlp_head(2 * (config.audio_dim + config.visual_dim), config)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        a = self.audio_norm(torch.cat([masked_mean(audio, audio_mask), masked_std(audio, audio_mask)], -1))
        v = self.visual_norm(torch.cat([masked_mean(visual, visual_mask), masked_std(visual, visual_mask)], -1))
        fused = torch.cat([a, v], -1)
        return {"fused_logits": self.fused_head(fused), "audio_logits": self.audio_head(a),
                "visual_logits": self.visual_head(v), "fused_embedding": fused, "audio_embedding": a, "visual_embedding": v}


class LateFusionForEmotionRecognition(EmotionModel):
    """A BiLSTM audio model and a face CNN trained together; the fused prediction is a learned
    convex mix of their logits, w * audio + (1 - w) * visual, w = sigmoid(learned scalar)."""

    config_class = LateFusionConfig

    def __init__(self, config: LateFusionConfig):
        super().__init__(config)
        self.audio_encoder, self.visual_encoder = AudioBiLSTM(config), FaceCNN(config)
        self.audio_head = mlp_head(self.audio_encoder.output_dim, config)
        self.visual_head = mlp_head(self.visual_encoder.output_dim, config)
        self.mix = nn.Parameter(torch.zeros(()))
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        a_emb, v_emb = self.audio_encoder(audio, audio_mask), self.visual_encoder(visual, visual_mask)
        a, v = self.audio_head(a_emb), self.visual_head(v_emb)
        w = torch.sigmoid(self.mix)
        return {"fused_logits": w * a + (1 - w) * v, "audio_logits": a, "visual_logits": v,
                "audio_embedding": a_emb, "visual_embedding": v_emb}


for _cfg, _cls in ((BiLSTMConfig, BiLSTMForEmotionRecognition), (FaceCNNConfig, FaceCNNForEmotionRecognition),
                   (EarlyFusionConfig, EarlyFusionForEmotionRecognition), (LateFusionConfig, LateFusionForEmotionRecognition)):
    register_auto(_cfg, _cls)

_CREMA = dict(corpus="CREMA-D", labels="perceived emotion (audio-visual majority vote), 6 classes",
              protocol="VAVL partitions 1-5", recipe=RECIPE)
register_model(ModelEntry(
    name="bilstm_mfcc.crema_d", model_class=BiLSTMForEmotionRecognition,
    config={"audio_dim": 40, "id2label": CREMA_D_LABELS},
    description="2-layer BiLSTM over 40 MFCCs (100 frames/s), mean-pooled; audio only",
    audio_encoder="mfcc", **_CREMA))
register_model(ModelEntry(
    name="cnn_face_grey.crema_d", model_class=FaceCNNForEmotionRecognition,
    config={"visual_dim": 48 * 48, "id2label": CREMA_D_LABELS},
    description="3-block 2D CNN on 48x48 grey face crops, mean over frames; video only",
    visual_encoder="face-grey", **_CREMA))
register_model(ModelEntry(
    name="early_fusion_mfcc_face_grey.crema_d", model_class=EarlyFusionForEmotionRecognition,
    config={"audio_dim": 40, "visual_dim": 48 * 48, "id2label": CREMA_D_LABELS},
    description="MLP on concatenated mean/std of MFCC frames and 48x48 grey face crops, plus unimodal MLPs",
    audio_encoder="mfcc", visual_encoder="face-grey", **_CREMA))
register_model(ModelEntry(
    name="late_fusion_bilstm_cnn.crema_d", model_class=LateFusionForEmotionRecognition,
    config={"audio_dim": 40, "visual_dim": 48 * 48, "id2label": CREMA_D_LABELS},
    description="BiLSTM on MFCCs and CNN on 48x48 grey faces; fused logits are a learned mix of the two",
    audio_encoder="mfcc", visual_encoder="face-grey", **_CREMA))

__all__ = ["BiLSTMConfig", "BiLSTMForEmotionRecognition", "EarlyFusionConfig", "EarlyFusionForEmotionRecognition",
           "FaceCNNConfig", "FaceCNNForEmotionRecognition", "LateFusionConfig", "LateFusionForEmotionRecognition"]

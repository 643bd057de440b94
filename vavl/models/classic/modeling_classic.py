"""Classic baselines on hand-crafted features: a BiLSTM over audio frames (MFCC, log-mel), a 2D
CNN + temporal pooling over flattened face crops (face-grey, face-rgb, frame-diff, optical-flow),
early fusion of pooled features, and late fusion of the two unimodal networks.

Axis letters: b batch, t time, d feature width, n real frames, c channels, s image side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ...nn.layers import masked_mean
from ..base import EmotionModel
from .configuration_classic import BiLSTMConfig, ClassicConfig, ClassicEarlyFusionConfig, ClassicLateFusionConfig, FaceCNNConfig, image_shape


# ---- building blocks -----------------------------------------------------------------------------
def left_align(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each sample's real frames to the front, in order: (b, t, d), (b, t) -> (b, t, d), lengths (b,).
    A scatter to each frame's rank among the real (or, after them, the padded) frames."""
    lengths = mask.sum(1)
    rank = torch.where(mask, mask.long().cumsum(1) - 1, lengths.unsqueeze(1) + (~mask).long().cumsum(1) - 1)
    return torch.zeros_like(x).scatter(1, rank.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x), lengths


def reverse_within(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """(b, t) index that reverses each row's first `length` frames and leaves the padding in place
    (it is its own inverse)."""
    i = torch.arange(t, device=lengths.device).unsqueeze(0)
    return torch.where(i < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - i, i)


def masked_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(b, t, d), (b, t) -> (b, d) standard deviation over real frames (zeros where none)."""
    mean = masked_mean(x, mask)
    return masked_mean((x - mean.unsqueeze(1)) ** 2, mask).clamp(min=1e-8).sqrt() * mask.any(1, keepdim=True)


def mlp_head(in_dim: int, config: ClassicConfig) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(config.dropout), nn.Linear(in_dim, config.hidden_size), nn.GELU(),
                         nn.Dropout(config.dropout), nn.Linear(config.hidden_size, config.num_labels))


class AudioBiLSTM(nn.Module):
    """(b, t, audio_dim), (b, t) -> (b, 2 * hidden): a bidirectional LSTM over the real frames, mean
    over time. The frames are left-aligned and each layer's backward direction runs over them
    reversed within their length, so padding never reaches a real frame (what packed sequences
    do, in plain tensor ops that trace and export)."""

    def __init__(self, config: ClassicConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.audio_dim)
        self.proj = nn.Linear(config.audio_dim, config.hidden_size)
        h, n = config.hidden_size, config.num_layers
        self.forward_lstms = nn.ModuleList(nn.LSTM(h if i == 0 else 2 * h, h, batch_first=True) for i in range(n))
        self.backward_lstms = nn.ModuleList(nn.LSTM(h if i == 0 else 2 * h, h, batch_first=True) for i in range(n))
        self.dropout = nn.Dropout(config.dropout if n > 1 else 0.0)
        self.output_dim = 2 * h

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, lengths = left_align(x, mask)
        h = self.proj(self.norm(x))
        back = reverse_within(lengths, x.shape[1]).unsqueeze(-1)                       # (b, t, 1)
        for i, (fwd, bwd) in enumerate(zip(self.forward_lstms, self.backward_lstms)):
            if i:
                h = self.dropout(h)
            f = fwd(h)[0]
            b = bwd(h.gather(1, back.expand(-1, -1, h.shape[-1])))[0]
            h = torch.cat([f, b.gather(1, back.expand(-1, -1, b.shape[-1]))], -1)      # (b, t, 2h)
        valid = torch.arange(x.shape[1], device=x.device) < lengths.unsqueeze(1)
        return masked_mean(h, valid)  # zeros for a sample without frames


class FaceCNN(nn.Module):
    """(b, t, c*s*s), (b, t) -> (b, channels[-1]): the same 2D CNN on every real frame, then the
    mean over the real frames. Each image goes through the CNN on its own, so padded frames,
    run along with the rest, change nothing."""

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
        images = rearrange(F.pad(x, (0, self.pad)), "b t (c h w) -> (b t) c h w", c=self.c, h=self.s, w=self.s)
        frames = rearrange(self.cnn(images).to(x.dtype), "(b t) c -> b t c", t=x.shape[1])   # each frame on its own
        return masked_mean(frames, mask)                                                   # padded frames left out


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


class ClassicEarlyFusionForEmotionRecognition(EmotionModel):
    """Mean and standard deviation of each modality's frames, concatenated, into an MLP (fused
    head); one MLP per modality on its own statistics answers when the other is missing."""

    config_class = ClassicEarlyFusionConfig

    def __init__(self, config: ClassicEarlyFusionConfig):
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


class ClassicLateFusionForEmotionRecognition(EmotionModel):
    """A BiLSTM audio model and a face CNN trained together; the fused prediction is a learned
    convex mix of their logits, w * audio + (1 - w) * visual, w = sigmoid(learned scalar)."""

    config_class = ClassicLateFusionConfig

    def __init__(self, config: ClassicLateFusionConfig):
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

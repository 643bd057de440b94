"""HiCMAE's audio-visual classifier in the transformers idiom.

    model = HiCMAEForEmotionRecognition(HiCMAEConfig())
    out = model(pixel_values=faces, input_features=fbank)   # (b, 16, 3, 160, 160), (b, 256, 128)
    out.logits, out.fused_embedding

Inputs follow transformers' conventions: `pixel_values` (b, frames, 3, H, W) as VideoMAE takes
them, `input_features` (b, time, mel) log-mel fbank as AST takes them; both come from
`vavl.media.hicmae.HiCMAEProcessor`. Each encoder is a ViT whose layers' outputs all go through
one shared LayerNorm; its pooled feature is the softmax(layer_weights)-weighted sum of the layers'
token means, and its last layer's tokens feed the fusion encoder. The head reads
LayerNorm([video, audio, fused video, fused audio]). Position tables are fixed sin-cos tables,
rebuilt from the config (they are not weights).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ..outputs import EmotionRecognitionOutput
from .configuration_hicmae import HiCMAEConfig


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """(positions, dim) float32: sin at even and cos at odd channels of pos / 10000^(2 (j // 2) / dim),
    computed in float64 (the transformer table HiCMAE uses, get_sinusoid_encoding_table)."""
    pos = torch.arange(positions, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


def drop_path_rates(top: float, depth: int) -> list[float]:
    """Stochastic-depth rate of each layer, rising linearly from 0 to `top` (plain floats: safe on meta)."""
    return [top * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


class DropPath(nn.Module):
    """Stochastic depth: in training, drop the residual branch of whole samples with probability p."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class HiCMAEAttention(nn.Module):
    """Multi-head attention with learnt query and value biases and none on the key. Self-attention
    (`context` None: one fused qkv projection) or cross-attention (q from x, k and v from context)."""

    def __init__(self, dim: int, heads: int, bias: bool, context_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.heads, self.cross = heads, context_dim is not None
        if self.cross:
            self.q = nn.Linear(dim, dim, bias=False)
            self.kv = nn.Linear(context_dim, 2 * dim, bias=False)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, parts, self.heads, -1).permute(2, 0, 3, 1, 4)   # (parts, b, heads, n, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.cross:
            q = F.linear(x, self.q.weight, self.q_bias)
            kv_bias = None if self.v_bias is None else torch.cat([torch.zeros_like(self.v_bias), self.v_bias])
            k, v = self._split(F.linear(context, self.kv.weight, kv_bias), 2)
            q = self._split(q, 1)[0]
        else:
            bias = None if self.q_bias is None else torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
            q, k, v = self._split(F.linear(x, self.qkv.weight, bias), 3)
        out = F.scaled_dot_product_attention(q, k, v)
        b, _, n, _ = out.shape
        return self.drop(self.proj(out.transpose(1, 2).reshape(b, n, -1)))


class HiCMAEMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class HiCMAELayer(nn.Module):
    """Pre-norm transformer layer. With `context_dim`: cross-attention to the other modality's
    tokens first (the context normalised by its own LayerNorm), then self-attention, then the MLP."""

    def __init__(self, config: HiCMAEConfig, dim: int, heads: int, drop_path: float, context_dim: int | None = None):
        super().__init__()
        eps, p = config.layer_norm_eps, config.hidden_dropout_prob
        if context_dim is not None:
            self.cross_attn = HiCMAEAttention(dim, heads, config.qkv_bias, context_dim, p)
            self.cross_norm1, self.cross_norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(context_dim, eps=eps)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = HiCMAEAttention(dim, heads, config.qkv_bias, dropout=p)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = HiCMAEMLP(dim, int(dim * config.mlp_ratio), p)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is not None:
            x = x + self.drop_path(self.cross_attn(self.cross_norm1(x), self.cross_norm2(context)))
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class HiCMAEEncoder(nn.Module):
    """One modality's ViT: patch embedding + fixed sin-cos positions + layers + a LayerNorm shared
    by every layer's output. forward -> (last layer's normed tokens (b, n, d), pooled (b, d)):
    pooled = sum_l softmax(layer_weights)_l * mean over tokens of norm(layer l's output)."""

    def __init__(self, config: HiCMAEConfig, modality: str):
        super().__init__()
        self.modality = modality
        if modality == "visual":
            dim, depth, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
            kernel = (config.tubelet_size, config.patch_size, config.patch_size)
            self.patch_embed = nn.Conv3d(3, dim, kernel_size=kernel, stride=kernel)
            self.num_tokens = math.prod(config.video_grid)
        else:
            dim, depth, heads = config.audio_hidden_size, config.audio_num_hidden_layers, config.audio_num_attention_heads
            p = config.audio_patch_size
            self.patch_embed = nn.Conv2d(1, dim, kernel_size=p, stride=p)
            self.num_tokens = math.prod(config.audio_grid)
        self.output_dim = dim
        rates = drop_path_rates(config.drop_path_rate, depth)
        self.layers = nn.ModuleList(HiCMAELayer(config, dim, heads, r) for r in rates)
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.layer_weights = nn.Parameter(torch.full((depth,), 1.0 / depth))
        self._positions: dict[Any, torch.Tensor] = {}

    def position_embeddings(self, device, dtype) -> torch.Tensor:
        """(1, n, d) fixed table (kept off the state dict, as in the official model)."""
        key = (str(device), dtype)
        if key not in self._positions:
            self._positions[key] = sinusoid_table(self.num_tokens, self.output_dim).to(device=device, dtype=dtype)[None]
        return self._positions[key]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """pixel_values (b, t, 3, H, W) or input_features (b, time, mel) -> tokens (b, n, d)."""
        x = x.transpose(1, 2) if self.modality == "visual" else x.unsqueeze(1)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        return x + self.position_embeddings(x.device, x.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(x)
        weights = self.layer_weights.softmax(0)
        pooled = 0.0
        for i, layer in enumerate(self.layers):
            x = layer(x)
            normed = self.norm(x)
            pooled = pooled + weights[i] * normed.mean(1)
        return normed, pooled


class HiCMAEFusion(nn.Module):
    """Cross-modal encoder: in each layer the video tokens attend to the audio tokens and the audio
    tokens to the video tokens, both from the previous layer's outputs; a final LayerNorm each."""

    def __init__(self, config: HiCMAEConfig):
        super().__init__()
        v, a, h, n = config.hidden_size, config.audio_hidden_size, config.fusion_num_attention_heads, config.fusion_num_hidden_layers
        rates = drop_path_rates(config.drop_path_rate, n)
        self.video_layers = nn.ModuleList(HiCMAELayer(config, v, h, r, context_dim=a) for r in rates)
        self.audio_layers = nn.ModuleList(HiCMAELayer(config, a, h, r, context_dim=v) for r in rates)
        self.video_norm = nn.LayerNorm(v, eps=config.layer_norm_eps)
        self.audio_norm = nn.LayerNorm(a, eps=config.layer_norm_eps)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for video_layer, audio_layer in zip(self.video_layers, self.audio_layers):
            video, audio = video_layer(video, audio), audio_layer(audio, video)
        return self.video_norm(video), self.audio_norm(audio)


class HiCMAEForEmotionRecognition(PreTrainedModel):
    """HiCMAE's fine-tuned audio-visual classifier (modeling_finetune_av.AudioVisionTransformer).

    forward(pixel_values (b, frames, 3, S, S), input_features (b, time, mel), labels) ->
    EmotionRecognitionOutput with logits (b, classes) and fused_embedding (the normed 4-part
    feature). A modality left out (None) is replaced as config.missing_modality says, and
    audio_present / visual_present say which were given."""

    config_class = HiCMAEConfig
    base_model_prefix = "hicmae"
    main_input_name = "pixel_values"
    takes_views = True   # vavl.inference: clip scores are the mean over the processor's test views
    prediction_text = ("the mean over the test views (2 temporal segments of 16 face frames with their audio) of "
                       "softmax(logits), HiCMAE's merge(); a missing modality is an all-zero input (vavl's rule)")
    builtin_encoders = {"audio": "built in: a ViT on the log-mel fbank (`audio_encoder`)",
                        "visual": "built in: a video ViT on face frames (`visual_encoder`)"}
    use_text = ("Published fine-tuned weights convert into a model folder (see Published weights); then:\n\n"
                "```bash\nvavl predict clip.mp4 --model hicmae-fold1\nvavl export onnx --model hicmae-fold1 --out hicmae.onnx\n```\n\n"
                "```python\nimport vavl\nmodel = vavl.create_model(\"{name}\")   # untrained, takes pixel_values + input_features\n"
                "```\n\nSee docs/hicmae.md.\n")

    def __init__(self, config: HiCMAEConfig):
        super().__init__(config)
        self.visual_encoder = HiCMAEEncoder(config, "visual")
        self.audio_encoder = HiCMAEEncoder(config, "audio")
        self.fusion = HiCMAEFusion(config)
        width = 2 * (config.hidden_size + config.audio_hidden_size)
        self.fc_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(width, config.num_labels)
        self._processor = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Truncated-normal (std 0.02) linear and patch weights, zero biases, LayerNorms at 1 / 0,
        uniform layer weights (the official encoders' init; the fine-tuned weights replace it)."""
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, HiCMAEAttention):
            for p in (module.q_bias, module.v_bias):
                if p is not None:
                    nn.init.zeros_(p)
        elif isinstance(module, HiCMAEEncoder):
            nn.init.constant_(module.layer_weights, 1.0 / module.layer_weights.numel())

    # ---- what vavl's callers ask of a model --------------------------------------------------
    @property
    def emotion_config(self) -> HiCMAEConfig:
        return self.config

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def label_names(self) -> list[str]:
        return self.config.label_names

    @property
    def processor(self):
        """The HiCMAEProcessor (test views, fbank, normalisation) this model takes its inputs from."""
        if self._processor is None:
            from ...media.hicmae import HiCMAEProcessor

            self._processor = HiCMAEProcessor.for_config(self.config)
        return self._processor

    @processor.setter
    def processor(self, value) -> None:
        self._processor = value

    def set_attn_implementation(self, attn_implementation: str) -> None:
        """HiCMAE always runs torch's scaled_dot_product_attention (it exports to ONNX as is)."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Config, weights, the processor (preprocessor_config.json) and a Hub-ready README.md."""
        from ..cards import write_card

        super().save_pretrained(save_directory, *args, **kwargs)
        self.processor.save_pretrained(save_directory)
        write_card(save_directory, self, modalities={"audio", "visual"})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        import os

        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if os.path.exists(os.path.join(str(pretrained_model_name_or_path), "preprocessor_config.json")):
            from ...media.hicmae import HiCMAEProcessor

            model._processor = HiCMAEProcessor.from_pretrained(str(pretrained_model_name_or_path))
        return loaded

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """A small valid batch with labels (the second sample's audio left at zero)."""
        c, g = self.config, torch.Generator().manual_seed(0)
        return {"pixel_values": torch.randn(2, c.num_frames, 3, c.image_size, c.image_size, generator=g),
                "input_features": torch.randn(2, c.audio_target_length, c.num_mel_bins, generator=g),
                "labels": torch.arange(2) % c.num_labels}

    # ---- forward -----------------------------------------------------------------------------
    def _fill(self, pixel_values, input_features):
        given = next((x for x in (pixel_values, input_features) if x is not None), None)
        if given is None:
            raise ValueError("give pixel_values, input_features or both")
        c, b = self.config, given.shape[0]
        kw = {"device": given.device, "dtype": given.dtype}
        video_shape = (c.num_frames, 3, c.image_size, c.image_size)
        audio_shape = (c.audio_target_length, c.num_mel_bins)
        if pixel_values is None:
            pixel_values = torch.zeros(b, *video_shape, **kw)
        if input_features is None:
            input_features = torch.zeros(b, *audio_shape, **kw)
        for name, x, shape in (("pixel_values", pixel_values, video_shape), ("input_features", input_features, audio_shape)):
            if tuple(x.shape[1:]) != shape or x.shape[0] != b:
                raise ValueError(f"{name} has shape {tuple(x.shape)}; this HiCMAE takes (batch={b}, "
                                 f"{', '.join(map(str, shape))}) (vavl.media.hicmae.HiCMAEProcessor makes it)")
        return pixel_values, input_features

    def forward(self, pixel_values: torch.Tensor | None = None, input_features: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, input_values: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, pixel_mask: torch.Tensor | None = None,
                **kwargs: Any) -> EmotionRecognitionOutput:
        """One view per sample; or, with `pixel_mask` or `input_values` (the raw inputs of
        HiCMAEProcessor.raw_inputs: face frames of any length with their mask, a waveform with its
        mask), whole clips: `forward_clips`."""
        if input_values is not None or pixel_mask is not None:
            return self.forward_clips(pixel_values, pixel_mask, input_values, attention_mask, labels)
        video_given, audio_given = pixel_values is not None, input_features is not None
        pixel_values, input_features = self._fill(pixel_values, input_features)
        video_tokens, video_feature = self.visual_encoder(pixel_values)
        audio_tokens, audio_feature = self.audio_encoder(input_features)
        fused_video, fused_audio = self.fusion(video_tokens, audio_tokens)
        feature = self.fc_norm(torch.cat([video_feature, audio_feature, fused_video.mean(1), fused_audio.mean(1)], -1))
        logits = self.classifier(feature)
        b, device = logits.shape[0], logits.device
        out = EmotionRecognitionOutput(
            logits=logits, fused_logits=logits, fused_embedding=feature,
            audio_present=torch.full((b,), audio_given, dtype=torch.bool, device=device),
            visual_present=torch.full((b,), video_given, dtype=torch.bool, device=device),
            head_used=torch.zeros(b, dtype=torch.long, device=device))
        return self._with_loss(out, labels)

    def _with_loss(self, out: EmotionRecognitionOutput, labels) -> EmotionRecognitionOutput:
        if labels is not None:
            logits = out.logits
            if self.config.task == "regression":
                out.loss = F.mse_loss(logits.float(), labels.float())
            else:
                out.loss = F.cross_entropy(logits.float(), labels)
        return out

    def forward_clips(self, pixel_values=None, pixel_mask=None, input_values=None, attention_mask=None,
                      labels=None) -> EmotionRecognitionOutput:
        """Whole clips: each sample's face frames (where pixel_mask is true) and waveform (where
        attention_mask is true) are cut into the processor's test views; logits are the log of the
        mean softmax over the views (their argmax is HiCMAE's merged prediction). A sample without
        faces or audio has that modality missing; one with neither gets zero logits."""
        b = (pixel_values if pixel_values is not None else input_values).shape[0]
        rows, audio_present, visual_present = [], [], []
        for i in range(b):
            frames = wave = None
            if pixel_values is not None:
                keep = pixel_mask[i].bool() if pixel_mask is not None else torch.ones(pixel_values.shape[1], dtype=torch.bool)
                frames = pixel_values[i][keep.to(pixel_values.device)]
            if input_values is not None:
                keep = attention_mask[i].bool() if attention_mask is not None else torch.ones(input_values.shape[1], dtype=torch.bool)
                wave = input_values[i][keep.to(input_values.device)]
            video, fbank = self.processor.tensor_views(frames if frames is not None and len(frames) else None,
                                                       wave if wave is not None and wave.numel() else None)
            audio_present.append(fbank is not None)
            visual_present.append(video is not None)
            if video is None and fbank is None:
                rows.append(torch.zeros(self.config.num_labels, device=self.device))
                continue
            out = self(pixel_values=video, input_features=fbank)
            rows.append(out.logits.float().softmax(-1).mean(0).log())
        device = rows[0].device
        a = torch.tensor(audio_present, device=device)
        v = torch.tensor(visual_present, device=device)
        out = EmotionRecognitionOutput(logits=torch.stack(rows), audio_present=a, visual_present=v,
                                       head_used=torch.where(a | v, 0, -1))
        out.fused_logits = out.logits
        return self._with_loss(out, labels)

"""Whisper encoders: the encoder half of transformers' WhisperModel, on each clip's own length.

    build_encoder("whisper-small")                     # openai/whisper-small: encoder + WhisperFeatureExtractor
    build_encoder("whisper-small", pretrained=False)   # full-size architecture, random weights, offline
    build_encoder("whisper-base", layer=4)             # one hidden layer (0 = conv front end + positions)
    build_encoder("whisper-large-v3", weighted=True)   # learned softmax-weighted sum of all layers

(b, n) 16 kHz waveforms, (b, n) mask -> (b, t, d) frames at 50 per second, (b, t) mask.

Whisper is trained on 30 s inputs: log-mel frames padded with silence to 3000, 1500 positions.
Padding a 2.5 s CREMA-D clip to 30 s costs 12x the work, so this encoder runs on the clip's own
log-mel frames and adds the first t rows of the positional table (t = frames after the stride-2
convolution, 50 per second). A clip longer than 30 s is encoded in 30 s pieces. Whisper's encoder
takes no attention mask: the clips of a batch are grouped by length and each group runs on its
own, so a clip's features never depend on the clips it is batched with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForAudioClassification
from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

from ..core.errors import ConfigError
from .base import EncoderPreset, pad_rows, register_encoder
from .hf import (LayerChoice, TransformersEncoder, extractor_from_dict, feature_extractor_from, load_weights, read_saved,
                 require_safetensors)

SAMPLE_RATE = 16000
HOP = 160                       # log-mel hop: 100 mel frames per second, 50 encoder frames per second
PIECE = 30 * SAMPLE_RATE        # Whisper's input window
MIN_SAMPLES = 400               # one STFT window; shorter clips are padded with silence


@dataclass(frozen=True)
class WhisperArch:
    hub_id: str
    d_model: int
    layers: int
    heads: int
    num_mel_bins: int = 80

    def config(self) -> WhisperConfig:
        return WhisperConfig(d_model=self.d_model, encoder_layers=self.layers, encoder_attention_heads=self.heads,
                             encoder_ffn_dim=4 * self.d_model, decoder_layers=self.layers,
                             decoder_attention_heads=self.heads, decoder_ffn_dim=4 * self.d_model,
                             num_mel_bins=self.num_mel_bins)


ARCHS = {
    "whisper-base": WhisperArch("openai/whisper-base", 512, 6, 8),
    "whisper-small": WhisperArch("openai/whisper-small", 768, 12, 12),
    "whisper-medium": WhisperArch("openai/whisper-medium", 1024, 24, 16),
    "whisper-large-v3": WhisperArch("openai/whisper-large-v3", 1280, 32, 20, num_mel_bins=128),
}


def _extractor_defaults(config) -> dict[str, Any]:
    return {"feature_size": config.num_mel_bins, "sampling_rate": SAMPLE_RATE, "hop_length": HOP}


class WhisperSpeechEncoder(LayerChoice, TransformersEncoder):
    """transformers' WhisperEncoder + its log-mel feature extractor + the choice of output: the
    last layer (after the final layer norm), one hidden state (`layer`: 0 = convolutions +
    positions, i = after block i, L = last) or a learned weighted sum of all (`weighted`)."""

    kind = "whisper"
    modality = "audio"
    frame_rate = 50.0
    sample_rate = SAMPLE_RATE

    def __init__(self, model: HFWhisperEncoder, feature_extractor: WhisperFeatureExtractor, layer: int | None = None,
                 weighted: bool = False, freeze: bool = True, name: str | None = None, source: str | None = None):
        super().__init__(model, freeze=freeze, name=name, source=source)
        self.choose_layers(len(model.layers), layer, weighted, name or "this Whisper encoder")
        if feature_extractor.feature_size != model.config.num_mel_bins:
            raise ConfigError(f"the feature extractor gives {feature_extractor.feature_size} mel bins but the encoder "
                              f"takes {model.config.num_mel_bins}")
        self.feature_extractor = feature_extractor
        self.output_dim = model.config.d_model

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 2:
            raise ValueError(f"Whisper encoder: expected waveforms (b, n), got {tuple(x.shape)}")
        lengths = mask.sum(1).tolist() if mask is not None else [x.shape[1]] * x.shape[0]
        waves = x.detach().float().cpu().numpy()
        pieces = []                                   # (clip, samples (k,)), each clip's pieces in time order
        for i, n in enumerate(int(n) for n in lengths):
            for start in range(0, n, PIECE):
                piece = waves[i, start:min(start + PIECE, n)]
                pieces.append((i, np.pad(piece, (0, max(MIN_SAMPLES - len(piece), 0)))))
        groups: dict[int, list[int]] = {}             # equal lengths run together: no padding, no mask needed
        for j, (_, piece) in enumerate(pieces):
            groups.setdefault(len(piece), []).append(j)
        encoded = {}
        for group in groups.values():
            encoded.update(zip(group, self.encode_log_mel(self.log_mel([pieces[j][1] for j in group], x.device))))
        rows = [[] for _ in range(x.shape[0])]
        for j, (i, _) in enumerate(pieces):
            rows[i].append(encoded[j])
        return pad_rows([torch.cat(r) if r else x.new_zeros(0, self.output_dim) for r in rows], self.output_dim, x.device)

    def log_mel(self, waves: list[np.ndarray], device) -> torch.Tensor:
        """Equal-length waveforms -> (g, mel bins, n // 160) log-mel frames, Whisper's own recipe."""
        feats = self.feature_extractor(waves, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="pt",
                                       device=str(device))
        return feats["input_features"].to(device, self.model.conv1.weight.dtype)

    def encode_log_mel(self, feats: torch.Tensor) -> torch.Tensor:
        """(g, mel bins, m) log-mel frames (m <= 3000) -> (g, ceil(m / 2), d) chosen output."""
        enc = self.model
        with torch.set_grad_enabled(self.grad_enabled()):
            h = F.gelu(enc.conv2(F.gelu(enc.conv1(feats)))).transpose(1, 2)      # (g, t, d)
            h = h + enc.embed_positions.weight[: h.shape[1]]                     # the first t positions
            h = F.dropout(h, p=enc.dropout, training=enc.training)
            last = len(enc.layers) if self.layer is None else self.layer   # no need to run the blocks above it
            states = [h]
            for block in enc.layers[:last]:
                h = block(h, None)
                states.append(h)
            if last == len(enc.layers):
                states[-1] = enc.layer_norm(h)
        return self.mix(states)

    # ---- saving ----------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {"layer": self.layer, "weighted": self.weighted, "freeze": self.freeze}


# ---- building ------------------------------------------------------------------------------
def load_pretrained(source: str) -> HFWhisperEncoder:
    """The encoder of a Whisper checkpoint (hub id or folder of WhisperForConditionalGeneration /
    WhisperModel); the decoder's weights are not loaded."""
    return load_weights(WhisperForAudioClassification, source, part="encoder", allow_pickle=True)


def from_spec(spec: dict[str, Any]) -> WhisperSpeechEncoder:
    """Random-weight encoder with the architecture of `spec` (WhisperSpeechEncoder.spec())."""
    config = WhisperConfig(**{k: v for k, v in spec["config"].items() if k != "model_type"})
    fe = extractor_from_dict(WhisperFeatureExtractor, spec.get("feature_extractor"), _extractor_defaults(config))
    return WhisperSpeechEncoder(HFWhisperEncoder(config), fe, layer=spec.get("layer"), weighted=spec.get("weighted", False),
                          freeze=spec.get("freeze", True), name=spec.get("name"), source=spec.get("source"))


def from_directory(directory, **options) -> WhisperSpeechEncoder:
    """A folder written by WhisperSpeechEncoder.save_pretrained, or a transformers Whisper folder."""
    require_safetensors(directory)   # a user's folder: safetensors only, before anything is unpickled
    saved = read_saved(directory)
    layer_weights = saved.pop("layer_weights", None)
    if saved.get("kind") == "whisper":
        model = load_weights(HFWhisperEncoder, directory)
    else:
        model = load_pretrained(directory)
    fe = feature_extractor_from(WhisperFeatureExtractor, directory, _extractor_defaults(model.config))
    kwargs = {**{k: saved[k] for k in ("layer", "weighted", "freeze", "name") if k in saved}, **options}
    enc = WhisperSpeechEncoder(model, fe, source=saved.get("source") or str(directory), **kwargs)
    enc.load_layer_weights(layer_weights)
    return enc


def _builder(name: str, arch: WhisperArch):
    def build(pretrained: bool = False, source: str | None = None, **options) -> WhisperSpeechEncoder:
        source = source or arch.hub_id
        if pretrained:
            model = load_pretrained(source)
            fe = feature_extractor_from(WhisperFeatureExtractor, source, _extractor_defaults(model.config))
        else:
            config = arch.config()
            model, fe = HFWhisperEncoder(config), WhisperFeatureExtractor(**_extractor_defaults(config))
        return WhisperSpeechEncoder(model, fe, name=name, source=source, **options)

    return build


for _name, _arch in ARCHS.items():
    register_encoder(EncoderPreset(
        name=_name, modality="audio", build=_builder(_name, _arch), output_dim=_arch.d_model, source=_arch.hub_id,
        description=f"Whisper {_name.split('-', 1)[1]} encoder ({_arch.layers} layers, {_arch.num_mel_bins} log-mel bins; "
                    "runs on the clip's own length, not padded to 30 s)",
        rate="50 frames/s", license="Apache-2.0",
        options={"layer": None, "weighted": False, "freeze": True}))

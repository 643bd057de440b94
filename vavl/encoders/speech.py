"""Speech encoders: self-supervised models from transformers (wav2vec2, HuBERT, WavLM).

    build_encoder("wav2vec2-large-robust")                 # first 12 layers, from_pretrained("facebook/...")
    build_encoder("wav2vec2-large-robust", pretrained=False) # the architecture, random weights, offline
    build_encoder("wavlm-base-plus", layer=6)               # one hidden layer
    build_encoder("hubert-large", weighted=True)            # learned softmax-weighted sum of all layers
    build_encoder("path/to/save_pretrained_dir")            # any transformers audio model folder

(b, n) 16 kHz waveforms, (b, n) mask -> (b, t, d) frames at 50 per second, (b, t) mask.
Each preset carries its architecture config, so `pretrained=False` builds the full-size network
with random weights and no network access.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from ..core.errors import ConfigError
from .base import EncoderPreset, register_encoder
from .hf import LayerChoice, TransformersEncoder, load_weights, read_saved, require_safetensors

MIN_SAMPLES = 400  # the convolutional front end needs 25 ms of audio for one frame

# architecture fields of the large "stable layer norm" models (wav2vec2-large-robust, HuBERT/WavLM large)
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
              feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, layer_norm_eps=1e-5)


@dataclass(frozen=True)
class SpeechArch:
    """Where a speech model's weights live and the config that rebuilds it offline."""

    hub_id: str
    model_type: str                          # "wav2vec2" | "hubert" | "wavlm"
    config: dict[str, Any] = field(default_factory=dict)
    num_layers: int | None = None            # keep only the first n transformer layers
    normalize: bool = True                   # zero-mean / unit-variance waveform, as the model's feature extractor
    description: str = ""
    license: str = "Apache-2.0"              # of the upstream weights


ARCHS = {
    "wav2vec2-large-robust": SpeechArch(
        "facebook/wav2vec2-large-robust", "wav2vec2", _LARGE, num_layers=12,
        description="wav2vec 2.0 large (LV-60 + CommonVoice + Switchboard + Fisher), first 12 of 24 layers as in VAVL / AuxFormer"),
    "wav2vec2-base": SpeechArch(
        "facebook/wav2vec2-base", "wav2vec2", {}, normalize=True, description="wav2vec 2.0 base (LibriSpeech 960 h)"),
    "hubert-large": SpeechArch(
        "facebook/hubert-large-ll60k", "hubert", _LARGE, description="HuBERT large (Libri-Light 60k h)"),
    "wavlm-base-plus": SpeechArch(
        "microsoft/wavlm-base-plus", "wavlm", {}, normalize=False, description="WavLM base+ (94k h)", license="MIT"),
    "wavlm-large": SpeechArch(
        "microsoft/wavlm-large", "wavlm", {**_LARGE, "conv_bias": False}, description="WavLM large (94k h)", license="MIT"),
    "audeering-dim": SpeechArch(
        "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim", "wav2vec2", _LARGE, num_layers=12,
        description="audeering's dimensional emotion model: wav2vec2-large-robust pruned to 12 layers, fine-tuned on "
                    "MSP-Podcast for arousal / dominance / valence (its regression head: vavl convert audeering)",
        license="CC-BY-NC-SA-4.0"),
}


class SpeechEncoder(LayerChoice, TransformersEncoder):
    """A transformers speech model plus the choice of output: the last layer, one hidden layer
    (`layer`: 0 = CNN features projected, L = last) or a learned weighted sum (`weighted`)."""

    kind = "speech"
    modality = "audio"
    frame_rate = 50.0

    def __init__(self, model: PreTrainedModel, layer: int | None = None, weighted: bool = False,
                 freeze: bool = True, normalize: bool = True, name: str | None = None, source: str | None = None,
                 wave_stats: list[float] | tuple[float, float] | None = None):
        super().__init__(model, freeze=freeze, name=name, source=source)
        self.choose_layers(model.config.num_hidden_layers, layer, weighted, "the model")
        self.normalize = normalize
        if wave_stats is not None and (len(wave_stats) != 2 or not float(wave_stats[1]) > 0):
            raise ConfigError(f"wave_stats={wave_stats!r} must be [mean, std] with std > 0")
        # [mean, std]: every waveform z-scored with these (the official AuxFormer / VAVL global training
        # statistics) instead of its own; padding stays zero
        self.wave_stats = None if wave_stats is None else [float(wave_stats[0]), float(wave_stats[1])]
        self.output_dim = model.config.hidden_size

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 2:
            raise ValueError(f"speech encoder: expected waveforms (b, n), got {tuple(x.shape)}")
        mask = torch.ones_like(x, dtype=torch.bool) if mask is None else mask.bool().clone()
        if x.shape[1] < MIN_SAMPLES:
            x = nn.functional.pad(x, (0, MIN_SAMPLES - x.shape[1]))
            mask = nn.functional.pad(mask, (0, MIN_SAMPLES - mask.shape[1]))
        mask[:, :MIN_SAMPLES] |= mask[:, :1].clone()  # a clip shorter than one frame: count zero padding as audio
        x = x.float()
        if self.wave_stats is not None:   # official: (wav - mean) / (std + 1e-6) with training statistics
            x = (x - self.wave_stats[0]) / (self.wave_stats[1] + 1e-6) * mask.to(x.dtype)
        elif self.normalize:
            m = mask.to(x.dtype)
            count = m.sum(1, keepdim=True).clamp(min=1)
            mean = (x * m).sum(1, keepdim=True) / count
            var = (((x - mean) * m) ** 2).sum(1, keepdim=True) / count
            x = (x - mean) / torch.sqrt(var + 1e-7) * m
        if self.takes_mask:
            return self.encode(x, mask)
        # group-norm front ends (base models) were trained without attention masks and normalise over
        # the padding too: clips of one length run together, each group cut to its own length
        lengths = (mask * torch.arange(1, mask.shape[1] + 1, device=mask.device)).amax(1)   # end of each row's audio
        feats = frame_mask = None
        for n in lengths.unique().tolist():
            rows = (lengths == n).nonzero().squeeze(1)
            f, m = self.encode(x[rows, :int(n)], mask[rows, :int(n)])
            if feats is None:
                t = self.model._get_feat_extract_output_lengths(torch.tensor(x.shape[1])).item()
                feats = f.new_zeros(x.shape[0], int(t), f.shape[-1])
                frame_mask = torch.zeros(x.shape[0], int(t), dtype=torch.bool, device=f.device)
            feats[rows, :f.shape[1]], frame_mask[rows, :m.shape[1]] = f, m
        return feats, frame_mask

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised waveforms, every mask row with audio -> frames and their mask. The frame mask
        comes from transformers' `_get_feature_vector_attention_mask`, which is only right for rows
        with audio (an all-false row comes back mostly true): Encoder's mask rule keeps the others out."""
        hidden_needed = self.layer is not None or self.weighted
        with torch.set_grad_enabled(self.grad_enabled()):
            out = self.model(x, attention_mask=mask.long() if self.takes_mask else None, output_hidden_states=hidden_needed)
        feats = self.mix(out.hidden_states) if hidden_needed else out.last_hidden_state
        frame_mask = self.model._get_feature_vector_attention_mask(feats.shape[1], mask.long()).bool()
        return feats * frame_mask.unsqueeze(-1), frame_mask

    @property
    def takes_mask(self) -> bool:
        """Layer-norm front ends take the attention mask; group-norm ones (base models) do not, and
        normalise over padding: forward runs each length of a batch on its own, so both kinds are
        batch-invariant."""
        return getattr(self.model.config, "feat_extract_norm", "layer") == "layer"

    def layer_ids(self) -> dict[str, int]:
        """Layer-wise learning-rate decay: transformer layer i (1..L) -> id i; everything else (CNN
        feature encoder, projection, positional convolution, norms, layer weights) -> 0."""
        names = {id(p): n for n, p in self.named_parameters()}
        ids = dict.fromkeys(names.values(), 0)
        for i, layer in enumerate(self.model.encoder.layers, 1):
            ids.update({names[id(p)]: i for p in layer.parameters()})
        return ids

    # ---- saving ----------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {"layer": self.layer, "weighted": self.weighted, "freeze": self.freeze, "normalize": self.normalize,
                **({"wave_stats": self.wave_stats} if self.wave_stats is not None else {})}

    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild the architecture offline (weights come separately)."""
        return {**super().spec(), "model_type": self.model.config.model_type}


def _truncate(model: PreTrainedModel, num_layers: int | None) -> PreTrainedModel:
    if num_layers is not None and num_layers < model.config.num_hidden_layers:
        del model.encoder.layers[num_layers:]
        model.config.num_hidden_layers = num_layers
    return model


def from_spec(spec: dict[str, Any]) -> SpeechEncoder:
    """Random-weight encoder with the architecture of `spec` (SpeechEncoder.spec())."""
    config = AutoConfig.for_model(spec["model_type"], **{k: v for k, v in spec["config"].items() if k != "model_type"})
    model = AutoModel.from_config(config)
    return SpeechEncoder(model, layer=spec.get("layer"), weighted=spec.get("weighted", False),
                         freeze=spec.get("freeze", True), normalize=spec.get("normalize", True),
                         name=spec.get("name"), source=spec.get("source"), wave_stats=spec.get("wave_stats"))


def from_directory(directory: str | os.PathLike, num_layers: int | None = None, **options) -> SpeechEncoder:
    """A folder written by `save_pretrained` (transformers or SpeechEncoder)."""
    require_safetensors(directory)   # before anything is unpickled
    saved = read_saved(directory)
    layer_weights = saved.pop("layer_weights", None)
    try:
        model = AutoModel.from_pretrained(str(directory), use_safetensors=True)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{directory}: not a loadable transformers audio model ({e})") from None
    if not hasattr(model, "_get_feature_vector_attention_mask"):
        raise ConfigError(f"{directory}: {type(model).__name__} is not a speech model (wav2vec2 / HuBERT / WavLM family)")
    model = _truncate(model, num_layers)
    kwargs = {k: saved[k] for k in ("layer", "weighted", "freeze", "normalize", "name", "wave_stats") if k in saved}
    kwargs.update(options)
    enc = SpeechEncoder(model, source=saved.get("source") or str(directory), **kwargs)
    enc.load_layer_weights(layer_weights)
    return enc


def _builder(name: str, arch: SpeechArch):
    def build(pretrained: bool = False, num_layers: int | None = arch.num_layers, source: str | None = None,
              normalize: bool = arch.normalize, **options) -> SpeechEncoder:
        source = source or arch.hub_id
        if pretrained:
            model = load_weights(AutoModel, source, allow_pickle=True)  # the official checkpoint (hub id or its folder)
        else:
            config = AutoConfig.for_model(arch.model_type, **arch.config)
            if num_layers is not None:
                config.num_hidden_layers = num_layers
            model = AutoModel.from_config(config)
        return SpeechEncoder(_truncate(model, num_layers), name=name, source=source, normalize=normalize, **options)

    return build


for _name, _arch in ARCHS.items():
    register_encoder(EncoderPreset(
        name=_name, modality="audio", build=_builder(_name, _arch),
        output_dim=_arch.config.get("hidden_size", 768), source=_arch.hub_id, description=_arch.description,
        rate="50 frames/s", license=_arch.license,
        options={"num_layers": _arch.num_layers, "layer": None, "weighted": False, "freeze": True,
                 "normalize": _arch.normalize}))

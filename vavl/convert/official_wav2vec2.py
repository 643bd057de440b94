"""The authors' fine-tuned wav2vec2-large-robust (AuxFormer / VAVL `final_wav2vec.pt`) -> a speech
encoder folder that `vavl extract --audio-encoder DIR` takes.

    vavl convert wav2vec2-official wav2vec2-large-robust-finetunned/model/wav2vec2/final_wav2vec.pt \\
        --wave-mean M --wave-std S --out encoders/w2v2-official

The official wrappers (AuxFormer net/modelWrapper.py:172-174, VAVL net/modelWrapper.py:263-265) build
transformers' Wav2Vec2Model from facebook/wav2vec2-large-robust, drop its transformer layers above
12, and load this file: a plain state dict of that model. It is read weights-only (no pickled code
runs). The architecture is read from the tensors' shapes (widths, layer count, convolution kernels,
positional-convolution groups); what tensors cannot say is wav2vec2-large-robust's: the strides of
its 7-layer convolutional front end, layer-norm front end with stable layer norm, and the number of
attention heads (16, `num_attention_heads`). Weight-normalised positional-convolution tensors in the
older `weight_g` / `weight_v` naming are renamed to transformers' current one.

The official loaders z-score each waveform with the GLOBAL mean / std of the training waveforms
(AuxFormer utils/dataset.py:70, VAVL utils/dataset.py:71) before wav2vec2; give those two numbers
(`wave_mean` / `wave_std`) and the encoder does the same (kept in its encoder_config.json as
`wave_stats`); without them it z-scores each clip alone, as the pretrained model's feature extractor does.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from ..core.errors import DataError
from ..encoders.speech import SpeechEncoder

LARGE_ROBUST_STRIDES = (5, 2, 2, 2, 2, 2, 2)
NAME = "wav2vec2-large-robust-official-ft"
RENAMES = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; give the authors' final_wav2vec.pt") from None
    except Exception as e:   # a pickle with code, a truncated or foreign file
        raise DataError(f"{path}: not a weights-only state dict ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                        "give the authors' final_wav2vec.pt") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: not a state dict of tensors; give the authors' final_wav2vec.pt")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    out = {}
    for key, value in state.items():
        head, _, last = key.rpartition(".")
        out[f"{head}.{RENAMES[last]}" if "pos_conv_embed" in key and last in RENAMES else key] = value
    return out


def infer_config(state: dict[str, torch.Tensor], path: Path, num_attention_heads: int) -> Wav2Vec2Config:
    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise DataError(f"{path}: no tensor {key!r}: not a Wav2Vec2Model state dict")
        return state[key]

    layers = sorted({int(m[1]) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    convs = sorted({int(m[1]) for k in state if (m := re.match(r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight", k))})
    if not layers or not convs:
        raise DataError(f"{path}: no encoder layers / convolutional front end: not a Wav2Vec2Model state dict")
    if len(convs) != len(LARGE_ROBUST_STRIDES):
        raise DataError(f"{path}: {len(convs)} convolution layers; wav2vec2-large-robust has {len(LARGE_ROBUST_STRIDES)}")
    hidden = need("encoder.layers.0.attention.q_proj.weight").shape[0]
    conv_w = [need(f"feature_extractor.conv_layers.{i}.conv.weight") for i in convs]
    pos = need("encoder.pos_conv_embed.conv.parametrizations.weight.original1")
    return Wav2Vec2Config(
        hidden_size=hidden, num_hidden_layers=len(layers), num_attention_heads=num_attention_heads,
        intermediate_size=need("encoder.layers.0.feed_forward.intermediate_dense.weight").shape[0],
        conv_dim=[w.shape[0] for w in conv_w], conv_kernel=[w.shape[2] for w in conv_w], conv_stride=list(LARGE_ROBUST_STRIDES),
        conv_bias="feature_extractor.conv_layers.0.conv.bias" in state,
        feat_extract_norm="layer" if "feature_extractor.conv_layers.0.layer_norm.weight" in state else "group",
        do_stable_layer_norm=True, num_conv_pos_embeddings=pos.shape[2], num_conv_pos_embedding_groups=hidden // pos.shape[1])


def load_official_wav2vec2(path, num_attention_heads: int = 16, wave_mean: float | None = None,
                           wave_std: float | None = None) -> SpeechEncoder:
    """Read the authors' final_wav2vec.pt into a frozen SpeechEncoder (see module docstring)."""
    path = Path(path)
    state = read_state(path)
    config = infer_config(state, path, num_attention_heads)
    if config.hidden_size % num_attention_heads:
        raise DataError(f"{path}: num_attention_heads={num_attention_heads} does not divide the width {config.hidden_size}")
    model = Wav2Vec2Model(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "masked_spec_embed"]   # only used for training-time masking
    if missing or unexpected:
        raise DataError(f"{path}: does not fit wav2vec2-large-robust's layout (missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]})")
    if (wave_mean is None) != (wave_std is None):
        raise DataError("give both wave_mean and wave_std (the official global training statistics), or neither")
    stats = None if wave_mean is None else [wave_mean, wave_std]
    return SpeechEncoder(model.eval(), name=NAME, source=str(path), normalize=stats is None, wave_stats=stats)

"""AST (Audio Spectrogram Transformer, transformers' ASTModel): one AudioSet-trained embedding per
window of audio, the role VGGish plays in the correspondence and song/speech recipes.

    build_encoder("ast-audioset")                        # MIT/ast-finetuned-audioset-10-10-0.4593
    build_encoder("ast-audioset", pretrained=False)      # full-size architecture, random weights, offline
    build_encoder("ast-audioset", window=2.0, hop=0.5)   # window and hop in seconds (default 1 s, 1 s)

(b, n) 16 kHz waveforms, (b, n) mask -> (b, w, 768) one row per window, (b, w) mask; w = 1 +
ceil((n - window) / hop) windows, the last one shorter when the clip does not fill it. Each window
gets the model's own Kaldi fbank (ASTFeatureExtractor's settings and normalisation, computed by
vavl.media.spectral; a short window is padded in the fbank, as the extractor pads to its max_length) and the pooled output (mean of the CLS and distillation tokens).
AST was trained on 10.24 s inputs (101 patch columns): a shorter window takes the first columns of
the positional table instead of padding every window to 10 s.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

from ..core.errors import ConfigError
from ..media.spectral import kaldi_fbank
from .base import EncoderPreset, pad_rows, register_encoder
from .hf import TransformersEncoder, extractor_from_dict, feature_extractor_from, load_weights, read_saved

SAMPLE_RATE = 16000
FBANK_WINDOW, FBANK_HOP = 400, 160   # Kaldi fbank: 25 ms windows every 10 ms
HUB_ID = "MIT/ast-finetuned-audioset-10-10-0.4593"


def fbank_frames(samples: int) -> int:
    """Kaldi fbank frames of `samples` samples (snip_edges: whole windows only)."""
    return 1 + (samples - FBANK_WINDOW) // FBANK_HOP


class ASTEncoder(TransformersEncoder):
    """ASTModel over fixed windows of each clip; windows of all clips run as one batch (each
    window is its own sequence, so clips never see each other)."""

    kind = "ast"
    modality = "audio"
    sample_rate = SAMPLE_RATE

    def __init__(self, model: ASTModel, feature_extractor: ASTFeatureExtractor, window: float = 1.0, hop: float = 1.0,
                 freeze: bool = True, chunk: int = 32, name: str | None = None, source: str | None = None):
        super().__init__(model, freeze=freeze, name=name, source=source)
        cfg = model.config
        self.window_samples, self.hop_samples = round(window * SAMPLE_RATE), round(hop * SAMPLE_RATE)
        if hop <= 0 or self.window_samples < FBANK_WINDOW:
            raise ConfigError(f"AST encoder: window={window} s must be at least {FBANK_WINDOW / SAMPLE_RATE} s and hop={hop} s > 0")
        frames = fbank_frames(self.window_samples)
        if frames < cfg.patch_size or frames > cfg.max_length:
            raise ConfigError(f"AST encoder: window={window} s gives {frames} fbank frames; this model takes "
                              f"{cfg.patch_size}..{cfg.max_length} ({cfg.max_length / 100:.2f} s)")
        if feature_extractor.num_mel_bins != cfg.num_mel_bins:
            raise ConfigError(f"the feature extractor gives {feature_extractor.num_mel_bins} mel bins, the model takes {cfg.num_mel_bins}")
        self.window, self.hop, self.chunk = float(window), float(hop), chunk
        self.frame_rate = 1.0 / self.hop
        self.output_dim = cfg.hidden_size
        self.feature_extractor = feature_extractor
        self.window_frames = frames   # each window's fbank is padded to the window's length, not to max_length

    # ---- forward ---------------------------------------------------------------------------
    def windows(self, samples: int) -> list[tuple[int, int]]:
        """[start, end) sample ranges of the windows of a clip with `samples` real samples."""
        if samples <= 0:
            return []
        count = 1 + max(0, math.ceil((samples - self.window_samples) / self.hop_samples))
        return [(k * self.hop_samples, min(k * self.hop_samples + self.window_samples, samples)) for k in range(count)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 2:
            raise ValueError(f"AST encoder: expected waveforms (b, n), got {tuple(x.shape)}")
        lengths = mask.sum(1).tolist() if mask is not None else [x.shape[1]] * x.shape[0]
        waves = x.detach().float().cpu().numpy()
        spans = [(i, a, b) for i, n in enumerate(lengths) for a, b in self.windows(int(n))]
        pieces = [np.pad(waves[i, a:b], (0, max(FBANK_WINDOW - (b - a), 0))) for i, a, b in spans]   # >= one fbank window
        embeddings = []
        for k in range(0, len(pieces), self.chunk):
            fbank = torch.stack([self.fbank(piece) for piece in pieces[k:k + self.chunk]])
            embeddings.append(self.embed(fbank.to(x.device, self.model.dtype)))
        flat = torch.cat(embeddings) if embeddings else x.new_zeros(0, self.output_dim)
        rows = [flat[[j for j, s in enumerate(spans) if s[0] == i]] for i in range(x.shape[0])]
        return pad_rows(rows, self.output_dim, x.device)

    def fbank(self, piece: np.ndarray) -> torch.Tensor:
        """One window's samples -> (frames, mel bins): the extractor's Kaldi fbank, zero rows after the
        log up to the window's length, then its normalisation (x - mean) / (2 std)."""
        fe = self.feature_extractor
        fb = kaldi_fbank(torch.from_numpy(np.ascontiguousarray(piece, dtype=np.float32)), num_mel_bins=fe.num_mel_bins,
                         sample_rate=SAMPLE_RATE)[: self.window_frames]
        fb = F.pad(fb, (0, 0, 0, self.window_frames - fb.shape[0]))
        return (fb - fe.mean) / (fe.std * 2) if fe.do_normalize else fb

    def embed(self, fbank: torch.Tensor) -> torch.Tensor:
        """(w, frames, mel bins) normalised fbank -> (w, d) pooled embedding, with the first
        columns of the positional table when the window is shorter than the model's max_length."""
        emb = self.model.embeddings
        with torch.set_grad_enabled(self.grad_enabled()):
            patches = emb.patch_embeddings(fbank)                                 # (w, f * t, d), row-major (f, t)
            f, _ = emb.get_shape(self.model.config)
            table = emb.position_embeddings[0]                                    # (2 + f * t_max, d)
            grid = rearrange(table[2:], "(f t) d -> f t d", f=f)[:, : patches.shape[1] // f]
            positions = torch.cat([table[:2], rearrange(grid, "f t d -> (f t) d")])
            w = fbank.shape[0]
            h = torch.cat([emb.cls_token.expand(w, -1, -1), emb.distillation_token.expand(w, -1, -1), patches], 1)
            h = emb.dropout(h + positions)
            for layer in self.model.layers:
                h = layer(h, None)
            h = self.model.layernorm(h)
            return (h[:, 0] + h[:, 1]) / 2

    # ---- saving ----------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {"window": self.window, "hop": self.hop, "freeze": self.freeze}


def _extractor_defaults(config) -> dict[str, Any]:
    return {"num_mel_bins": config.num_mel_bins, "max_length": config.max_length, "sampling_rate": SAMPLE_RATE}


def from_spec(spec: dict[str, Any]) -> ASTEncoder:
    """Random-weight encoder with the architecture of `spec` (ASTEncoder.spec())."""
    config = ASTConfig(**{k: v for k, v in spec["config"].items() if k != "model_type"})
    fe = extractor_from_dict(ASTFeatureExtractor, spec.get("feature_extractor"), _extractor_defaults(config))
    return ASTEncoder(ASTModel(config), fe, window=spec.get("window", 1.0), hop=spec.get("hop", 1.0),
                      freeze=spec.get("freeze", True), name=spec.get("name"), source=spec.get("source"))


def from_directory(directory, **options) -> ASTEncoder:
    """A folder written by ASTEncoder.save_pretrained, or a transformers AST folder (ASTModel or
    ASTForAudioClassification)."""
    saved = read_saved(directory)
    model = load_weights(ASTModel, directory)
    fe = feature_extractor_from(ASTFeatureExtractor, directory, _extractor_defaults(model.config))
    kwargs = {**{k: saved[k] for k in ("window", "hop", "freeze", "name") if k in saved}, **options}
    return ASTEncoder(model, fe, source=saved.get("source") or str(directory), **kwargs)


def build(pretrained: bool = False, source: str | None = None, **options) -> ASTEncoder:
    source = source or HUB_ID
    if pretrained:
        model = load_weights(ASTModel, source, allow_pickle=True)   # the official checkpoint (hub id or its folder)
        fe = feature_extractor_from(ASTFeatureExtractor, source, _extractor_defaults(model.config))
    else:  # ASTConfig's defaults are the AudioSet model's architecture (10x10 patch strides, 1024 frames)
        model = ASTModel(ASTConfig())
        fe = ASTFeatureExtractor(**_extractor_defaults(model.config))
    return ASTEncoder(model, fe, name="ast-audioset", source=source, **options)


register_encoder(EncoderPreset(
    name="ast-audioset", modality="audio", build=build, output_dim=768, source=HUB_ID,
    description="Audio Spectrogram Transformer fine-tuned on AudioSet (clip audio embeddings, the role of VGGish); "
                "pooled CLS + distillation tokens per window, 128-bin Kaldi fbank",
    rate="one per window (window 1 s, hop 1 s; options window=, hop=)", license="BSD-3-Clause",
    options={"window": 1.0, "hop": 1.0, "freeze": True}))

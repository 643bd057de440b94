"""The encoder interface and the registry of named encoder presets.

An encoder turns raw input into frames of features:
  audio:  waveform (b, n) float32 at `sample_rate` (16 kHz), mask (b, n) -> (b, t, d), (b, t)
  visual: face crops (b, t, 3, H, W) normalised with the encoder's mean/std, mask (b, t)
          -> (b, t, d), (b, t)
Every encoder is an nn.Module with `modality`, `output_dim`, `frame_rate` (output frames per
second, None when it follows the input frames) and, for visual ones, `image_size`, `mean`,
`std` and `output_times` (when each output row happened), and `batch_invariant` (False: pad a
clip only with clips of its own length, or its features change). `per_frame` (visual encoders):
True when each output row is a function of its own input frame alone (a 2D backbone applied to
each crop), so a frame's features may be kept and reused (vavl stream's overlapping windows);
False (the default) for anything that mixes frames (VideoMAE's windows, frame differences).

One mask rule holds for every encoder, whatever its batch companions: a clip whose input mask row
is all false (no audio, no face) has no output frames — an all-false output mask row and zero
features. `Encoder` enforces it around every subclass's `forward` (`present_rows_only`): such
rows never reach the network, which sees only the clips that have the modality. Presets are plain data
(`EncoderPreset`, with a one-line card: what it is, rate, width, license of the weights);
`build_encoder(name)` makes the module.
"""
from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..core.errors import ConfigError


def present_rows_only(forward: Callable) -> Callable:
    """Wrap an encoder's forward(x, mask) so that the clips whose mask row is all false skip the
    network and come back with zero features and an all-false mask row (the network's own answer
    for an empty row, e.g. transformers' frame mask of a speech model, is never used). Under
    torch.compile / export every row runs and the rule is applied to the outputs."""
    if getattr(forward, "_vavl_present_rows", False):
        return forward

    @functools.wraps(forward)
    def wrapper(self, x: torch.Tensor, mask: torch.Tensor | None = None, *args, **kwargs):
        if mask is None:
            return forward(self, x, mask, *args, **kwargs)
        present = mask.reshape(mask.shape[0], -1).bool().any(1)   # (b,)
        if torch.compiler.is_compiling():   # traceable: run every row, then apply the rule
            feats, fmask = forward(self, x, mask, *args, **kwargs)
            fmask = fmask.bool() & present.unsqueeze(1)
            return torch.where(fmask.unsqueeze(-1), feats, torch.zeros((), dtype=feats.dtype, device=feats.device)), fmask
        if bool(present.all()):
            return forward(self, x, mask, *args, **kwargs)
        b = x.shape[0]
        if not bool(present.any()):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            return (torch.zeros(b, 1, self.output_dim, dtype=dtype, device=x.device),
                    torch.zeros(b, 1, dtype=torch.bool, device=x.device))
        idx = present.nonzero().squeeze(1)
        feats, fmask = forward(self, x[idx], mask[idx], *args, **kwargs)
        out = feats.new_zeros(b, *feats.shape[1:])
        out[idx.to(feats.device)] = feats
        out_mask = torch.zeros(b, fmask.shape[1], dtype=torch.bool, device=fmask.device)
        out_mask[idx.to(fmask.device)] = fmask.bool()
        return out, out_mask

    wrapper._vavl_present_rows = True
    return wrapper


class Encoder(nn.Module):
    modality: str = "audio"          # "audio" or "visual"
    output_dim: int = 0
    frame_rate: float | None = None  # frames per second of the output (None: one per input frame)
    sample_rate: int = 16000         # audio encoders
    image_size: int = 224            # visual encoders: square crop side in pixels
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    batch_invariant: bool = True     # a clip's features do not depend on the clips batched (and padded) with it
    per_frame: bool = False          # visual: each output row depends on its own input frame only (reusable per frame)

    def __init_subclass__(cls, **kwargs):
        """Every encoder's forward follows the mask rule (module docstring): see present_rows_only."""
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__:
            cls.forward = present_rows_only(cls.__dict__["forward"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def layer_ids(self) -> dict[str, int]:
        """Layer-wise learning-rate decay: parameter name -> layer id, 0 at the input up to the top
        layer's id. Encoders without layers: every parameter 0."""
        return {name: 0 for name, _ in self.named_parameters()}

    def set_frozen(self, frozen: bool) -> "Encoder":
        """Freeze (no gradients, no dropout, forward under no_grad) or unfreeze for fine-tuning."""
        self.freeze = frozen
        self.requires_grad_(not frozen)
        return self.train(self.training)

    def output_times(self, frame_times, mask):
        """Visual encoders: (t,) times of the input frames, (t,) face mask -> the time of each
        output row. One row per input frame here; encoders that pool frames (windows) override it."""
        return frame_times


def pad_rows(rows: list[torch.Tensor], dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip (t_i, d) rows (t_i may be 0) -> (b, max(t_i, 1), d) zero padded, (b, t) bool mask."""
    t = max([r.shape[0] for r in rows] + [1])
    dtype = next((r.dtype for r in rows if r.shape[0]), torch.float32)
    out = torch.zeros(len(rows), t, dim, device=device, dtype=dtype)
    mask = torch.zeros(len(rows), t, dtype=torch.bool, device=device)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = True
    return out, mask


@dataclass(frozen=True)
class EncoderPreset:
    """A named encoder: what it is, where its weights come from, how to build it.

    build(pretrained: bool, **options) -> Encoder
    source: a hub id or a local path the weights come from (None for hand-crafted features).
    rate: how often it gives a row, in words ("50 frames/s", "one per face frame").
    license: license of the upstream weights (None: nothing to license, no weights).
    """

    name: str
    modality: str
    build: Callable[..., Encoder]
    output_dim: int
    source: str | None = None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    rate: str = ""
    license: str | None = None

    def card_line(self) -> str:
        """`name (modality): what it is; rate; width; weights` on one line."""
        weights = f"weights {self.source} ({self.license})" if self.source else "no weights"
        return f"{self.name} ({self.modality}): {self.description}; {self.rate}; {self.output_dim}-d; {weights}"


_PRESETS: dict[str, EncoderPreset] = {}
# modules whose import registers presets; loaded on first lookup so `import vavl` stays light
PRESET_MODULES = ("vavl.encoders.speech", "vavl.encoders.whisper", "vavl.encoders.ast", "vavl.encoders.faces",
                  "vavl.encoders.videomae", "vavl.encoders.classic")
_loaded = False


def _load_presets() -> None:
    global _loaded
    if _loaded:
        return
    import importlib

    for name in PRESET_MODULES:
        importlib.import_module(name)
    _loaded = True


def register_encoder(preset: EncoderPreset) -> EncoderPreset:
    if preset.modality not in ("audio", "visual"):
        raise ValueError(f"encoder {preset.name}: modality must be 'audio' or 'visual'")
    _PRESETS[preset.name] = preset
    return preset


def list_encoders(pattern: str | None = None, modality: str | None = None) -> list[str]:
    _load_presets()
    return sorted(n for n, p in _PRESETS.items()
                  if (pattern is None or fnmatch.fnmatch(n, pattern)) and (modality is None or p.modality == modality))


def encoder_cards(modality: str | None = None) -> list[str]:
    """One card line per preset (EncoderPreset.card_line), sorted by name."""
    return [_PRESETS[n].card_line() for n in list_encoders(modality=modality)]


def get_encoder_preset(name: str) -> EncoderPreset:
    _load_presets()
    try:
        return _PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown encoder preset {name!r}; known: {', '.join(list_encoders())}") from None


def unreachable_weights(source: str, what: str, error: BaseException) -> ConfigError:
    """The one-line error for pretrained weights that are neither in the Hugging Face cache nor
    downloadable (offline, or no such repository): it names the hub id and what to do."""
    from huggingface_hub.constants import HF_HUB_CACHE

    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return ConfigError(
        f"{source}: cannot load the pretrained weights of {what}: not in the Hugging Face cache ({HF_HUB_CACHE}) and not "
        f"downloadable ({reason}); download them once where there is network (`hf download {source}`), pass a local "
        "folder that holds them, or ask for an untrained network (--random-init, pretrained_encoders=False)")

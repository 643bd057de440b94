"""VideoMAE (transformers' VideoMAEModel): clip-level video features over windows of face crops,
the role SlowFast plays in the seed projects.

    build_encoder("videomae-base-kinetics")                # MCG-NJU/videomae-base-finetuned-kinetics
    build_encoder("videomae-base-kinetics", pretrained=False) # full-size architecture, random weights, offline
    build_encoder("videomae-base", hop=4)                  # windows of 16 face frames every 4 frames

(b, t, 3, S, S) face crops normalised with mean/std, (b, t) face mask -> (b, w, 768) one row per
window of `num_frames` (16) face frames, (b, w) mask: the visual sequence is at window rate.
Windows start every `hop` face frames (default 8); the last one ends on the clip's last face
frame. A clip with fewer face frames than a window fills one window by repeating its frames
evenly. The embedding is the mean of the last hidden states over all tubelet tokens.
`output_times` gives each window's time (the mean time of its frames) for `vavl predict`'s timeline.
VideoMAE's Kinetics sampling is 16 frames over ~2 s: extract with `--fps 8` to match it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel

from ..core.errors import ConfigError
from .base import EncoderPreset, pad_rows, register_encoder
from .hf import TransformersEncoder, load_weights, read_saved

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)   # VideoMAE's training normalisation
HUB_IDS = {"videomae-base": "MCG-NJU/videomae-base", "videomae-base-kinetics": "MCG-NJU/videomae-base-finetuned-kinetics"}


def window_indices(frames: int, size: int, hop: int) -> list[np.ndarray]:
    """Indices (size,) into `frames` real frames for each window."""
    if frames <= 0:
        return []
    if frames < size:
        return [np.arange(size) * frames // size]
    starts = list(range(0, frames - size + 1, hop))
    if starts[-1] + size < frames:
        starts.append(frames - size)
    return [np.arange(s, s + size) for s in starts]


class VideoMAEEncoder(TransformersEncoder):
    kind = "videomae"
    modality = "visual"
    frame_rate = None   # one row per `hop` face frames

    def __init__(self, model: VideoMAEModel, mean=IMAGENET_MEAN, std=IMAGENET_STD, hop: int = 8, freeze: bool = True,
                 chunk: int = 4, name: str | None = None, source: str | None = None):
        super().__init__(model, freeze=freeze, name=name, source=source)
        self.window = model.config.num_frames
        if not isinstance(hop, int) or hop <= 0:
            raise ConfigError(f"VideoMAE encoder: hop={hop!r} must be a positive number of frames")
        self.hop, self.chunk = hop, chunk
        size = model.config.image_size
        self.image_size = size if isinstance(size, int) else int(size[0])
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.output_dim = model.config.hidden_size

    def face_windows(self, mask: torch.Tensor) -> list[np.ndarray]:
        """(t,) face mask -> indices into the t input frames of each window's frames."""
        faces = np.flatnonzero(mask.detach().cpu().numpy())
        return [faces[w] for w in window_indices(len(faces), self.window, self.hop)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"VideoMAE encoder: expected crops (b, t, 3, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        mask = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        clips = [self.face_windows(mask[i]) for i in range(b)]
        owner = [i for i, windows in enumerate(clips) for _ in windows]
        videos = [x[i, torch.as_tensor(w, device=x.device)] for i, windows in enumerate(clips) for w in windows]
        embeddings = [self.embed(torch.stack(videos[k:k + self.chunk])) for k in range(0, len(videos), self.chunk)]
        flat = torch.cat(embeddings) if embeddings else x.new_zeros(0, self.output_dim)
        rows = [flat[[j for j, o in enumerate(owner) if o == i]] for i in range(b)]
        return pad_rows(rows, self.output_dim, x.device)

    def embed(self, videos: torch.Tensor) -> torch.Tensor:
        """(w, num_frames, 3, H, W) -> (w, d): mean of the last hidden states over the tokens."""
        if videos.shape[-1] != self.image_size or videos.shape[-2] != self.image_size:
            w, n = videos.shape[:2]
            videos = F.interpolate(videos.flatten(0, 1), size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False).unflatten(0, (w, n))
        with torch.set_grad_enabled(self.grad_enabled()):
            return self.model(pixel_values=videos.to(self.model.dtype)).last_hidden_state.mean(1)

    def output_times(self, frame_times, mask):
        """The mean time of each window's frames."""
        times = np.asarray(frame_times, dtype=np.float64)
        return np.array([times[w].mean() for w in self.face_windows(torch.as_tensor(mask))])

    def options(self) -> dict[str, Any]:
        return {"hop": self.hop, "mean": list(self.mean), "std": list(self.std), "freeze": self.freeze}


def _normalisation(source: str) -> tuple[tuple, tuple]:
    """mean / std from the image processor saved with the weights (ImageNet's when there is none)."""
    try:
        proc = VideoMAEImageProcessor.from_pretrained(str(source))
    except OSError:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(proc.image_mean), tuple(proc.image_std)


def from_spec(spec: dict[str, Any]) -> VideoMAEEncoder:
    """Random-weight encoder with the architecture of `spec` (VideoMAEEncoder.spec())."""
    config = VideoMAEConfig(**{k: v for k, v in spec["config"].items() if k != "model_type"})
    return VideoMAEEncoder(VideoMAEModel(config), spec.get("mean", IMAGENET_MEAN), spec.get("std", IMAGENET_STD),
                           hop=spec.get("hop", 8), freeze=spec.get("freeze", True), name=spec.get("name"),
                           source=spec.get("source"))


def from_directory(directory, **options) -> VideoMAEEncoder:
    """A folder written by VideoMAEEncoder.save_pretrained, or a transformers VideoMAE folder."""
    saved = read_saved(directory)
    mean, std = (saved["mean"], saved["std"]) if "mean" in saved else _normalisation(directory)
    kwargs = {**{k: saved[k] for k in ("hop", "freeze", "name") if k in saved}, **options}
    return VideoMAEEncoder(load_weights(VideoMAEModel, directory), mean, std, source=saved.get("source") or str(directory),
                           **kwargs)


def _builder(name: str):
    def build(pretrained: bool = False, source: str | None = None, **options) -> VideoMAEEncoder:
        source = source or HUB_IDS[name]
        if pretrained:
            return VideoMAEEncoder(load_weights(VideoMAEModel, source, allow_pickle=True), *_normalisation(source), name=name, source=source,
                                   **options)
        # VideoMAEConfig's defaults are ViT-B: 16 frames, tubelets of 2, 224 px, 16 px patches
        return VideoMAEEncoder(VideoMAEModel(VideoMAEConfig()), name=name, source=source, **options)

    return build


for _name, _what in (("videomae-base", "self-supervised on Kinetics-400"),
                     ("videomae-base-kinetics", "self-supervised, then fine-tuned on Kinetics-400 classes, as SlowFast was")):
    register_encoder(EncoderPreset(
        name=_name, modality="visual", build=_builder(_name), output_dim=768, source=HUB_IDS[_name],
        description=f"VideoMAE ViT-B ({_what}); 224 px face crops, token mean over 16-frame windows (clip-level features)",
        rate="one per 16 face frames, hop 8 frames (option hop=); extract with --fps 8", license="CC-BY-NC-4.0",
        options={"hop": 8, "freeze": True}))

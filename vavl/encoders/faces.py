"""Face encoders: any timm backbone applied to each face crop.

    build_encoder("efficientnet_b2")                 # 1408-d, timm weights from the hub (or cache)
    build_encoder("efficientnet_b2", pretrained=False)  # random weights, offline
    build_encoder("convnext_tiny")                   # any other timm model name
    vavl.convert.load_hsemotion("enet_b2_8.pt")      # HSEmotion face-emotion weights

(b, t, 3, H, W) crops normalised with the encoder's mean/std, (b, t) mask -> (b, t, d), (b, t).
Only frames with a face go through the backbone; the rest stay zero.
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch
from einops import rearrange
from torch import nn

from ..core.errors import ConfigError
from .base import Encoder, EncoderPreset, register_encoder, unreachable_weights

CONFIG_NAME = "encoder_config.json"
WEIGHTS_NAME = "encoder.safetensors"


class FaceEncoder(Encoder):
    """A timm backbone (num_classes=0, pooled features). `head` / `label_names` optionally keep a
    face-emotion classifier that came with the weights (HSEmotion); the fusion model does not use it."""

    modality = "visual"
    frame_rate = None
    per_frame = True   # the backbone sees each crop on its own (eval-mode batch norm): a frame's features are its own

    def __init__(self, model_name: str, backbone: nn.Module, image_size: int, mean, std, freeze: bool = True,
                 chunk: int = 64, label_names: list[str] | None = None, name: str | None = None,
                 source: str | None = None):
        super().__init__()
        self.model_name, self.backbone, self.image_size = model_name, backbone, int(image_size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.freeze, self.chunk, self.name, self.source = freeze, chunk, name, source
        # width of the pooled output: head_hidden_size where timm has a pre-logits layer (MobileNetV3: 1024, not 288)
        self.output_dim = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.label_names = list(label_names) if label_names else None
        self.head = nn.Linear(self.output_dim, len(self.label_names)) if self.label_names else None
        if freeze:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.backbone.eval()  # frozen: batch-norm statistics stay as loaded
        return self

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"face encoder: expected crops (b, t, 3, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        mask = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        flat = rearrange(x, "b t c h w -> (b t) c h w")
        if torch.compiler.is_exporting():   # one traceable pass over every crop; those without a face zeroed
            feats = self.backbone(flat.contiguous(memory_format=torch.channels_last))
            return rearrange(feats * mask.reshape(-1, 1).to(feats.dtype), "(b t) d -> b t d", b=b), mask
        keep = mask.reshape(-1).nonzero().squeeze(1)
        feats = x.new_zeros(b * t, self.output_dim)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            for i in range(0, len(keep), self.chunk):
                idx = keep[i:i + self.chunk]
                feats[idx] = self.backbone(flat[idx].contiguous(memory_format=torch.channels_last)).to(feats.dtype)
        return rearrange(feats, "(b t) d -> b t d", b=b), mask

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(..., d) features -> (..., classes) logits of the kept face-emotion head."""
        if self.head is None:
            raise ConfigError(f"face encoder {self.name or self.model_name} has no classifier head")
        return self.head(features)

    def layer_ids(self) -> dict[str, int]:
        """Layer-wise learning-rate decay: the timm backbone's own grouping (`group_matcher`: stem
        0, then its blocks in order, the last conv with the last block); a kept face-emotion head on top."""
        from timm.models import group_parameters

        groups = group_parameters(self.backbone, self.backbone.group_matcher(coarse=False))
        ids = {f"backbone.{name}": i for i, names in groups.items() for name in names}
        top = max(ids.values(), default=0)
        ids.update({f"head.{name}": top for name, _ in (self.head.named_parameters() if self.head is not None else ())})
        return ids

    # ---- saving ----------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {"kind": "timm", "name": self.name, "source": self.source, "model_name": self.model_name,
                "image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "freeze": self.freeze, "label_names": self.label_names}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(self.spec(), f, indent=2)
        from ..core.files import public_mode

        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, os.path.join(directory, WEIGHTS_NAME))
        public_mode(os.path.join(directory, WEIGHTS_NAME))   # safetensors writes 0600 whatever the umask


def create_backbone(model_name: str, pretrained: bool = False) -> nn.Module:
    import timm

    if not timm.is_model(model_name):
        raise ConfigError(f"unknown timm model {model_name!r}; see timm.list_models()")
    return timm.create_model(model_name, pretrained=pretrained, num_classes=0).to(memory_format=torch.channels_last)


def from_timm(model_name: str, pretrained: bool = False, image_size: int | None = None, mean=None, std=None,
              name: str | None = None, source: str | None = None, **options) -> FaceEncoder:
    try:
        backbone = create_backbone(model_name, pretrained)
    except OSError as e:  # weights not reachable (no hub, not cached)
        raise unreachable_weights(source or model_name, f"timm's {model_name}", e) from None
    cfg = backbone.pretrained_cfg
    return FaceEncoder(model_name, backbone, image_size or cfg.get("input_size", (3, 224, 224))[-1],
                       mean or cfg.get("mean", Encoder.mean), std or cfg.get("std", Encoder.std),
                       name=name or model_name, source=source or cfg.get("hf_hub_id"), **options)


def from_spec(spec: dict[str, Any]) -> FaceEncoder:
    """Random-weight encoder with the architecture of `spec` (FaceEncoder.spec())."""
    return FaceEncoder(spec["model_name"], create_backbone(spec["model_name"]), spec["image_size"], spec["mean"],
                       spec["std"], freeze=spec.get("freeze", True), label_names=spec.get("label_names"),
                       name=spec.get("name"), source=spec.get("source"))


def from_directory(directory: str | os.PathLike, **options) -> FaceEncoder:
    from safetensors.torch import load_file

    with open(os.path.join(directory, CONFIG_NAME)) as f:
        spec = {**json.load(f), **options}
    enc = from_spec(spec)
    enc.load_state_dict(load_file(os.path.join(directory, WEIGHTS_NAME)))
    return enc


def _build_effnet_b2(pretrained: bool = False, image_size: int = 260, **options) -> FaceEncoder:
    return from_timm("efficientnet_b2", pretrained=pretrained, image_size=image_size, name="efficientnet_b2",
                     source="timm/efficientnet_b2.ra_in1k", **options)


register_encoder(EncoderPreset(
    name="efficientnet_b2", modality="visual", build=_build_effnet_b2, output_dim=1408,
    source="timm/efficientnet_b2.ra_in1k",
    description="EfficientNet-B2 (timm, ImageNet); 260 px crops, ImageNet mean/std, 1408-d pooled features. "
                "Face-emotion weights: vavl convert hsemotion enet_b2_8.pt",
    options={"image_size": 260, "freeze": True}, rate="one per face frame", license="Apache-2.0"))

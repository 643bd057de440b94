"""HSEmotion face-emotion EfficientNet-B2 (av-savchenko/face-emotion-recognition) -> our face encoder.

    enc = vavl.convert.load_hsemotion("enet_b2_8.pt")   # FaceEncoder, 1408-d, 260 px, ImageNet mean/std
    enc.label_names, enc.classify(features)              # the 8 AffectNet classes are kept
    vavl convert hsemotion enet_b2_8.pt --out encoders/hsemotion_b2   # then audio/visual_encoder="encoders/hsemotion_b2"

HSEmotion's files are `torch.save` of a whole timm EfficientNet (B0/B2, or their tf_ variants with
"same" padding) whose classifier is a Linear (or a Sequential whose first item is the Linear); a
plain state dict is accepted too. Its recogniser resizes face crops to 260 x 260 (B2; 224 for B0)
and normalises with ImageNet mean/std.

A whole-model file is a pickle. It is read with `torch.load(weights_only=True)`, which builds
tensors and containers only, plus the classes `_allowed()` names (the parts of a timm EfficientNet,
under their timm 0.4 paths too): nothing else in the file can be called, so a file that names any
other function or class is refused and runs nothing.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from ..encoders.faces import FaceEncoder, create_backbone
from ..core.errors import ConfigError

LABELS_8 = ["anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
LABELS_7 = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
IMAGE_SIZE = {"efficientnet_b0": 224, "efficientnet_b2": 260, "tf_efficientnet_b0": 224, "tf_efficientnet_b2": 260}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# module paths renamed between the timm that wrote the files (0.4) and timm 1.x
RENAMED = {"timm.layers": "timm.models.layers", "timm.models._efficientnet_blocks": "timm.models.efficientnet_blocks"}


def _allowed() -> list:
    """The exact classes a pickled timm EfficientNet (B0/B2, tf_ or not) is built from, each also
    under the module path timm 0.4 gave it."""
    from timm.layers.activations import sigmoid
    from timm.layers.adaptive_avgmax_pool import SelectAdaptivePool2d
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.norm_act import BatchNormAct2d
    from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual, SqueezeExcite
    from timm.models.efficientnet import EfficientNet

    timm_parts = [EfficientNet, DepthwiseSeparableConv, InvertedResidual, SqueezeExcite, BatchNormAct2d,
                  SelectAdaptivePool2d, Conv2dSame, sigmoid]   # sigmoid: timm 0.4's SqueezeExcite.gate_fn
    torch_parts = [nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.Sequential, nn.SiLU, nn.ReLU, nn.Sigmoid, nn.Identity,
                   nn.Flatten, nn.AdaptiveAvgPool2d, nn.Dropout]
    old_names = []
    for obj in timm_parts:
        for new, old in RENAMED.items():
            if obj.__module__.startswith(new + "."):
                old_names.append((obj, f"{old}{obj.__module__[len(new):]}.{obj.__name__}"))
    return timm_parts + torch_parts + old_names


def _state_dict(path: str) -> tuple[dict[str, torch.Tensor], bool]:
    """The checkpoint's tensors, and whether its convolutions use "same" padding (a tf_ model)."""
    try:
        with torch.serialization.safe_globals(_allowed()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConfigError(f"{path}: refused: the file asks to build or call something that is not part of a timm "
                          f"EfficientNet ({_named_global(str(e)) or 'see torch.load'}); nothing in it was run. "
                          "If you trust the file, export its weights: torch.save(model.state_dict(), 'state.pt')") from None
    except (RuntimeError, EOFError, OSError, AttributeError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable HSEmotion/torch checkpoint ({str(e).splitlines()[0][:200]})") from None
    same_padding = False
    if isinstance(obj, nn.Module):
        same_padding = any(type(m).__name__ == "Conv2dSame" for m in obj.modules())
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path}: expected a whole timm model or a state dict, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}, same_padding


def _named_global(message: str) -> str | None:
    """The global torch's weights-only unpickler refused, from its message ("... GLOBAL posix.system was not ...")."""
    words = message.replace("`", " ").split()
    for i, w in enumerate(words[:-1]):
        if w == "GLOBAL":
            return words[i + 1]
    return None


def load_hsemotion(path, model_name: str | None = None, image_size: int | None = None) -> FaceEncoder:
    """An HSEmotion checkpoint -> FaceEncoder (backbone weights + the emotion classifier as `head`).
    image_size: the side face crops are resized to (default HSEmotion's: 260 for B2, 224 for B0; the
    official VAVL face extractor feeds enet_b2_8_best 224 px crops, VAVL facial_features/face_extractor.py:42)."""
    if image_size is not None and (not isinstance(image_size, int) or image_size < 32):
        raise ConfigError(f"image_size={image_size!r} must be an integer of at least 32 pixels")
    path = str(path)
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file; download e.g. enet_b2_8.pt from av-savchenko/face-emotion-recognition")
    state, same_padding = _state_dict(path)
    head = {k.split(".")[-1]: v for k, v in state.items() if k.startswith("classifier.") and k.endswith(("weight", "bias"))}
    backbone_state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    if model_name is None:  # B2 has a 1408-wide head, B0 1280
        width = state["conv_head.weight"].shape[0] if "conv_head.weight" in state else None
        model_name = {1408: "efficientnet_b2", 1280: "efficientnet_b0"}.get(width)
        if model_name is None:
            raise ConfigError(f"{path}: not an EfficientNet-B0/B2 checkpoint (conv_head width {width})")
        if same_padding:   # HSEmotion's tf_efficientnet_*_ns backbones: TensorFlow "same" padding, BN eps 1e-3
            model_name = f"tf_{model_name}"
    backbone = create_backbone(model_name)
    missing, unexpected = backbone.load_state_dict(backbone_state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{path}: does not match timm {model_name} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    labels = None
    if "weight" in head:
        n = head["weight"].shape[0]
        labels = {8: LABELS_8, 7: LABELS_7}.get(n, [f"class_{i}" for i in range(n)])
    enc = FaceEncoder(model_name, backbone, image_size or IMAGE_SIZE.get(model_name, 224), MEAN, STD, label_names=labels,
                      name=f"hsemotion_{model_name}", source=path)
    if enc.head is not None:
        enc.head.weight.data.copy_(head["weight"])
        if "bias" in head:
            enc.head.bias.data.copy_(head["bias"])
    return enc.eval()

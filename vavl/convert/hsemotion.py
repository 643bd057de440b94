"""HSEmotion face-emotion EfficientNet-B2 (av-savchenko/face-emotion-recognition) -> our face encoder.

    enc = vavl.convert.load_hsemotion("enet_b2_8.pt")   # FaceEncoder, 1408-d, 260 px, ImageNet mean/std
    enc.label_names, enc.classify(features)              # the 8 AffectNet classes are kept
    vavl convert hsemotion enet_b2_8.pt --out encoders/hsemotion_b2   # then audio/visual_encoder="encoders/hsemotion_b2"

HSEmotion's files are `torch.save` of a whole timm EfficientNet whose classifier is a Linear (or a
Sequential whose first item is the Linear); a plain state dict is accepted too. Its recogniser
resizes face crops to 260 x 260 (B2; 224 for B0) and normalises with ImageNet mean/std.
A whole-model file is a pickle: it is unpickled (running code it names) only from timm/torch
classes, so only convert files you trust.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..encoders.faces import FaceEncoder, create_backbone
from ..errors import ConfigError

LABELS_8 = ["anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
LABELS_7 = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
IMAGE_SIZE = {"efficientnet_b0": 224, "efficientnet_b2": 260}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# module paths renamed between the timm that wrote the files (0.4) and timm 1.x
RENAMED = {"timm.models.efficientnet_blocks": "timm.models._efficientnet_blocks",
           "timm.models.efficientnet_builder": "timm.models._efficientnet_builder",
           "timm.models.layers": "timm.layers"}
ALLOWED_ROOTS = ("timm.", "torch.", "numpy.", "collections.", "functools.", "copyreg.", "_codecs.")
SAFE_BUILTINS = {"set", "frozenset", "slice", "dict", "list", "tuple", "object", "int", "float", "bool", "str",
                 "bytes", "bytearray", "complex", "range"}


class _Unpickler(pickle.Unpickler):
    """Unpickles timm/torch objects only (old timm module paths mapped to the new ones)."""

    def find_class(self, module, name):
        for old, new in RENAMED.items():
            if module == old or module.startswith(old + "."):
                module = new + module[len(old):]
        if module in ("builtins", "__builtin__"):
            if name not in SAFE_BUILTINS:
                raise pickle.UnpicklingError(f"refusing to load builtins.{name} from a checkpoint")
            module = "builtins"
        elif not (module + ".").startswith(ALLOWED_ROOTS):
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")
        return super().find_class(module, name)


class _PickleModule:
    Unpickler = _Unpickler
    load = pickle.load
    __name__ = "vavl_hsemotion_pickle"


def _state_dict(path: str) -> dict[str, torch.Tensor]:
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # a whole pickled model: timm/torch classes only
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PickleModule)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, AttributeError, ModuleNotFoundError) as e:
        raise ConfigError(f"{path}: not a readable HSEmotion/torch checkpoint ({str(e).splitlines()[0][:200]})") from None
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path}: expected a whole timm model or a state dict, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_hsemotion(path, model_name: str | None = None) -> FaceEncoder:
    """An HSEmotion checkpoint -> FaceEncoder (backbone weights + the emotion classifier as `head`)."""
    path = str(path)
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file; download e.g. enet_b2_8.pt from av-savchenko/face-emotion-recognition")
    state = _state_dict(path)
    head = {k.split(".")[-1]: v for k, v in state.items() if k.startswith("classifier.") and k.endswith(("weight", "bias"))}
    backbone_state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    if model_name is None:  # B2 has a 1408-wide head, B0 1280
        width = state["conv_head.weight"].shape[0] if "conv_head.weight" in state else None
        model_name = {1408: "efficientnet_b2", 1280: "efficientnet_b0"}.get(width)
        if model_name is None:
            raise ConfigError(f"{path}: not an EfficientNet-B0/B2 checkpoint (conv_head width {width})")
    backbone = create_backbone(model_name)
    missing, unexpected = backbone.load_state_dict(backbone_state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{path}: does not match timm {model_name} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    labels = None
    if "weight" in head:
        n = head["weight"].shape[0]
        labels = {8: LABELS_8, 7: LABELS_7}.get(n, [f"class_{i}" for i in range(n)])
    enc = FaceEncoder(model_name, backbone, IMAGE_SIZE.get(model_name, 224), MEAN, STD, label_names=labels,
                      name=f"hsemotion_{model_name}", source=path)
    if enc.head is not None:
        enc.head.weight.data.copy_(head["weight"])
        if "bias" in head:
            enc.head.bias.data.copy_(head["bias"])
    return enc.eval()

"""Official AuxFormer checkpoints (ilucasgoncalves/AuxFormer, `final_head.pt`) -> AuxFormerForEmotionRecognition.

The official file is a state dict of `net/avmodel_AF.py:AVmodel`; layer count and widths are read
from its shapes. Attention head count and the future mask are not stored in it: pass them, and the
corpus (or the class names) so that output k gets the official class name (see `official.py`).
The converted model predicts as the official code does: the mean of its three heads
(`prediction="heads_mean"`).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..core.errors import ConfigError, DataError
from ..models.auxformer import AuxFormerConfig, AuxFormerForEmotionRecognition
from .official import label_fields

ENCODERS = {"a_mem": "a_aux", "v_mem": "v_aux", "trans_a_mem": "fusion.a_mem", "trans_v_mem": "fusion.v_mem",
            "trans_a_with_v": "fusion.a_with_v", "trans_v_with_a": "fusion.v_with_a"}
LAYER_PARTS = {"self_attn.in_proj_weight": "attn.qkv.weight", "self_attn.in_proj_bias": "attn.qkv.bias",
               "self_attn.out_proj.weight": "attn.out_proj.weight", "self_attn.out_proj.bias": "attn.out_proj.bias",
               "layer_norms.0.weight": "attn_norm.weight", "layer_norms.0.bias": "attn_norm.bias",
               "layer_norms.1.weight": "ff_norm.weight", "layer_norms.1.bias": "ff_norm.bias",
               "fc1.weight": "fc1.weight", "fc1.bias": "fc1.bias", "fc2.weight": "fc2.weight", "fc2.bias": "fc2.bias",
               "alpha": "alpha"}
HEADS = {"proj_aux1": "aux_head.layers.0", "proj_aux2": "aux_head.layers.1", "proj_aux3": "aux_head.layers.2",
         "out_layer_aux": "aux_head.out", "proj1": "fusion_head.layers.0", "proj2": "fusion_head.layers.1",
         "out_layer": "fusion_head.out"}
SKIPPED = ("version", "embed_positions._float_tensor")  # buffers without information


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path}: no such file; give the official AuxFormer checkpoint (final_head.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors of every kind
        raise DataError(f"{path}: not a PyTorch state dict ({type(e).__name__}); give the official final_head.pt") from e
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or "out_layer.weight" not in {k.removeprefix("module.") for k in state}:
        raise DataError(f"{path}: not an official AuxFormer state dict (no out_layer.weight); give final_head.pt "
                        "written by ilucasgoncalves/AuxFormer")
    return {k.removeprefix("module."): v for k, v in state.items()}


def map_key(key: str) -> str | None:
    """Official parameter name -> ours (None for buffers we do not keep)."""
    if key == "conv_1d_a.weight":
        return "audio_proj.weight"
    prefix, _, rest = key.partition(".")
    if prefix in HEADS:
        return f"{HEADS[prefix]}.{rest}"
    if prefix in ENCODERS:
        if rest in SKIPPED:
            return None
        if rest.startswith("layer_norm."):
            return f"{ENCODERS[prefix]}.norm.{rest.removeprefix('layer_norm.')}"
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", rest)
        if m and m.group(2) in LAYER_PARTS:
            return f"{ENCODERS[prefix]}.layers.{m.group(1)}.{LAYER_PARTS[m.group(2)]}"
    raise KeyError(key)


def config_from_state(state: dict[str, torch.Tensor], num_heads: int, causal_mask: bool, **fields) -> AuxFormerConfig:
    hidden = state["a_mem.layer_norm.weight"].shape[0]
    conv = state.get("conv_1d_a.weight")
    num_layers = len({k.split(".")[2] for k in state if k.startswith("a_mem.layers.")})
    return AuxFormerConfig(
        audio_dim=conv.shape[1] if conv is not None else hidden, visual_dim=hidden, hidden_size=hidden,
        num_layers=num_layers, num_heads=num_heads,
        aux_hidden_sizes=[state["proj_aux1.weight"].shape[0], state["proj_aux2.weight"].shape[0]],
        causal_mask=causal_mask, official_positions=True, prediction="heads_mean", **fields)


def load_official_auxformer(path, num_heads: int = 10, causal_mask: bool = True, corpus: str | None = None,
                            task: str = "classification", labels: list[str] | None = None) -> AuxFormerForEmotionRecognition:
    """Read an official `final_head.pt`, build the matching model, copy the weights; eval mode.
    corpus ("crema-d", "msp-improv") or labels name the outputs in the checkpoint's order."""
    path = Path(path)
    state = read_state_dict(path)
    fields = label_fields(path, state["out_layer.weight"].shape[0], corpus, task, labels)
    try:
        config = config_from_state(state, num_heads, causal_mask, **fields)
        ours = {}
        for key, value in state.items():
            name = map_key(key)
            if name is not None:
                ours[name] = value.squeeze(-1) if key == "conv_1d_a.weight" else value
    except KeyError as e:
        raise DataError(f"{path}: unexpected parameter {e.args[0]!r} for an official AuxFormer checkpoint") from e
    except ConfigError as e:
        raise DataError(f"{path}: {e}; pass a --num-heads that divides the checkpoint's width") from e
    model = AuxFormerForEmotionRecognition(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ours))
    wrong = [k for k in ours if k in expected and ours[k].shape != expected[k].shape]
    if missing or wrong:
        raise DataError(f"{path}: does not match an AuxFormer with these shapes (missing {missing[:3]}, "
                        f"mismatched {wrong[:3]}); check --num-heads and that this is final_head.pt")
    model.load_state_dict(ours, strict=True)
    return model.eval()

"""Encoder precision on the CPU: fp32, bf16 weights, int8 dynamic quantisation, or auto.

    precision = resolve_precision("auto", "cpu")       # "bf16" where the CPU has AMX / AVX-512 BF16, else "fp32"
    encoder = apply_precision(encoder, precision)       # converted once, before the first clip

- `bf16`: the encoder's weights are cast to bfloat16 once (not autocast, which re-casts fp32
  weights on every call); convolutional backbones are also put in channels-last memory format.
  Floating inputs are cast to bfloat16 where they enter the wrapped network; the features come
  out in bfloat16 (callers take `.float()`).
- `int8`: torch's dynamic quantisation of the encoder's `nn.Linear` layers: int8 weights with one
  scale per output channel (per-channel: closer to fp32 than one scale per tensor, as fast),
  activations quantised per call with one scale per tensor (to 7 bits: torch's dynamic Linear
  reduces the range, which avoids int16 overflow on CPUs without VNNI); convolutions, norms and
  everything else stay fp32. It pays for transformer encoders (speech). Convolutional face backbones have almost no
  Linear layers; for them int8 folds each batch norm into the convolution before it
  (`fold_batch_norms`: the same function in fp32, one pass over each feature map less; they run
  channels-last at every precision). An int8 encoder is for inference only.
- `auto`: bf16 where the CPU runs it natively (AMX or AVX-512 BF16), fp32 elsewhere: without
  those instructions bf16 matmuls are emulated and slower than fp32. `cpu_bf16_support()` says
  which and why (`vavl env` prints it).

Precision here is about the CPU; on GPUs, `predict --bf16` and `extract --precision` keep their
meaning (autocast / weights cast on the device).
"""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import torch
from torch import fx, nn

from ..core.devices import PRECISIONS, cpu_bf16_support, resolve_precision  # noqa: F401  (re-exported)
from ..core.errors import ConfigError

def _is_conv_net(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


class _ConvNormTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(m, name)


def _after_norm(bn: nn.BatchNorm2d) -> nn.Module | None:
    """What a batch norm does after normalising (None: a kind this does not know)."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    from timm.layers import BatchNormAct2d

    return nn.Sequential(bn.drop, bn.act) if type(bn) is BatchNormAct2d else None


@torch.no_grad()
def fold_batch_norms(net: nn.Module) -> int:
    """Every eval-mode BatchNorm2d that is the only user of a Conv2d's output folded into that
    convolution's weights and bias, and replaced by what it did after normalising (timm's
    BatchNormAct2d: its activation): the same function with one pass over each feature map less.
    For inference only (the norms are gone). Returns how many were folded; 0 where torch.fx cannot
    trace the network (then nothing changes)."""
    try:
        graph = _ConvNormTracer().trace(net)
    except Exception:   # data-dependent control flow: left as it is
        return 0
    modules = dict(net.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    folded = 0
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        src = node.args[0] if node.args else None
        conv = modules.get(src.target) if isinstance(src, fx.Node) and src.op == "call_module" else None
        if (not isinstance(bn, nn.BatchNorm2d) or type(conv) is not nn.Conv2d or bn.training or bn.running_var is None
                or len(src.users) != 1 or calls[node.target] != 1 or calls[src.target] != 1):
            continue
        rest = _after_norm(bn)
        if rest is None:
            continue
        scale = torch.rsqrt(bn.running_var + bn.eps) * (bn.weight if bn.affine else 1)
        shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
        bias = shift if conv.bias is None else conv.bias * scale + shift
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))   # in place: keeps channels-last
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
        parent, _, attr = node.target.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, attr, rest)
        folded += 1
    return folded


def _cast_inputs(dtype: torch.dtype):
    def hook(module, args, kwargs):
        cast = lambda v: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v   # noqa: E731
        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}
    return hook


def apply_precision(encoder: nn.Module, precision: str, inplace: bool = False) -> nn.Module:
    """The encoder converted to `precision` (fp32 | bf16 | int8; resolve "auto" first), in eval mode.
    bf16 converts in place; int8 returns a quantised copy, or quantises the encoder itself with
    `inplace=True` (for an encoder nobody else holds: saves copying its fp32 weights, about a
    second for wav2vec2-large). Records `encoder.precision`."""
    if precision not in ("fp32", "bf16", "int8"):
        raise ConfigError(f"precision {precision!r}: give fp32, bf16 or int8 (resolve auto with resolve_precision)")
    current = getattr(encoder, "precision", "fp32")
    if current == precision:
        return encoder
    if current != "fp32":
        raise ConfigError(f"this encoder is already {current}; build or load it again for {precision}")
    encoder = encoder.eval()
    if precision == "bf16":
        encoder.to(torch.bfloat16)
        if _is_conv_net(encoder):
            encoder.to(memory_format=torch.channels_last)
        # the inputs are cast where they enter the wrapped networks (an encoder may normalise in fp32 first)
        for child in encoder.children():
            child.register_forward_pre_hook(_cast_inputs(torch.bfloat16), with_kwargs=True)
    elif precision == "int8":
        with warnings.catch_warnings():   # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            encoder = quantize_dynamic(encoder, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                       inplace=inplace)
        for net in encoder.children():   # conv backbones: batch norms folded into their convolutions
            if _is_conv_net(net):
                fold_batch_norms(net)
    encoder.precision = precision
    return encoder


def apply_model_precision(model: Any, precision: str) -> Any:
    """A full model's encoders converted in place (the fusion model stays fp32: it is small, and its
    output decides the label); copy the model first to keep it (vavl.predict does). Returns the model."""
    for attr in ("audio_encoder", "visual_encoder"):
        enc = getattr(model, attr, None)
        if enc is not None:
            setattr(model, attr, apply_precision(enc, precision, inplace=True))
    return model

"""`vavl export onnx`: a trained model as an ONNX graph, checked with onnxruntime against PyTorch.

    vavl export onnx --model runs/crema_d/auxformer --out auxformer.onnx
    vavl.inference.export.export_onnx(model, "auxformer.onnx")   # -> the largest |onnx - torch| of the check

Fusion models take encoder features: inputs audio_features (b, ta, da), audio_mask (b, ta) bool,
visual_features (b, tv, dv), visual_mask (b, tv) bool, with batch and both time axes dynamic (at
least 2 frames each: pad with a masked frame); a missing modality is an all-false mask row, as in
PyTorch. Full models (encoders in front) take input_values (b, n) float / attention_mask (b, n)
bool and pixel_values (b, t, 3, s, s) / pixel_mask (b, t) for the encoders they have, where the
encoders export. HiCMAE takes its views: pixel_values (b, frames, 3, s, s) and input_features
(b, time, mel), the batch axis dynamic. Outputs: logits, fused_logits, audio_logits,
visual_logits (those the model has).
Attention is exported with the `sdpa` implementation (the CPU kernel is not an ONNX op). Needs
the `onnx` extra: pip install "vavl[onnx]".
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import ConfigError, VavlError
from ..models.loading import load_model
from ..models.with_encoders import AudioVisualModel

OUTPUTS = ("logits", "fused_logits", "audio_logits", "visual_logits")
TOLERANCE = 1e-4


class _Graph(torch.nn.Module):
    """The model with positional tensor inputs and a tuple of the logits it has, for tracing."""

    def __init__(self, model, inputs: list[str], outputs: list[str]):
        super().__init__()
        self.model, self.inputs, self.outputs = model, inputs, outputs

    def forward(self, *tensors):
        out = self.model(**dict(zip(self.inputs, tensors)))
        return tuple(getattr(out, name) for name in self.outputs)


def example_inputs(model, batch: int = 2, seed: int = 0, frames: tuple[int, int] = (9, 6)) -> dict[str, torch.Tensor]:
    """Inputs to trace with (and, of other sizes, to check on): the last clip without its visual
    frames, the first one padded. frames: (audio, visual) frames (x 800 audio samples, / 2 faces)."""
    g = torch.Generator().manual_seed(seed)
    ta, tv = frames
    if getattr(model, "takes_views", False):   # HiCMAE: fixed-size views, dynamic batch only
        c = model.config
        return {"pixel_values": torch.randn(batch, c.num_frames, 3, c.image_size, c.image_size, generator=g),
                "input_features": torch.randn(batch, c.audio_target_length, c.num_mel_bins, generator=g)}
    if isinstance(model, AudioVisualModel):
        out = {}
        if model.audio_encoder is not None:
            n = 800 * ta
            out.update(input_values=torch.randn(batch, n, generator=g) * 0.1, attention_mask=torch.ones(batch, n, dtype=torch.bool))
            out["attention_mask"][0, n // 2:] = False
        if model.visual_encoder is not None:
            s = model.processor.face_size
            t = max(2, tv // 2)
            out.update(pixel_values=torch.randn(batch, t, 3, s, s, generator=g), pixel_mask=torch.ones(batch, t, dtype=torch.bool))
            out["pixel_mask"][-1] = False
        return out
    c = model.config
    audio_mask, visual_mask = torch.ones(batch, ta, dtype=torch.bool), torch.ones(batch, tv, dtype=torch.bool)
    audio_mask[0, ta * 2 // 3:] = False
    visual_mask[-1] = False
    return {"audio_features": torch.randn(batch, ta, c.audio_dim, generator=g), "audio_mask": audio_mask,
            "visual_features": torch.randn(batch, tv, c.visual_dim, generator=g), "visual_mask": visual_mask}


def _dynamic_shapes(inputs: dict[str, torch.Tensor], fixed_size: bool = False):
    batch = torch.export.Dim("batch", min=1)
    time = {"audio": torch.export.Dim("audio_frames", min=2), "visual": torch.export.Dim("visual_frames", min=2),
            "samples": torch.export.Dim("samples", min=400)}
    axis = {"audio_features": "audio", "audio_mask": "audio", "visual_features": "visual", "visual_mask": "visual",
            "input_values": "samples", "attention_mask": "samples", "pixel_values": "visual", "pixel_mask": "visual"}
    if fixed_size:   # models whose inputs have one size (HiCMAE's views): the batch axis only
        return (tuple({0: batch} for _ in inputs),)
    return (tuple({0: batch, 1: time[axis[name]]} for name in inputs),)   # for forward(*tensors)


# torch.export of vavl's models works on torch 2.14.1 (constraints.txt) and fails on 2.9.1
# (constraints-min.txt: a batch-dimension constraint violation, then a failed decomposition)
ONNX_MIN_TORCH = (2, 14)


def torch_can_export() -> bool:
    return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= ONNX_MIN_TORCH


def export_onnx(model, out, optimize: bool = True, check: bool = True) -> float | None:
    """Write `model` (a vavl model, or a save_pretrained folder) to `out` as ONNX; with `check`,
    run onnxruntime on example inputs and return the largest difference from PyTorch (a
    VavlError above TOLERANCE). The model's attention is set to SDPA for the export and back."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"ONNX export needs the onnx extra ({err.name} is missing): pip install \"vavl[onnx]\"") from None
    if not torch_can_export():
        raise ConfigError(f"ONNX export needs torch >= {'.'.join(map(str, ONNX_MIN_TORCH))} (tested on 2.14.1; torch.export of "
                          f"vavl's models fails on older releases such as 2.9.1); this environment has torch {torch.__version__}")
    model = load_model(model) if isinstance(model, (str, Path)) else model.eval()
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")
    inputs = example_inputs(model)
    fixed = getattr(model, "takes_views", False)
    with torch.no_grad():
        ref = model(**inputs)
    outputs, seen = [], []
    for name in OUTPUTS:   # a model without a fusion head answers with one of its heads: list each tensor once
        x = getattr(ref, name, None)
        if x is not None and not any(x is y for y in seen):
            outputs.append(name)
            seen.append(x)
    graph = _Graph(model, list(inputs), outputs).eval()
    before = getattr(model.emotion_config, "_attn_implementation", None)
    model.set_attn_implementation("sdpa")
    try:
        torch.onnx.export(graph, tuple(inputs.values()), str(out), dynamo=True, optimize=optimize,
                          dynamic_shapes=_dynamic_shapes(inputs, fixed), input_names=list(inputs), output_names=outputs,
                          verbose=False)
    except Exception as err:   # data-dependent code, an op ONNX lacks: say so, in one line
        raise VavlError(f"{type(model).__name__} does not export to ONNX ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0][:200]})") from None
    finally:
        model.set_attn_implementation(before or "auto")
    return check_onnx(out, model, outputs) if check else None


def check_onnx(path, model, outputs: list[str], seed: int = 1) -> float:
    """The largest |onnxruntime - PyTorch| over the outputs, on inputs other than the traced ones."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = example_inputs(model, batch=3, seed=seed, frames=(13, 4))   # not the traced sizes
    with torch.no_grad():
        ref = model(**inputs)
    got = session.run(outputs, {k: v.numpy() for k, v in inputs.items()})
    worst = max(float((torch.from_numpy(g) - getattr(ref, name)).abs().max()) for g, name in zip(got, outputs))
    if not worst <= TOLERANCE:
        raise VavlError(f"{path}: onnxruntime differs from PyTorch by {worst:.2e} (> {TOLERANCE}); do not use this export")
    return worst

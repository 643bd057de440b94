"""Official VAVL checkpoints (ilucasgoncalves/VAVL, the nine `*_head.pt` files) -> VAVLForEmotionRecognition.

    model = load_official_vavl("run_dir/", num_heads=8, corpus="crema-d")   # framewise=True: official outputs
    model.save_pretrained("vavl-crema-d")                        # AutoModel.from_pretrained works after `import vavl`

Sizes (feature widths, projection, hidden, layers, kernel, classes) are read from the tensors.
`positional_encoding.pe` tables (fixed sinusoids) may be present or absent; they are not needed.
`MLP_av_head.pt` is saved by the official code but never used by its forward pass: it is ignored.
The corpus (or the class names), and the task for a dimensional MSP-IMPROV checkpoint, name the
outputs in the official order (see `official.py`); the fusion head answers, as in train.py's dev and test passes.

framewise=True reproduces the official outputs at batch size 1 only (VAVL's reported test numbers
come from train.py's test pass at batch 32 / 9):
the official code hands (time, batch, dim) to a batch-first Conformer, so in training, at batch
sizes above 1, attention and convolution ran across the clips of each batch. An officially trained
checkpoint therefore learned batch-dependent features; vavl runs it frame by frame, which is what
the official code computes for a single clip.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..core.errors import ConfigError, DataError
from .official import label_fields

# official file -> (prefix in the file, prefix in our model); encoder keys are renamed below
FILES = {
    "final_acoustic_head.pt": [("conv_1d_a.", "audio_proj."), ("x_acoustic.encoder.", "audio_encoder.")],
    "final_visual_head.pt": [("conv_1d_v.", "visual_proj."), ("x_visual.encoder.", "visual_encoder.")],
    "final_shared_head.pt": [("x_shared.encoder.", "shared_encoder."), ("layer_norm.", "shared_norm.")],
    "final_weights_head.pt": [("", "fusion_head.")],
    "MLP_a_head.pt": [("", "audio_head.")],
    "MLP_v_head.pt": [("", "visual_head.")],
    "MLP_rec_a_head.pt": [("", "audio_reconstruction.")],
    "MLP_rec_v_head.pt": [("", "visual_reconstruction.")],
}
IGNORED = re.compile(r"(^|\.)(conv_subsample\.|positional_encoding\.pe$)")  # unused by the official forward
BLOCK = {  # official ConformerBlock sub-path -> ours
    "sequential.0.module.sequential.0.": "ff1.norm.", "sequential.0.module.sequential.1.linear.": "ff1.fc1.",
    "sequential.0.module.sequential.4.linear.": "ff1.fc2.",
    "sequential.1.module.layer_norm.": "attention.norm.", "sequential.1.module.attention.u_bias": "attention.u_bias",
    "sequential.1.module.attention.v_bias": "attention.v_bias",
    "sequential.1.module.attention.query_proj.linear.": "attention.query.",
    "sequential.1.module.attention.key_proj.linear.": "attention.key.",
    "sequential.1.module.attention.value_proj.linear.": "attention.value.",
    "sequential.1.module.attention.pos_proj.linear.": "attention.pos.",
    "sequential.1.module.attention.out_proj.linear.": "attention.out.",
    "sequential.2.module.sequential.0.": "conv.norm.", "sequential.2.module.sequential.2.conv.": "conv.pointwise_in.",
    "sequential.2.module.sequential.4.conv.": "conv.depthwise.", "sequential.2.module.sequential.5.": "conv.batch_norm.",
    "sequential.2.module.sequential.7.conv.": "conv.pointwise_out.",
    "sequential.3.module.sequential.0.": "ff2.norm.", "sequential.3.module.sequential.1.linear.": "ff2.fc1.",
    "sequential.3.module.sequential.4.linear.": "ff2.fc2.", "sequential.4.": "norm.",
}
HEAD = {"projav1.": "fc1.", "projav2.": "fc2.", "out_layer.": "out."}


def _rename(key: str) -> str | None:
    """Key inside one official module (after its prefix) -> key inside ours; None = not needed."""
    if IGNORED.search(key):
        return None
    if key.startswith("input_projection.0.linear."):
        return "input_proj." + key.rsplit(".", 1)[1]
    match = re.match(r"layers\.(\d+)\.(.*)", key)
    if match:
        for old, new in BLOCK.items():
            if match.group(2).startswith(old):
                return f"layers.{match.group(1)}.{new}{match.group(2)[len(old):]}"
        return key  # unknown: reported by the shape check as unexpected
    for old, new in HEAD.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def read_official(directory) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Our state dict from the official files, and for each key the file it came from."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a folder; give the folder holding the official VAVL *_head.pt files")
    state, source = {}, {}
    for name, prefixes in FILES.items():
        path = directory / name
        if not path.is_file():
            raise DataError(f"{path}: missing; an official VAVL run folder holds {', '.join(FILES)}")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated zip, pickle with code, not a torch file, ...
            raise DataError(f"{path}: cannot be read as a torch state dict ({type(err).__name__}: {err}); "
                            "re-copy the file from the training run") from err
        if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise DataError(f"{path}: not a state dict of tensors; expected the file the official save_model writes")
        for key, tensor in loaded.items():
            prefix = next(((old, new) for old, new in prefixes if key.startswith(old)), None)
            if prefix is None:
                raise DataError(f"{path}: unexpected key {key!r}; is this the right file?")
            inner = _rename(key[len(prefix[0]):])
            if inner is None:
                continue
            if prefix[1] in ("audio_proj.", "visual_proj.") and tensor.dim() == 3:
                tensor = tensor.squeeze(-1)   # Conv1d(kernel 1, no bias) == Linear
            state[prefix[1] + inner] = tensor
            source[prefix[1] + inner] = str(path)
    return state, source


def _need(state, source, key, directory):
    if key not in state:
        raise DataError(f"{directory}: no tensor for {key} (file for it is missing a key); is this a VAVL checkpoint?")
    return state[key]


def infer_config(state, source, directory, num_heads: int, framewise: bool, **overrides) -> dict:
    """Config fields read from tensor shapes."""
    need = lambda key: _need(state, source, key, directory)  # noqa: E731

    def layers(prefix):
        return len({k.split(".")[2] for k in state if k.startswith(prefix + "layers.")})

    heads_in_file = need("audio_encoder.layers.0.attention.u_bias").shape[0]
    if heads_in_file != num_heads:
        raise ConfigError(f"num_heads={num_heads} but {source['audio_encoder.layers.0.attention.u_bias']} was "
                          f"trained with {heads_in_file} attention heads; pass num_heads={heads_in_file} (CLI: --num-heads {heads_in_file})")
    hidden = need("audio_encoder.input_proj.weight").shape[0]
    return {
        "audio_dim": need("audio_proj.weight").shape[1], "visual_dim": need("visual_proj.weight").shape[1],
        "proj_dim": need("audio_proj.weight").shape[0], "hidden_size": hidden,
        "head_hidden_size": need("audio_head.fc2.weight").shape[0],
        "num_attention_heads": num_heads, "num_audio_layers": layers("audio_encoder."),
        "num_visual_layers": layers("visual_encoder."), "num_shared_layers": layers("shared_encoder."),
        "conv_kernel_size": need("audio_encoder.layers.0.conv.depthwise.weight").shape[-1],
        "ff_expansion": need("audio_encoder.layers.0.ff1.fc1.weight").shape[0] // hidden,
        "head_dropout": 0.2, "framewise": framewise, **overrides,
    }


def load_official_vavl(directory, num_heads: int = 8, framewise: bool = True, corpus: str | None = None,
                       task: str = "classification", labels: list[str] | None = None, **config_overrides):
    """Build VAVLForEmotionRecognition (eval mode) from an official VAVL run folder.

    corpus ("crema-d", "msp-improv") or labels name the outputs; task="regression" for a
    dimensional checkpoint. framewise=True reproduces the official outputs (batch size 1, see the
    module docstring); False gives our batch-first temporal model with the same weights (a
    different function: fine-tune it before trusting it)."""
    from ..models.vavl import VAVLConfig, VAVLForEmotionRecognition

    state, source = read_official(directory)
    outputs = _need(state, source, "audio_head.out.weight", directory).shape[0]
    fields = label_fields(directory, outputs, corpus, task, labels)
    config = VAVLConfig(**infer_config(state, source, directory, num_heads, framewise, **fields, **config_overrides))
    model = VAVLForEmotionRecognition(config)
    expected = model.state_dict()
    for key, tensor in state.items():
        if key not in expected:
            raise DataError(f"{source[key]}: unexpected tensor {key}; is this an official VAVL checkpoint?")
        if tensor.shape != expected[key].shape:
            raise DataError(f"{source[key]}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)} "
                            "(the files come from different runs or model sizes)")
    missing = [k for k in expected if k not in state]
    if missing:
        raise DataError(f"{directory}: the official files lack {len(missing)} tensors, e.g. {missing[:3]}")
    model.load_state_dict(state)
    return model.eval()

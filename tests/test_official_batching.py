"""`official_batching`: AuxFormer and VAVL compute the official function of a zero-padded batch.

The models are loaded from the official initial weights of `fixtures/training-parity-batched/`
(README there) and run, in eval mode, on the padded batch of its eval clips and on each clip alone;
the official outputs of both are in the fixture (`eval_init.*`). The recipe-level training parity
is in test_training_parity_batched.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vavl.convert import load_official_auxformer, load_official_vavl
from vavl.core.errors import ConfigError
from vavl.core.labels import OFFICIAL_CLASSES
from vavl.data.collate import pad_frames
from vavl.models.auxformer import AuxFormerConfig
from vavl.models.vavl import VAVLConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "training-parity-batched"
CLASSES = list(OFFICIAL_CLASSES["crema-d"])


def run(model, io: dict, n: int) -> tuple[dict, dict]:
    """Outputs on the padded batch of the n eval clips and on each clip alone (rows stacked)."""
    a = [io[f"eval.{i}.x_aud"] for i in range(n)]
    v = [io[f"eval.{i}.x_vid"] for i in range(n)]
    (xa, ma), (xv, mv) = pad_frames(a), pad_frames(v)
    keys = ("logits", "fused_logits", "audio_logits", "visual_logits")
    with torch.no_grad():
        batch = model(audio_features=xa, audio_mask=ma, visual_features=xv, visual_mask=mv)
        alone = [model(audio_features=a[i][None], visual_features=v[i][None]) for i in range(n)]
    return {k: getattr(batch, k) for k in keys}, {k: torch.cat([getattr(o, k) for o in alone]) for k in keys}


def worst(got: dict, io: dict, prefix: str, names) -> float:
    return max((got[ours] - io[f"{prefix}.{name}"]).abs().max().item() for ours, name in names)


AUXFORMER = (("fused_logits", "output"), ("audio_logits", "output_a_aux"), ("visual_logits", "output_v_aux"),
             ("logits", "prediction"))
VAVL = (("fused_logits", "pred_av"), ("audio_logits", "pred_a"), ("visual_logits", "pred_v"))


def test_auxformer_official_batching_gives_the_official_padded_batch_outputs():
    io = load_file(FIXTURES / "auxformer" / "io.safetensors")
    model = load_official_auxformer(FIXTURES / "auxformer" / "init_head.pt", num_heads=5, corpus="crema-d").eval()
    batch, alone = run(model, io, 4)           # vavl's masked model: each clip as if alone
    assert worst(alone, io, "eval_init.alone", AUXFORMER) < 1e-5
    assert worst(batch, io, "eval_init.alone", AUXFORMER) < 1e-5
    assert worst(batch, io, "eval_init.batch", AUXFORMER) > 0.1
    model.config.official_batching = True
    batch, alone = run(model, io, 4)
    assert worst(batch, io, "eval_init.batch", AUXFORMER) < 1e-5
    assert worst(alone, io, "eval_init.alone", AUXFORMER) < 1e-5


def test_vavl_official_batching_gives_the_official_padded_batch_outputs_and_outranks_framewise():
    io = load_file(FIXTURES / "vavl" / "io.safetensors")
    model = load_official_vavl(FIXTURES / "vavl" / "init", num_heads=4, labels=CLASSES).eval()
    assert model.config.framewise
    batch, alone = run(model, io, 3)           # framewise: the official batch-size-1 function for every clip
    assert worst(batch, io, "eval_init.alone", VAVL) < 1e-5
    assert worst(batch, io, "eval_init.batch", VAVL) > 0.01
    model.config.official_batching = True      # both set: official_batching decides
    batch, alone = run(model, io, 3)
    assert worst(batch, io, "eval_init.batch", VAVL) < 1e-5
    assert worst(alone, io, "eval_init.alone", VAVL) < 1e-5


def test_vavl_official_batching_depends_on_the_order_of_the_clips_and_the_default_does_not():
    torch.manual_seed(0)
    config = dict(audio_dim=8, visual_dim=6, proj_dim=4, hidden_size=8, head_hidden_size=4, num_attention_heads=2,
                  num_audio_layers=1, num_visual_layers=1, num_shared_layers=1, conv_kernel_size=3)
    from vavl.models.vavl import VAVLForEmotionRecognition

    model = VAVLForEmotionRecognition(VAVLConfig(**config)).eval()
    a, v = torch.randn(3, 5, 8), torch.randn(3, 4, 6)
    order = torch.tensor([2, 0, 1])
    for official in (False, True):
        model.config.official_batching = official
        with torch.no_grad():
            first = model(audio_features=a, visual_features=v).fused_logits
            second = model(audio_features=a[order], visual_features=v[order]).fused_logits
        moved = (first[order] - second).abs().max().item()
        assert (moved > 1e-4) if official else (moved < 1e-5), (official, moved)


@pytest.mark.parametrize("config_class", [AuxFormerConfig, VAVLConfig])
def test_official_batching_must_be_a_boolean(config_class):
    with pytest.raises(ConfigError, match="official_batching"):
        config_class(official_batching="yes")


def test_vavl_official_init_is_pytorch_defaults_with_the_conformers_xavier_layers():
    import math


    from vavl.models.vavl import VAVLForEmotionRecognition
    from vavl.models.vavl.conformer import FeedForward, RelativeSelfAttention

    config = dict(audio_dim=40, visual_dim=30, proj_dim=20, hidden_size=32, head_hidden_size=16, num_attention_heads=4,
                  num_audio_layers=1, num_visual_layers=1, num_shared_layers=1, conv_kernel_size=3)
    torch.manual_seed(0)
    official = VAVLForEmotionRecognition(VAVLConfig(init_scheme="official", **config))
    torch.manual_seed(0)
    ours = VAVLForEmotionRecognition(VAVLConfig(**config))

    def xavier_bound(w):
        return math.sqrt(6 / (w.shape[0] + w.shape[1]))

    def default_bound(w):   # PyTorch's kaiming_uniform(a=sqrt(5)) on weights and its bias rule: 1 / sqrt(fan_in)
        return 1 / math.sqrt(w[0].numel())

    xavier_layers = [official.audio_encoder.input_proj]
    for m in official.modules():
        if isinstance(m, RelativeSelfAttention):
            xavier_layers += [m.query, m.key, m.value, m.pos, m.out]
            for uv in (m.u_bias, m.v_bias):   # Xavier, not zeros
                assert 0.5 * xavier_bound(uv) < uv.abs().max() <= xavier_bound(uv)
        elif isinstance(m, FeedForward):
            xavier_layers += [m.fc1, m.fc2]
    for layer in xavier_layers:
        assert layer.weight.abs().max() <= xavier_bound(layer.weight) + 1e-7
        assert layer.bias is None or not layer.bias.any()
    # PyTorch's defaults elsewhere: heads, the input projections, the convolutions keep non-zero biases
    for layer in (official.fusion_head.fc1, official.audio_head.out, official.audio_encoder.layers[0].conv.pointwise_in):
        assert layer.bias.abs().max() > 0 and layer.bias.abs().max() <= default_bound(layer.weight)
        assert layer.weight.abs().max() <= default_bound(layer.weight) + 1e-7
    assert official.audio_proj.weight.abs().max() <= default_bound(official.audio_proj.weight) + 1e-7
    # vavl's own scheme: every Linear / Conv1d Xavier with zero bias, u / v at zero
    assert not ours.fusion_head.fc1.bias.any() and not ours.audio_encoder.layers[0].attention.u_bias.any()
    with pytest.raises(ConfigError, match="init_scheme"):
        VAVLConfig(init_scheme="kaiming")

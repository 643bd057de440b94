"""Baselines: what each head answers, missing-modality stand-ins, late-fusion averaging, config checks.
(Save/load, batch/padding invariance and NaN checks run for every model in test_zoo_models.py.)"""
import pytest
import torch

from vavl.core.errors import ConfigError
from vavl.models.baselines import AudioOnlyConfig, AudioOnlyForEmotionRecognition, EarlyFusionConfig, EarlyFusionForEmotionRecognition, LateFusionConfig, LateFusionForEmotionRecognition, VisualOnlyConfig, VisualOnlyForEmotionRecognition

SMALL = dict(audio_dim=6, visual_dim=5, hidden_size=8, num_attention_heads=2, num_labels=3, dropout=0.0)


def batch(g=None):
    g = g or torch.Generator().manual_seed(0)
    amask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    vmask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    return {"audio_features": torch.randn(3, 4, 6, generator=g), "audio_mask": amask,
            "visual_features": torch.randn(3, 3, 5, generator=g), "visual_mask": vmask, "labels": torch.tensor([0, 1, 2])}


@pytest.mark.parametrize("num_layers", [0, 1])
def test_unimodal_models_have_one_head(num_layers):
    audio = AudioOnlyForEmotionRecognition(AudioOnlyConfig(**SMALL, num_layers=num_layers)).eval()
    visual = VisualOnlyForEmotionRecognition(VisualOnlyConfig(**SMALL, num_layers=num_layers)).eval()
    a, v = audio(**batch()), visual(**batch())
    assert a.visual_logits is None and a.heads_used() == ["audio", "audio", "none"]
    assert v.audio_logits is None and v.heads_used() == ["visual", "none", "visual"]
    assert torch.equal(a.logits[:2], a.audio_logits[:2]) and torch.isfinite(a.loss) and torch.isfinite(v.loss)
    # the ignored modality really is ignored
    other = batch()
    other["visual_features"] = torch.randn(3, 3, 5)
    assert torch.equal(audio(**other).audio_logits, a.audio_logits)


def test_early_fusion_uses_learned_absent_embedding():
    model = EarlyFusionForEmotionRecognition(EarlyFusionConfig(**SMALL)).train()
    out = model(**batch())
    assert out.heads_used() == ["fused", "audio", "visual"]
    out.loss.backward()
    assert model.absent.grad is not None and model.absent.grad.abs().sum() > 0   # trained where a modality was missing
    model.eval()
    with torch.no_grad():
        model.absent.fill_(0.5)
        out = model(**batch())
        rep_a = out.audio_embedding[1]
        expected = model.fusion_head(torch.cat([rep_a, torch.full_like(rep_a, 0.5)]))
    assert torch.allclose(out.fused_logits[1], expected, atol=1e-6)
    assert torch.allclose(out.fused_embedding[1, 8:], torch.full((8,), 0.5))


def test_early_fusion_zeros_variant_has_no_trainable_stand_in():
    model = EarlyFusionForEmotionRecognition(EarlyFusionConfig(**SMALL, absent="zeros")).train()
    model(**batch()).loss.backward()
    assert model.absent.grad is None and torch.equal(model.absent, torch.zeros(2, 8))


def test_late_fusion_averages_logits_or_probabilities():
    torch.manual_seed(0)
    logits = LateFusionForEmotionRecognition(LateFusionConfig(**SMALL)).eval()
    out = logits(**batch())
    assert torch.allclose(out.fused_logits, (out.audio_logits + out.visual_logits) / 2)
    probs = LateFusionForEmotionRecognition(LateFusionConfig(**SMALL, fuse="probabilities")).eval()
    out = probs(**batch())
    mean = (out.audio_logits.softmax(-1) + out.visual_logits.softmax(-1)) / 2
    assert torch.allclose(out.fused_logits.softmax(-1), mean, atol=1e-6)
    assert torch.allclose(out.fused_logits.exp().sum(-1), torch.ones(3), atol=1e-6)  # log-probabilities


def test_regression_baselines():
    model = LateFusionForEmotionRecognition(LateFusionConfig(**{**SMALL, "num_labels": None}, task="regression"))
    b = batch()
    b["labels"] = torch.rand(3, 3) * 4 + 1
    out = model(**b)
    assert out.logits.shape == (3, 3) and torch.isfinite(out.loss)


def test_bad_configs_name_the_field():
    with pytest.raises(ConfigError, match="absent"):
        EarlyFusionConfig(absent="mean")
    with pytest.raises(ConfigError, match="fuse"):
        LateFusionConfig(fuse="max")
    with pytest.raises(ConfigError, match="fuse"):
        LateFusionConfig(fuse="probabilities", task="regression")
    with pytest.raises(ConfigError, match="num_attention_heads"):
        AudioOnlyConfig(hidden_size=10, num_attention_heads=4)
    AudioOnlyConfig(hidden_size=10, num_attention_heads=4, num_layers=0)  # no attention, no constraint
    with pytest.raises(ConfigError, match="num_layers"):
        VisualOnlyConfig(num_layers=-1)
    with pytest.raises(ConfigError, match="task"):
        VisualOnlyConfig(task="ranking")

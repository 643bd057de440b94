"""The shared machinery every model relies on: config checks, missing-modality routing, losses."""
import math

import pytest
import torch
from torch import nn

from vavl.data import collate, encode_labels, pad_frames
from vavl.core.errors import ConfigError
from vavl.nn.layers import masked_last, masked_mean
from vavl.nn.losses import ccc, ccc_loss
from vavl.models.base import EmotionConfig, EmotionModel


class TinyConfig(EmotionConfig):
    model_type = "vavl_test_tiny"


class TinyModel(EmotionModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.a = nn.Linear(config.audio_dim, config.num_labels)
        self.v = nn.Linear(config.visual_dim, config.num_labels)
        self.post_init()

    def compute_heads(self, audio, audio_mask, visual, visual_mask):
        a, v = self.a(masked_mean(audio, audio_mask)), self.v(masked_mean(visual, visual_mask))
        return {"fused_logits": a + v, "audio_logits": a, "visual_logits": v}


def test_config_rejects_bad_fields():
    with pytest.raises(ConfigError, match="task"):
        TinyConfig(task="ranking")
    with pytest.raises(ConfigError, match="audio_dim"):
        TinyConfig(audio_dim=0)
    with pytest.raises(ConfigError, match="class_weights"):
        TinyConfig(num_labels=3, class_weights=[1.0])


def test_regression_config_names_attributes():
    cfg = TinyConfig(task="regression")
    assert cfg.num_labels == 3 and cfg.label_names == ["arousal", "valence", "dominance"]


def test_missing_modality_routes_to_the_head_that_sees_it():
    torch.manual_seed(0)
    model = TinyModel(TinyConfig(audio_dim=4, visual_dim=3, num_labels=2)).eval()
    audio, visual = torch.randn(3, 5, 4), torch.randn(3, 2, 3)
    amask = torch.tensor([[1] * 5, [1] * 5, [0] * 5], dtype=torch.bool)
    vmask = torch.tensor([[1, 1], [0, 0], [1, 1]], dtype=torch.bool)
    out = model(audio_features=audio, audio_mask=amask, visual_features=visual, visual_mask=vmask,
                labels=torch.tensor([0, 1, 1]))
    assert out.heads_used() == ["fused", "audio", "visual"]
    assert torch.allclose(out.logits[1], out.audio_logits[1]) and torch.allclose(out.logits[2], out.visual_logits[2])
    assert torch.isfinite(out.loss)
    only_audio = model(audio_features=audio)
    assert only_audio.heads_used() == ["audio"] * 3 and only_audio.modalities_used() == [["audio"]] * 3


def test_wrong_feature_width_names_the_field():
    model = TinyModel(TinyConfig(audio_dim=4, visual_dim=3, num_labels=2))
    with pytest.raises(ValueError, match="audio_dim"):
        model(audio_features=torch.randn(1, 2, 5))


def test_ccc_matches_formula_and_loss_ignores_nan():
    torch.manual_seed(1)
    x, y = torch.randn(50, 2), torch.randn(50, 2)
    for j in range(2):
        a, b = x[:, j].double(), y[:, j].double()
        ref = 2 * ((a - a.mean()) * (b - b.mean())).mean() / (a.var(unbiased=False) + b.var(unbiased=False) + (a.mean() - b.mean()) ** 2)
        assert math.isclose(ccc(x, y)[j].item(), ref.item(), rel_tol=1e-4)
    y_nan = y.clone()
    y_nan[0, 0] = float("nan")
    assert torch.isclose(ccc_loss(x, y_nan), (1 - ccc(x[1:], y[1:])).mean())


def test_masked_pooling_ignores_padding():
    x = torch.arange(12.0).reshape(1, 4, 3)
    mask = torch.tensor([[True, True, False, False]])
    assert torch.equal(masked_mean(x, mask), x[:, :2].mean(1))
    assert torch.equal(masked_last(x, mask), x[:, 1])


def test_collate_pads_and_masks():
    cfg = TinyConfig(audio_dim=2, visual_dim=2, num_labels=2, id2label={0: "angry", 1: "sad"})
    samples = [
        {"id": "a", "audio_features": torch.ones(3, 2), "visual_features": None,
         "labels": encode_labels({"label": "sad"}, cfg)},
        {"id": "b", "audio_features": torch.ones(1, 2), "visual_features": torch.ones(2, 2),
         "labels": encode_labels({"label": None}, cfg)},
    ]
    batch = collate(samples)
    assert batch["audio_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["visual_mask"].tolist() == [[False, False], [True, True]]
    assert batch["labels"].tolist() == [1, -100]
    assert pad_frames([None, None]) == (None, None)

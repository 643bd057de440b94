"""HiCMAE as a vavl model family: config checks, save / AutoModel round trip, the transformers
input conventions, missing modalities, and its per-modality encoders."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel

import vavl  # noqa: F401  (registers the families)
from vavl.core.errors import ConfigError
from vavl.models.hicmae import HiCMAEConfig, HiCMAEForEmotionRecognition
from vavl.models.hicmae.modeling_hicmae import sinusoid_table

TINY = dict(image_size=32, num_frames=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            audio_target_length=32, num_mel_bins=32, audio_hidden_size=16, audio_num_hidden_layers=1,
            audio_num_attention_heads=2, fusion_num_hidden_layers=1, fusion_num_attention_heads=2)


def tiny(**kw) -> HiCMAEForEmotionRecognition:
    torch.manual_seed(0)
    return HiCMAEForEmotionRecognition(HiCMAEConfig(**{**TINY, **kw})).eval()


def inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 4, 3, 32, 32, generator=g), torch.randn(b, 32, 32, generator=g)


def test_defaults_are_the_released_model():
    with torch.device("meta"):   # shapes only
        model = HiCMAEForEmotionRecognition(HiCMAEConfig())
    assert sum(p.numel() for p in model.parameters()) == 80792602   # official full-size count (fixture config.json)
    assert model.config.video_grid == (8, 10, 10) and model.config.audio_grid == (16, 8)


def test_save_and_automodel_round_trip(tmp_path):
    model = tiny(id2label={0: "a", 1: "b", 2: "c"})
    video, audio = inputs()
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "preprocessor_config.json").is_file() and (tmp_path / "m" / "model.safetensors").is_file()
    again = AutoModel.from_pretrained(tmp_path / "m").eval()
    assert isinstance(again, HiCMAEForEmotionRecognition) and again.label_names == ["a", "b", "c"]
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "m"), HiCMAEConfig)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=video, input_features=audio).logits,
                           again(pixel_values=video, input_features=audio).logits)
    assert again.processor.num_frames == 4 and again.processor.image_size == 32


def test_missing_modality_is_a_zero_input_and_is_reported():
    model = tiny()
    video, audio = inputs()
    with torch.no_grad():
        out = model(pixel_values=video)
        same = model(pixel_values=video, input_features=torch.zeros_like(audio))
    assert torch.equal(out.logits, same.logits)
    assert out.modalities_used() == [["visual"], ["visual"]] and out.heads_used() == ["fused", "fused"]
    with pytest.raises(ValueError, match="pixel_values, input_features or both"):
        model()
    with pytest.raises(ValueError, match="input_features has shape"):
        model(input_features=torch.zeros(2, 31, 32))


def test_samples_are_independent_of_their_batch():
    model = tiny()
    video, audio = inputs(3)
    with torch.no_grad():
        batch = model(pixel_values=video, input_features=audio).logits
        one = model(pixel_values=video[1:2], input_features=audio[1:2]).logits
    assert torch.allclose(batch[1:2], one, atol=1e-6)


def test_encoders_pool_the_normed_layers_with_softmax_weights():
    model = tiny()
    enc = model.visual_encoder
    with torch.no_grad():
        enc.layer_weights.copy_(torch.tensor([0.3, -1.0]))
        video, _ = inputs()
        tokens, pooled = enc(video)
        x = enc.embed(video)
        outs = []
        for layer in enc.layers:
            x = layer(x)
            outs.append(enc.norm(x).mean(1))
    w = torch.tensor([0.3, -1.0]).softmax(0)
    assert torch.allclose(pooled, w[0] * outs[0] + w[1] * outs[1], atol=1e-6)
    assert tokens.shape == (2, 2 * 2 * 2, 16)


def test_position_table_is_sin_cos():
    t = sinusoid_table(5, 6)
    assert torch.allclose(t[3, 0], torch.tensor(3.0).sin()) and torch.allclose(t[3, 1], torch.tensor(3.0).cos())
    assert torch.allclose(t[2, 4], torch.tensor(2.0 / 10000 ** (4 / 6)).sin())


def test_config_says_what_is_wrong():
    with pytest.raises(ConfigError, match="num_attention_heads=3 does not divide hidden_size=16"):
        HiCMAEConfig(**{**TINY, "num_attention_heads": 3})
    with pytest.raises(ConfigError, match="patch_size=16 does not divide image_size=40"):
        HiCMAEConfig(**{**TINY, "image_size": 40})

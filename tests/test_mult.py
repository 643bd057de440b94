"""MulT-style baseline: one fused head that also answers single-modality clips, truthfully."""
import pytest
import torch
from transformers import AutoModel

import vavl
from vavl.core.errors import ConfigError
from vavl.models.mult import MulTConfig, MulTForEmotionRecognition

TINY = dict(audio_dim=8, visual_dim=6, hidden_size=16, num_heads=4, num_layers=2, num_labels=3)


def tiny():
    torch.manual_seed(0)
    return MulTForEmotionRecognition(MulTConfig(**TINY)).eval()


def outputs(model, **inputs):
    with torch.no_grad():
        return model(**inputs)


def test_single_modality_answers_are_the_fused_head_without_the_other_stream():
    model = tiny()
    a, v = torch.randn(2, 7, 8), torch.randn(2, 4, 6)
    both = outputs(model, audio_features=a, visual_features=v)
    audio_only, visual_only = outputs(model, audio_features=a), outputs(model, visual_features=v)
    assert torch.allclose(both.audio_logits, audio_only.logits, atol=1e-6)
    assert torch.allclose(both.visual_logits, visual_only.logits, atol=1e-6)
    assert torch.equal(audio_only.logits, audio_only.fused_logits)
    assert not torch.allclose(both.logits, both.audio_logits)  # the fused answer really uses both
    assert both.heads_used() == audio_only.heads_used() == ["fused", "fused"]
    assert audio_only.modalities_used() == [["audio"], ["audio"]]


def test_batch_padding_invariance_and_no_nan():
    model = tiny()
    a, v = torch.randn(1, 5, 8), torch.randn(1, 3, 6)
    alone = outputs(model, audio_features=a, visual_features=v)
    audio, visual = torch.randn(2, 9, 8), torch.randn(2, 6, 6)
    audio[0, :5], visual[0, :3] = a[0], v[0]
    amask, vmask = torch.ones(2, 9, dtype=torch.bool), torch.ones(2, 6, dtype=torch.bool)
    amask[0, 5:], vmask[0, 3:], vmask[1] = False, False, False
    batch = outputs(model, audio_features=audio, audio_mask=amask, visual_features=visual, visual_mask=vmask)
    for key in ("logits", "audio_logits", "visual_logits"):
        assert torch.allclose(alone[key][0], batch[key][0], atol=1e-5), key
    assert all(torch.isfinite(batch[k]).all() for k in ("logits", "audio_logits", "visual_logits", "fused_logits"))


def test_trains_and_reloads(tmp_path):
    model = tiny().train()
    out = model(**model.dummy_inputs)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.config.aux_loss_weight == 0.0
    model.eval().save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    inputs = {k: v for k, v in model.dummy_inputs.items() if k != "labels"}
    assert torch.allclose(outputs(model, **inputs).logits, outputs(loaded, **inputs).logits, atol=1e-6)


@pytest.mark.parametrize("field, value", [("num_heads", 3), ("num_layers", 0), ("embed_dropout", -0.1)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        MulTConfig(**{**TINY, field: value})


def test_zoo_entry():
    assert vavl.get_entry("mult").name == "mult_w2v2l_effb2.crema_d"
    assert vavl.create_model("mult", num_layers=1).config.label_names[-1] == "sad"

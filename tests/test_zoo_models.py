"""Every registered model, tested the day it is registered (timm's tests/test_models.py habit):
build -> forward + backward on `dummy_inputs` -> save_pretrained -> AutoModel.from_pretrained -> same
outputs; emotion models also: batch and padding invariance, missing modality never NaN."""
import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

import vavl
from vavl.core.errors import ConfigError
from vavl.models.base import EmotionModel

# Shrinks entries whose defaults are too big for a CPU test. Applied to a model only for the
# fields its config has; widths go together with their head counts so they stay divisible.
SMALL = {
    "audio_dim": 12, "visual_dim": 10, "hidden_size": 16, "proj_dim": 8, "head_hidden_size": 8,
    "num_attention_heads": 2, "num_heads": 2, "d_model": 16, "embed_dim": 16, "d_v": 8, "num_layers": 1,
    "num_audio_layers": 1, "num_visual_layers": 1, "num_shared_layers": 1, "conv_kernel_size": 5,
    # HiCMAE (its own field names, as transformers' ViT / AST configs name them)
    "num_hidden_layers": 1, "audio_hidden_size": 16, "audio_num_hidden_layers": 1, "audio_num_attention_heads": 2,
    "fusion_num_hidden_layers": 1, "fusion_num_attention_heads": 2, "image_size": 32, "num_frames": 4,
    "audio_target_length": 32, "num_mel_bins": 32,
}
ATOL = 1e-5


def small_model(name):
    entry = vavl.get_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.model_class.config_class)}
    torch.manual_seed(0)
    return vavl.create_model(name, **{k: v for k, v in SMALL.items() if k in fields})


def compare(a, b, what):
    for key, x in a.items():
        if isinstance(x, torch.Tensor) and x.is_floating_point() and key != "loss":
            assert b[key] is not None and torch.allclose(x, b[key], atol=ATOL), f"{what}: {key} differs"


MODELS = vavl.list_models()


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_save_load(name, tmp_path):
    model = small_model(name).train()
    inputs = model.dummy_inputs
    out = model(**inputs)
    assert out.loss is not None and torch.isfinite(out.loss), f"{name}: loss {out.loss}"
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, f"{name}: no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads), f"{name}: non-finite gradient"

    model.eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    with torch.no_grad():
        compare(model(**inputs), loaded(**inputs), f"{name} after save/load")


EMOTION_MODELS = [n for n in MODELS if issubclass(vavl.get_entry(n).model_class, EmotionModel)]


def clips(cfg, g):
    """Three clips of different lengths, padded with garbage in masked frames."""
    lengths = [(6, 4), (9, 3), (2, 7)]
    ta, tv = max(a for a, _ in lengths), max(v for _, v in lengths)
    audio, visual = torch.randn(3, ta, cfg.audio_dim, generator=g), torch.randn(3, tv, cfg.visual_dim, generator=g)
    amask = torch.arange(ta)[None] < torch.tensor([a for a, _ in lengths])[:, None]
    vmask = torch.arange(tv)[None] < torch.tensor([v for _, v in lengths])[:, None]
    return audio, amask, visual, vmask


@pytest.mark.parametrize("name", EMOTION_MODELS)
def test_batch_and_padding_invariance(name):
    model = small_model(name).eval()
    g = torch.Generator().manual_seed(1)
    audio, amask, visual, vmask = clips(model.config, g)
    with torch.no_grad():
        alone = model(audio_features=audio[:1, :6], visual_features=visual[:1, :4])
        batch = model(audio_features=audio, audio_mask=amask, visual_features=visual, visual_mask=vmask)
        extra_a, extra_v = torch.randn(1, 5, model.config.audio_dim, generator=g), torch.randn(1, 3, model.config.visual_dim, generator=g)
        padded = model(audio_features=torch.cat([audio[:1, :6], extra_a], 1),
                       audio_mask=torch.arange(11)[None] < 6,
                       visual_features=torch.cat([visual[:1, :4], extra_v], 1),
                       visual_mask=torch.arange(7)[None] < 4)
    first = {k: v[:1] for k, v in batch.items() if isinstance(v, torch.Tensor)}
    compare(alone, first, f"{name}: clip alone vs in a batch")
    compare(alone, padded, f"{name}: clip alone vs padded with masked frames")


@pytest.mark.parametrize("name", EMOTION_MODELS)
def test_missing_modality(name):
    model = small_model(name).eval()
    g = torch.Generator().manual_seed(2)
    audio, amask, visual, vmask = clips(model.config, g)
    with torch.no_grad():
        full = model(audio_features=audio, audio_mask=amask, visual_features=visual, visual_mask=vmask)
        has_a, has_v = full.audio_logits is not None, full.visual_logits is not None
        joint = "heads_mean" if model.config.prediction == "heads_mean" else "fused"
        expected = joint if has_a and has_v else "audio" if has_a else "visual"
        assert full.heads_used() == [expected] * 3
        cases = {"audio only": model(audio_features=audio, audio_mask=amask),
                 "visual only": model(visual_features=visual, visual_mask=vmask)}
        vmask_mixed = vmask.clone()
        vmask_mixed[1] = False
        amask_mixed = amask.clone()
        amask_mixed[2] = False
        mixed = model(audio_features=audio, audio_mask=amask_mixed, visual_features=visual, visual_mask=vmask_mixed)

    def truthful(modality, has):
        """(modalities the answer saw, heads allowed to give it) for a sample with one modality.
        A model without separate heads (MulT-style) may answer from its fused head."""
        return ([modality], {modality, "fused"}) if has else ([], {"none"})

    for (what, out), (modality, has) in zip(cases.items(), (("audio", has_a), ("visual", has_v))):
        seen, heads = truthful(modality, has)
        assert torch.isfinite(out.logits).all(), f"{name}: NaN with {what}"
        assert out.modalities_used() == [seen] * 3, f"{name}: {what} claims {out.modalities_used()}"
        assert set(out.heads_used()) <= heads, f"{name}: {what} used {out.heads_used()}"
    assert torch.isfinite(mixed.logits).all()
    assert mixed.heads_used()[0] == expected
    assert mixed.modalities_used()[1:] == [truthful("audio", has_a)[0], truthful("visual", has_v)[0]]
    assert mixed.heads_used()[1] in truthful("audio", has_a)[1] and mixed.heads_used()[2] in truthful("visual", has_v)[1]
    # a sample's prediction does not depend on its companions' missing modalities
    assert torch.allclose(mixed.logits[0], full.logits[0], atol=ATOL)


@pytest.mark.parametrize("name", MODELS)
def test_entry_is_honest_plain_data(name):
    entry = vavl.get_entry(name)
    root = Path(__file__).resolve().parents[1]
    assert entry.name.count(".") == 1 and entry.description, f"{name}: name 'arch.tag' and a description"
    if entry.recipe:
        assert (root / entry.recipe.split()[0]).exists(), f"{name}: recipe {entry.recipe!r} does not exist"
    if entry.hub_id is None and entry.weights is None:
        assert entry.status == vavl.models.registry.NO_WEIGHTS, f"{name}: no hub_id but status {entry.status!r}"
    if entry.weights is not None:   # weights published elsewhere: the card says where and how to convert them
        assert "vavl convert" in entry.weights and "vavl convert" in entry.status, f"{name}: how to get the weights"


def test_short_names_resolve_only_when_they_fit_one_architecture():
    assert vavl.get_entry("auxformer").name == "auxformer.official"             # an architecture: its first tag
    assert vavl.get_entry("auxformer_w2v2l_effb2").name == "auxformer_w2v2l_effb2.crema_d"
    assert vavl.get_entry("mult").name == "mult_w2v2l_effb2.crema_d"           # a family of one architecture
    with pytest.raises(ConfigError, match="several architectures") as err:
        vavl.get_entry("early_fusion")                                         # baselines and classic both have one
    assert "early_fusion_w2v2l_effb2.crema_d" in str(err.value) and "early_fusion_mfcc_face_grey.crema_d" in str(err.value)
    with pytest.raises(ConfigError, match="unknown model"):
        vavl.get_entry("no_such_model")

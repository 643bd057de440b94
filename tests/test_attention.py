"""vavl/nn/attention.py: the masks made once per forward, the eager and SDPA paths against plain
autograd, which implementation each call runs, and `attn_implementation` through create_model,
from_pretrained, set_attn_implementation and every registered emotion model."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from attention_utils import make_mask, masked_reference
from transformers import AutoModel

import vavl
from vavl.nn import attention as attn
from vavl.nn import native
from vavl.nn.attention import AttentionMask, attention, choose
from vavl.core.errors import ConfigError
from vavl.models.base import EmotionModel
from vavl.nn.native import attention as kernel


def leaves(*shapes, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=dtype, requires_grad=True) for s in shapes]


# ---- AttentionMask -----------------------------------------------------------------------------

def test_the_mask_computes_nothing_until_asked_and_each_form_once(monkeypatch):
    monkeypatch.setattr(kernel, "load", lambda: pytest.fail("making or using a mask must not touch the kernel"))
    qm, km = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 7, dtype=torch.bool)
    km[1, 4:] = False
    mask = AttentionMask(qm, km, causal=True)
    assert mask._forms == {}
    bias = mask.bias(torch.float32)
    assert mask.bias(torch.float32) is bias and mask.allowed is mask.allowed
    assert mask.kernel_layout() is mask.kernel_layout()
    assert bias.shape == (2, 1, 5, 7) and torch.equal(bias[1, 0, 0] == 0, mask.allowed[1, 0, 0])


def test_forms_without_padding():
    ones = torch.ones(2, 6, dtype=torch.bool)
    plain, causal = AttentionMask(ones, ones), AttentionMask(ones, ones, causal=True)
    assert plain.allowed is None and plain.bias(torch.float32) is None and not plain.is_causal
    assert causal.is_causal and causal.allowed.shape == (6, 6) and causal.empty is None
    assert torch.equal(causal.allowed, torch.ones(6, 6, dtype=torch.bool).tril())
    cross = AttentionMask(ones, torch.ones(2, 9, dtype=torch.bool), causal=True)
    assert not cross.is_causal and cross.allowed.shape == (6, 9)  # offset |9 - 6|: not SDPA's is_causal


def test_empty_rows_are_opened_in_the_bias_and_reported():
    mask = make_mask("cross", 3, 4, 6)  # clip 2 has no key
    assert mask.empty.shape == (3, 4, 1) and mask.empty[2].all() and not mask.empty[:2].any()
    bias = mask.bias(torch.float64)
    assert torch.isfinite(bias[2]).all() and torch.isinf(bias[1, 0, :, 3:]).all()


# ---- eager and SDPA against plain autograd ------------------------------------------------------

@pytest.mark.parametrize("how", ["eager", "sdpa"])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padded", "cross"])
@pytest.mark.parametrize("tq,tk", [(6, 6), (5, 9)])
def test_eager_and_sdpa_match_plain_autograd(how, mask_kind, tq, tk):
    b, h, e = 3, 2, 4
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e))
    (bias,) = leaves((1, h, tq, tk), seed=1)
    mask = make_mask(mask_kind, b, tq, tk)
    for extra in (None, bias):
        out = attention(q, k, v, h, mask, extra, implementation=how)
        ref = masked_reference(q, k, v, mask, h, bias=extra)
        assert torch.allclose(out, ref, atol=1e-12)
        inputs = [q, k, v] + ([extra] if extra is not None else [])
        grad = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(2))
        for a, b_ in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(ref, inputs, grad), strict=True):
            assert torch.allclose(a, b_, atol=1e-10)


def test_sdpa_gets_no_mask_or_is_causal_where_that_is_the_mask(monkeypatch):
    """So that GPUs reach their fused kernels: no padding -> no mask; plain causal -> is_causal."""
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(attn.F, "scaled_dot_product_attention",
                        lambda *a, **kw: calls.append(kw) or sdpa(*a, **kw))
    q = torch.randn(2, 6, 8)
    ones = torch.ones(2, 6, dtype=torch.bool)
    attention(q, q, q, 2, AttentionMask(ones, ones), implementation="sdpa")
    attention(q, q, q, 2, AttentionMask(ones, ones, causal=True), implementation="sdpa")
    attention(q, q, q, 2, make_mask("padded", 2, 6, 6), implementation="sdpa")
    assert [(c.get("attn_mask") is None, c.get("is_causal", False)) for c in calls] == [(True, False), (True, True), (False, False)]


def test_sdpa_dropout_follows_torch_seed():
    q, k, v = leaves((2, 9, 8), (2, 9, 8), (2, 9, 8), dtype=torch.float32)
    runs = []
    for seed in (4, 4, 5):
        torch.manual_seed(seed)
        runs.append(attention(q, k, v, 2, dropout=0.5, implementation="sdpa"))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


# ---- which implementation a call runs -----------------------------------------------------------

def test_auto_is_sdpa_whatever_was_built(monkeypatch):
    """The same config computes the same function on every install: "auto" never picks the kernel
    on its own, whether or not it was built."""
    monkeypatch.delenv("VAVL_ATTENTION", raising=False)
    q32 = torch.randn(1, 3, 8)
    for loaded in ((object(), "built"), (None, "not built")):
        monkeypatch.setattr(kernel, "load", lambda loaded=loaded: loaded)
        assert choose("auto", q32, 2) == "sdpa"
    assert choose("sdpa", q32, 2) == "sdpa" and choose("eager", q32, 2) == "eager"
    with pytest.raises(ConfigError, match="'flash'"):
        choose("flash", q32, 2)


def test_vavl_attention_opts_auto_in_to_the_kernel_for_narrow_float32_heads(monkeypatch):
    available, why = native.availability()
    assert available, f"the attention kernel is not usable ({why}); the README's test command builds it"
    monkeypatch.setenv("VAVL_ATTENTION", "cpu_kernel")
    q32, q64, wide = torch.randn(1, 3, 8), torch.randn(1, 3, 8, dtype=torch.float64), torch.randn(1, 3, 130)
    assert choose("auto", q32, 2) == "cpu_kernel"
    assert choose("auto", q64, 2) == "sdpa" and choose("auto", wide, 2) == "sdpa"  # heads 65 wide
    at_limit, past = torch.randn(1, 3, 2 * attn.AUTO_MAX_WIDTH), torch.randn(1, 3, 2 * attn.AUTO_MAX_WIDTH + 2)
    assert choose("auto", at_limit, 2) == "cpu_kernel" and choose("auto", past, 2) == "sdpa"
    assert choose("cpu_kernel", past, 2) == "cpu_kernel"  # asked for: any width the kernel has
    with pytest.raises(ConfigError, match="float32 on the CPU"):
        choose("cpu_kernel", q64, 2)
    with pytest.raises(ConfigError, match="wider"):
        choose("cpu_kernel", wide, 2)
    monkeypatch.setenv("VAVL_ATTENTION", "flash")
    with pytest.raises(ConfigError, match="VAVL_ATTENTION='flash'"):
        choose("auto", q32, 2)


def test_the_kernel_asked_for_but_not_built_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(kernel, "load", lambda: (None, "not built: it is opt-in; reinstall vavl with VAVL_BUILD_KERNEL=1"))
    attn._warn_once.cache_clear()
    q = torch.randn(1, 3, 8)
    with pytest.raises(ConfigError, match="VAVL_BUILD_KERNEL=1"):
        choose("cpu_kernel", q, 2)
    monkeypatch.setenv("VAVL_ATTENTION", "cpu_kernel")
    with pytest.warns(UserWarning, match="not built"):
        assert choose("auto", q, 2) == "sdpa"
    attn._warn_once.cache_clear()


# ---- attn_implementation in the model config ----------------------------------------------------

def test_attn_implementation_through_create_model_from_pretrained_and_set(tmp_path):
    model = vavl.create_model("auxformer", attn_implementation="eager")
    layers = [m for m in model.modules() if hasattr(m, "num_heads")]
    assert layers and all(m.config is model.config for m in layers)
    assert model.config._attn_implementation == "eager"
    assert vavl.create_model("auxformer").config._attn_implementation == "auto"
    model.save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).config._attn_implementation == "auto"  # a run-time choice, not saved
    loaded = AutoModel.from_pretrained(tmp_path, attn_implementation="cpu_kernel")
    assert loaded.config._attn_implementation == "cpu_kernel"
    loaded.set_attn_implementation("sdpa")
    assert all(attn.implementation_of(m.config) == "sdpa" for m in loaded.modules() if hasattr(m, "num_heads"))
    with pytest.raises(ConfigError, match="attn_implementation='flash'"):
        vavl.create_model("vavl", attn_implementation="flash")
    with pytest.raises(ConfigError, match="attn_implementation"):
        AutoModel.from_pretrained(tmp_path, attn_implementation="flash")


SMALL = {"audio_dim": 12, "visual_dim": 10, "hidden_size": 16, "proj_dim": 8, "head_hidden_size": 8,
         "num_attention_heads": 2, "num_heads": 2, "num_layers": 1, "num_audio_layers": 1, "num_visual_layers": 1,
         "num_shared_layers": 1, "conv_kernel_size": 5}
EMOTION_MODELS = [n for n in vavl.list_models() if issubclass(vavl.get_entry(n).model_class, EmotionModel)]


@pytest.mark.parametrize("name", EMOTION_MODELS)
def test_every_emotion_model_gives_the_same_outputs_with_each_implementation(name, monkeypatch):
    """Training mode (every dropout rate 0, so the three agree), forward and backward."""
    asked, real_choose = [], attn.choose
    monkeypatch.setattr(attn, "choose", lambda how, *args: asked.append(how) or real_choose(how, *args))
    fields = {f.name for f in dataclasses.fields(vavl.get_entry(name).model_class.config_class)}
    torch.manual_seed(0)
    model = vavl.create_model(name, **{k: v for k, v in SMALL.items() if k in fields},
                              **{f: 0.0 for f in fields if "dropout" in f}).train()
    inputs = model.dummy_inputs
    results = {}
    for how in ("eager", "sdpa", "cpu_kernel"):
        model.set_attn_implementation(how)
        model.zero_grad()
        asked.clear()
        out = model(**inputs)
        out.loss.backward()
        assert set(asked) in (set(), {how})  # every attention layer ran it (models without attention: none)
        results[how] = (out.logits, [p.grad.clone() for p in model.parameters() if p.grad is not None])
    for how in ("sdpa", "cpu_kernel"):
        assert torch.allclose(results[how][0], results["eager"][0], atol=1e-5), how
        for a, b in zip(results[how][1], results["eager"][1], strict=True):
            assert torch.allclose(a, b, atol=1e-4), how

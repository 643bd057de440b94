"""The layers that attend, each implementation against plain autograd: MultiHeadAttention with its
packed projection (q|k|v, or q and k|v), the Conformer's relative-position attention (the
formula written out), and the baselines' encoder layer (nn.TransformerEncoderLayer, weights
and outputs)."""
import math
from types import SimpleNamespace

import pytest
import torch
from attention_utils import attention_reference, make_mask
from einops import rearrange

from vavl.nn.attention import AttentionMask, MultiHeadAttention
from vavl.models.baselines.branch import EncoderLayer
from vavl.models.vavl.conformer import RelativeSelfAttention, relative_table

IMPLEMENTATIONS = ["eager", "sdpa", "cpu_kernel"]


def config(how):
    return SimpleNamespace(_attn_implementation=how)


def dtype_for(how):
    return torch.float32 if how == "cpu_kernel" else torch.float64  # the kernel is float32 only


def leaves(*shapes, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=dtype, requires_grad=True) for s in shapes]


@pytest.mark.parametrize("how", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", ["self", "cross_shared", "cross_separate"])
def test_multihead_attention_packed_projections_match_separate_ones(how, mode):
    """Values and the gradients of inputs and weights: the packed projection's slices are the q,
    k, v of plain autograd."""
    b, h, e, tq, tk = 2, 3, 4, 7, 9
    d, dtype = h * e, dtype_for(how)
    tk = tq if mode == "self" else tk
    torch.manual_seed(0)
    mha = MultiHeadAttention(d, h, config=config(how)).to(dtype)
    x, key, value = leaves((b, tq, d), (b, tk, d), (b, tk, d), dtype=dtype, seed=3)
    ins = {"self": [x], "cross_shared": [x, key], "cross_separate": [x, key, value]}[mode]
    mask = make_mask("causal", b, tq, tk)
    out = mha(*ins, mask=mask)

    w, wb = mha.qkv.weight, mha.qkv.bias
    q, k, v = (torch.nn.functional.linear(t, w[i * d:(i + 1) * d], wb[i * d:(i + 1) * d])
               for i, t in enumerate(ins + ins[-1:] * (3 - len(ins))))  # x, x, x / x, key, key / x, key, value
    ref = mha.out_proj(attention_reference(q, k, v, mask.bias(dtype), h))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(out, ref, atol=tol)
    grad = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    params = [*ins, w, wb]
    for a, b_ in zip(torch.autograd.grad(out, params, grad), torch.autograd.grad(ref, params, grad), strict=True):
        assert torch.allclose(a, b_, atol=tol * 10)


@pytest.mark.parametrize("how", IMPLEMENTATIONS)
def test_a_query_with_no_key_gets_zeros_projection_bias_included(how):
    mha = MultiHeadAttention(8, 2, config=config(how)).to(dtype_for(how))
    x = torch.randn(2, 3, 8, dtype=dtype_for(how))
    mask = AttentionMask(torch.ones(2, 3, dtype=torch.bool), torch.tensor([[False] * 5, [True] * 5]))
    out = mha(x, torch.randn(2, 5, 8, dtype=x.dtype), mask=mask)
    assert torch.equal(out[0], torch.zeros(3, 8)) and out[1].abs().sum() > 0


def conformer_reference(layer, x, key_mask):
    """The Conformer attention written out: ((q + u)·k + (q + v)·P(i - j)) / √e, padded keys masked."""
    b, t, d = x.shape
    h = layer.heads
    x = layer.norm(x)
    q, k, v = (rearrange(f(x), "b t (h e) -> b h t e", h=h) for f in (layer.query, layer.key, layer.value))
    p = rearrange(layer.pos(relative_table(t, d).to(x.dtype)), "r (h e) -> h r e", h=h)
    scores = torch.empty(b, h, t, t, dtype=x.dtype)
    for i in range(t):
        for j in range(t):  # row (t - 1) - (i - j) of the table holds distance i - j
            scores[:, :, i, j] = ((q[:, :, i] + layer.u_bias) * k[:, :, j]).sum(-1) + \
                ((q[:, :, i] + layer.v_bias) * p[:, (t - 1) - (i - j)]).sum(-1)
    scores = (scores / math.sqrt(d // h)).masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return layer.out(rearrange(scores.softmax(-1) @ v, "b h t e -> b t (h e)"))


@pytest.mark.parametrize("how", IMPLEMENTATIONS)
def test_conformer_attention_matches_the_formula(how):
    dtype = dtype_for(how)
    torch.manual_seed(0)
    layer = RelativeSelfAttention(12, 3, dropout=0.0, config=config(how)).to(dtype)
    torch.nn.init.normal_(layer.u_bias)
    torch.nn.init.normal_(layer.v_bias)
    (x,) = leaves((2, 6, 12), dtype=dtype, seed=1)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    out = layer(x, AttentionMask(mask, mask))
    ref = conformer_reference(layer, x, mask)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(out, ref, atol=tol)
    params = [x, layer.u_bias, layer.v_bias, layer.pos.weight]
    grad = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    for a, b_ in zip(torch.autograd.grad(out, params, grad), torch.autograd.grad(ref, params, grad), strict=True):
        assert torch.allclose(a, b_, atol=tol * 10)


@pytest.mark.parametrize("how", IMPLEMENTATIONS)
def test_baseline_encoder_layer_is_torch_transformer_encoder_layer(how):
    """Same parameter names (checkpoints load into either) and the same outputs, padding masked."""
    cfg = SimpleNamespace(num_attention_heads=2, dropout=0.0, _attn_implementation=how)
    dtype = dtype_for(how)
    torch.manual_seed(0)
    ours = EncoderLayer(8, cfg).to(dtype).eval()
    torch_layer = torch.nn.TransformerEncoderLayer(8, 2, 16, 0.0, activation="gelu", batch_first=True,
                                                   norm_first=True).to(dtype).eval()
    assert set(ours.state_dict()) == set(torch_layer.state_dict())
    torch_layer.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 8, dtype=dtype)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        out = ours(x, AttentionMask(mask, mask))
        ref = torch_layer(x, src_key_padding_mask=~mask)
    assert torch.allclose(out, ref, atol=1e-5 if dtype == torch.float32 else 1e-12)

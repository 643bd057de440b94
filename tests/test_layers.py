"""The CPU attention kernel of the MulT / AuxFormer family: same values and gradients as plain
autograd attention, dropout included (same random bits), whatever the block size, whichever
way the weights are held ((tq, tk), or (tk, tq) for fewer than SHORT_KEYS keys) and wherever q,
k and v come from (separate tensors, or slots of one packed projection)."""
import pytest
import torch
from attention_utils import attention_reference

from vavl import layers
from vavl.layers import (
    SHORT_KEYS,
    AttentionBias,
    MultiHeadAttention,
    attention_mask,
    cpu_attention,
    keep_threshold,
    random_bits,
)

SEPARATE = ((0, 0), (1, 0), (2, 0))  # q, k, v each its own tensor


def reference(q, k, v, bias, p, bits, heads):
    """Plain autograd attention on (b, t, heads * e); dropout from the given (b, h, tq, tk) bits."""
    threshold, scale = keep_threshold(p)
    return attention_reference(q, k, v, bias, heads, (bits >= threshold).to(q.dtype) * scale if p else None)


def inputs(b, h, tq, tk, e, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, h * e, generator=g, dtype=dtype, requires_grad=True) for t in (tq, tk, tk)]


def drawn_bits(b, h, tq, tk):
    """The dropout bits `cpu_attention` draws next, as (b, h, tq, tk)."""
    if tk < SHORT_KEYS:  # drawn as the weights are held
        return random_bits((b, h, tk, tq)).transpose(-1, -2)
    return random_bits((b, h, tq, tk))


def padded_bias(b, tq, tk, dtype=torch.float64):
    qm, km = torch.ones(b, tq, dtype=torch.bool), torch.ones(b, tk, dtype=torch.bool)
    qm[0, tq - 2:], km[1, tk - 3:] = False, False
    allowed = attention_mask(qm, km, causal=True)
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, float("-inf"))


def causal_bias(tq, tk, dtype=torch.float64):
    allowed = attention_mask(torch.ones(1, tq, dtype=torch.bool), torch.ones(1, tk, dtype=torch.bool), True)
    return torch.zeros(tq, tk, dtype=dtype).masked_fill_(~allowed, float("-inf"))


@pytest.mark.parametrize("chunk_bytes", [1, 3000, 1 << 20])  # one clip per block, two, all
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("bias_kind", ["none", "causal", "padded"])
@pytest.mark.parametrize("tk", [9, SHORT_KEYS + 3])  # weights held (tk, tq), then (tq, tk)
def test_values_and_gradients_match_plain_autograd(monkeypatch, chunk_bytes, p, bias_kind, tk):
    monkeypatch.setattr(layers, "CHUNK_BYTES", chunk_bytes)
    b, h, tq, e = 3, 2, 7, 5
    bias = {"none": None, "padded": padded_bias(b, tq, tk), "causal": causal_bias(tq, tk)}[bias_kind]
    q, k, v = inputs(b, h, tq, tk, e)
    torch.manual_seed(5)
    out = cpu_attention((q, k, v), SEPARATE, bias, h, h * e, p)
    torch.manual_seed(5)
    bits = drawn_bits(b, h, tq, tk) if p else None
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    ref = reference(q2, k2, v2, bias, p, bits, h)
    assert torch.allclose(out, ref, atol=1e-12)
    if p:  # the draw really dropped something, so the test covers the dropout path
        assert (bits < keep_threshold(p)[0]).any()
    grad = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(2))
    out.backward(grad)
    ref.backward(grad)
    for ours, theirs in ((q, q2), (k, k2), (v, v2)):
        assert torch.allclose(ours.grad, theirs.grad, atol=1e-12)


@pytest.mark.parametrize("mode", ["self", "cross_shared", "cross_separate"])
@pytest.mark.parametrize("tk", [6, SHORT_KEYS + 2])
def test_packed_projections_match_plain_autograd(mode, tk):
    """MultiHeadAttention hands cpu_attention slots of its projections (q|k|v packed, or q and
    k|v): values and the gradients of inputs and weights match separate projections."""
    b, h, e, tq = 2, 3, 4, 7 if mode != "self" else tk
    d = h * e
    torch.manual_seed(0)
    mha = MultiHeadAttention(d, h, dropout=0.2).double().train()
    x, key, value = inputs(b, 1, tq, tk, d, seed=3)
    ins = {"self": [x], "cross_shared": [x, key], "cross_separate": [x, key, value]}[mode]
    bias = causal_bias(tq, tq if mode == "self" else tk)
    torch.manual_seed(7)
    out = mha(*ins, mask=AttentionBias(bias, None))

    torch.manual_seed(7)
    bits = drawn_bits(b, h, tq, bias.shape[1])
    ins2 = [t.detach().clone().requires_grad_() for t in ins]
    w, wb = mha.qkv.weight, mha.qkv.bias
    q, k, v = (torch.nn.functional.linear(t, w[i * d:(i + 1) * d], wb[i * d:(i + 1) * d])
               for i, t in enumerate(ins2 + ins2[-1:] * (3 - len(ins2))))  # x, x, x / x, key, key / x, key, value
    ref = mha.out_proj(reference(q, k, v, bias, 0.2, bits, h))
    assert torch.allclose(out, ref, atol=1e-12)

    grad = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(2))
    ours = torch.autograd.grad(out, [*ins, w, wb], grad)
    theirs = torch.autograd.grad(ref, [*ins2, w, wb], grad)
    for a, b_ in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b_, atol=1e-11)


@pytest.mark.parametrize("tk", [8, SHORT_KEYS])
def test_no_grad_path_gives_the_same_output(monkeypatch, tk):
    monkeypatch.setattr(layers, "CHUNK_BYTES", 3000)
    q, k, v = inputs(4, 3, 6, tk, 5, dtype=torch.float32)
    bias = padded_bias(4, 6, tk, dtype=torch.float32)
    with torch.no_grad():
        fast = cpu_attention((q, k, v), SEPARATE, bias, 3, 15)
    assert torch.allclose(fast, reference(q, k, v, bias, 0.0, None, 3), atol=1e-6)


@pytest.mark.parametrize("tk", [5, SHORT_KEYS + 1])
def test_gradcheck_without_dropout(tk):
    q, k, v = inputs(2, 2, 4, tk, 3)
    bias = padded_bias(2, 4, tk)
    assert torch.autograd.gradcheck(lambda q, k, v: cpu_attention((q, k, v), SEPARATE, bias, 2, 6), (q, k, v))


def test_dropout_rate_and_rounding():
    threshold, scale = keep_threshold(0.1)
    kept = (random_bits((500, 1000)) >= threshold).double().mean().item()
    assert abs(kept - 0.9) < 0.003 and abs(scale - 1 / 0.9) < 1e-4
    assert keep_threshold(1.0)[1] == 65536  # never divides by zero

"""The fused C attention kernel (vavl/native/attention.c) behind `cpu_attention` for float32:
values and gradients match float64 plain autograd with the same dropout decisions, over masks,
partial blocks of query rows, packed projections and head widths; its dropout is reproducible
and has the right rate; it is built once per source and CPU; and without a compiler everything
falls back to the PyTorch path."""

import warnings

import pytest
import torch
from attention_utils import attention_reference

import vavl.native
from vavl import layers
from vavl.layers import (
    AttentionBias,
    FusedBias,
    MultiHeadAttention,
    attention_mask,
    cpu_attention,
    keep_threshold,
)
from vavl.native import attention as native_attention


@pytest.fixture(autouse=True)
def kernel_built():
    """CI has a C compiler: the kernel must build there, or these tests say so."""
    assert native_attention.library() is not None, "the attention kernel did not build (see the warning above)"


def keep_factors(p, b, h, tq, tk):
    """The dropout factors the kernel uses next (it draws its seed from torch's generator)."""
    if not p:
        return None
    seed = int(torch.randint(0, 2**32, (1,)))
    return native_attention.keep_factors(seed, b * h, tq, tk, *keep_threshold(p)).view(b, h, tq, tk).double()


def bias_for(kind, b, tq, tk):
    if kind == "none":
        return None
    qm, km = torch.ones(b, tq, dtype=torch.bool), torch.ones(b, tk, dtype=torch.bool)
    if kind == "padded":  # padding in both, and one clip with no keys at all (a missing modality)
        qm[0, tq - 2:], km[1, tk - 3:], km[-1] = False, False, False
    return AttentionBias.from_mask(attention_mask(qm, km, causal=kind != "cross")).bias


def leaves(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, requires_grad=True) for s in shapes]


def check_against_reference(sources, slots, bias, heads, dim, p, seed=5):
    b, tq, tk = sources[0].shape[0], sources[slots[0][0]].shape[1], sources[slots[1][0]].shape[1]
    torch.manual_seed(seed)
    out = cpu_attention(sources, slots, bias, heads, dim, p)
    torch.manual_seed(seed)
    keep = keep_factors(p, b, heads, tq, tk)
    if keep is not None:  # the draw really dropped something, so the dropout path is covered
        assert (keep == 0).any() and (keep > 0).any()
    doubles = [x.detach().double().requires_grad_() for x in sources]
    q, k, v = (doubles[i][..., s:s + dim] for i, s in slots)
    ref = attention_reference(q, k, v, None if bias is None else bias.double(), heads, keep)
    assert out.dtype == torch.float32 and torch.allclose(out.double(), ref, atol=2e-5), (out.double() - ref).abs().max()
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    ours = torch.autograd.grad(out, sources, grad)
    theirs = torch.autograd.grad(ref, doubles, grad.double())
    for a, b_ in zip(ours, theirs, strict=True):
        assert torch.allclose(a.double(), b_, atol=1e-4), (a.double() - b_).abs().max()
    return out


@pytest.mark.parametrize("bias_kind", ["none", "causal", "padded", "cross"])
@pytest.mark.parametrize("p", [0.0, 0.25])
@pytest.mark.parametrize("tq,tk", [(7, 19), (37, 37), (40, 6)])  # fewer rows than a block, several, short keys
def test_separate_q_k_v_match_float64_autograd(bias_kind, p, tq, tk):
    b, h, e = 3, 2, 5
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e))
    check_against_reference((q, k, v), ((0, 0), (1, 0), (2, 0)), bias_for(bias_kind, b, tq, tk), h, h * e, p)


@pytest.mark.parametrize("e", [4, 7, 64])  # a specialised width, the generic copy, the widest
def test_head_widths(e):
    b, h, tq, tk = 2, 2, 21, 17
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e), seed=e)
    check_against_reference((q, k, v), ((0, 0), (1, 0), (2, 0)), bias_for("padded", b, tq, tk), h, h * e, 0.1)


def test_packed_self_attention_and_shared_keys_values():
    """q|k|v slots of one projection, and q plus a packed k|v: gradients land in the right slots
    (and zeros where a source has channels no slot reads)."""
    b, h, e, t, tk = 2, 3, 5, 23, 11
    d = h * e
    (qkv,) = leaves((b, t, 3 * d))
    check_against_reference((qkv,), ((0, 0), (0, d), (0, 2 * d)), bias_for("causal", b, t, t), h, d, 0.2)
    q, kv = leaves((b, t, d + 4), (b, tk, 2 * d), seed=1)  # 4 channels of q's source are not read
    check_against_reference((q, kv), ((0, 4), (1, 0), (1, d)), bias_for("cross", b, t, tk), h, d, 0.2)


def test_multihead_attention_uses_the_mask_made_once():
    """MultiHeadAttention passes the `FusedBias` made by `AttentionBias.from_mask` (no per-layer
    transposition), and gives what a fresh conversion of the float bias gives."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(20, 4, dropout=0.1).train()
    x, y = torch.randn(3, 9, 20), torch.randn(3, 30, 20)
    km = torch.ones(3, 30, dtype=torch.bool)
    km[1, 20:] = False
    mask = AttentionBias.from_mask(attention_mask(torch.ones(3, 9, dtype=torch.bool), km, causal=False))
    assert mask.fused is not None and mask.fused.keys.tolist()[1] == [20] * 9
    torch.manual_seed(3)
    once = mha(x, y, mask=mask)
    torch.manual_seed(3)
    fresh = mha(x, y, mask=AttentionBias(mask.bias, mask.empty))
    assert torch.equal(once, fresh)


def test_rows_with_no_key_give_zeros_and_finite_gradients():
    b, h, e, tq, tk = 2, 2, 5, 5, 8
    bias = torch.zeros(b, 1, tq, tk)
    bias[0, :, 3] = float("-inf")  # row 3 of clip 0 sees nothing (AttentionBias would have opened it)
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e))
    out = cpu_attention((q, k, v), ((0, 0), (1, 0), (2, 0)), bias, h, h * e, 0.1)
    assert torch.equal(out[0, 3], torch.zeros(h * e)) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v)) and torch.equal(q.grad[0, 3], torch.zeros(h * e))


def test_a_bias_shared_by_the_batch_and_shapes_that_do_not_fit():
    b, h, e, tq, tk = 3, 2, 5, 9, 20
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e))
    km = torch.ones(1, tk, dtype=torch.bool)
    km[0, 15:] = False
    bias = AttentionBias.from_mask(attention_mask(torch.ones(1, tq, dtype=torch.bool), km, True)).bias
    assert bias.shape == (1, 1, tq, tk)  # one mask for every clip
    check_against_reference((q, k, v), ((0, 0), (1, 0), (2, 0)), bias, h, h * e, 0.2)
    with pytest.raises(ValueError, match="does not fit"):  # keys of another length than the values
        cpu_attention((q, k, v[:, :5]), ((0, 0), (1, 0), (2, 0)), None, h, h * e)
    with pytest.raises(ValueError, match="does not fit"):  # a bias for other clips
        cpu_attention((q, k, v), ((0, 0), (1, 0), (2, 0)), bias_for("padded", 2, tq, tk), h, h * e)


def test_no_grad_path_and_reproducible_dropout():
    q, k, v = leaves((4, 30, 10), (4, 30, 10), (4, 30, 10))
    bias = bias_for("causal", 4, 30, 30)
    torch.manual_seed(11)
    with torch.no_grad():
        fast = cpu_attention((q, k, v), ((0, 0), (1, 0), (2, 0)), bias, 2, 10, 0.3)
    torch.manual_seed(11)
    graph = cpu_attention((q, k, v), ((0, 0), (1, 0), (2, 0)), bias, 2, 10, 0.3)
    assert torch.equal(fast, graph)
    other = cpu_attention((q, k, v), ((0, 0), (1, 0), (2, 0)), bias, 2, 10, 0.3)  # the next seed
    assert not torch.equal(other, graph)


def test_dropout_rate_is_p_everywhere():
    """The counter-based draws keep 1 - p of the weights, in every part of the (tile, row, key) grid."""
    threshold, scale = keep_threshold(0.1)
    keep = native_attention.keep_factors(12345, 64, 125, 125, threshold, scale)
    assert keep.unique().tolist() == [0.0, pytest.approx(scale)]
    kept = (keep > 0).double()
    assert abs(kept.mean().item() - 0.9) < 0.002
    for part in (kept[:32], kept[32:], kept[:, :60], kept[:, 60:], kept[..., :60], kept[..., 60:], kept[..., ::2]):
        assert abs(part.mean().item() - 0.9) < 0.005
    again = native_attention.keep_factors(12345, 64, 125, 125, threshold, scale)
    other = native_attention.keep_factors(12346, 64, 125, 125, threshold, scale)
    assert torch.equal(keep, again) and (keep != other).float().mean() > 0.1


def test_other_dtypes_and_wide_heads_take_the_pytorch_path(monkeypatch):
    called = []
    monkeypatch.setattr(layers._FusedAttention, "apply", lambda *a: called.append(a))
    q = torch.randn(2, 6, 2 * 65, requires_grad=True)  # heads 65 wide: more than the kernel takes
    out = cpu_attention((q, q, q), ((0, 0), (1, 0), (2, 0)), None, 2, 130)
    qd = torch.randn(2, 6, 10, dtype=torch.float64, requires_grad=True)
    out_d = cpu_attention((qd, qd, qd), ((0, 0), (1, 0), (2, 0)), None, 2, 10)
    assert not called and out.shape == (2, 6, 130) and out_d.dtype == torch.float64
    cpu_attention((q[..., :10], q[..., :10], q[..., :10]), ((0, 0), (1, 0), (2, 0)), None, 2, 10)
    assert called  # and float32 with narrow heads does take the kernel


def test_without_a_compiler_the_pytorch_path_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("VAVL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="set CC"):
        vavl.native.build("attention")
    vavl.native.load.cache_clear()
    try:
        with pytest.warns(UserWarning, match="slower PyTorch path"):
            assert native_attention.library() is None
        mask = AttentionBias.from_mask(attention_mask(torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool), True))
        assert mask.fused is None
        q, k, v = leaves((2, 5, 6), (2, 5, 6), (2, 5, 6))
        out = cpu_attention((q, k, v), ((0, 0), (1, 0), (2, 0)), mask.bias, 2, 6)
        ref = attention_reference(*(x.double() for x in (q, k, v, mask.bias)), 2)
        assert torch.allclose(out.double(), ref, atol=1e-6)
    finally:
        vavl.native.load.cache_clear()


def test_a_cache_that_cannot_be_written_builds_in_the_temp_directory(monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("VAVL_CACHE", str(tmp_path / "a-file" / "cache"))
    vavl.native.load.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to the PyTorch path
            lib = native_attention.library()
        assert lib is not None and lib.lanes in (8, 16)
    finally:
        vavl.native.load.cache_clear()


def test_build_is_cached_per_source_and_cpu(monkeypatch, tmp_path):
    first = vavl.native.build("attention", tmp_path)
    stamp = first.stat().st_mtime_ns
    assert vavl.native.build("attention", tmp_path) == first and first.stat().st_mtime_ns == stamp
    monkeypatch.setattr(vavl.native, "_cpu_flags", lambda: "flags : another cpu")
    second = vavl.native.build("attention", tmp_path)
    assert second != first and second.exists()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_fused_bias_from_a_float_bias():
    bias = bias_for("padded", 3, 7, 19)
    fused = FusedBias.from_bias(bias)
    lanes = native_attention.library().lanes
    assert fused.bias_t.shape == (3, 1, 19, -(-7 // lanes) * lanes)
    assert torch.equal(fused.bias_t[..., :7], bias.transpose(-1, -2)) and not fused.bias_t[..., 7:].any()
    allowed = bias.squeeze(1) > float("-inf")
    for clip in range(3):
        for row in range(7):
            seen = allowed[clip, row].nonzero()
            assert fused.keys[clip, row] == (seen.max() + 1 if len(seen) else 0)

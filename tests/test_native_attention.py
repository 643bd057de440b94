"""The fused C attention kernel (vavl/nn/native): values and gradients against float64 plain
autograd with the same dropout decisions, over masks (rows with no key included), head widths,
packed projections, extra biases and every ISA level this CPU runs; dropout reproducible from
torch's seed; the op's checks, its registration (opcheck) and the load-time handshake; and the
install-time build, which carries on without the kernel when there is no compiler."""
import ctypes
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from attention_utils import make_mask, masked_reference

from vavl.nn import native
from vavl.nn.attention import AttentionMask, attention
from vavl.nn.native import attention as kernel
from vavl.nn.native import library

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def kernel_built():
    """CI has a C compiler, so the install built the kernel: these tests say so if it did not."""
    available, why = native.availability()
    assert available, f"the attention kernel is not usable: {why}"


def supported_levels():
    best = kernel.load()[0].lib.vavl_attention_best_level()
    return kernel.LEVELS[:best + 1]


@pytest.fixture(params=kernel.LEVELS)
def level(request, monkeypatch):
    """Each ISA level of the kernel this CPU can run, forced with VAVL_NATIVE_ISA."""
    if request.param not in supported_levels():
        pytest.skip(f"this CPU cannot run the {request.param} sweeps")
    monkeypatch.setenv("VAVL_NATIVE_ISA", request.param)
    kernel.load.cache_clear()
    assert kernel.load()[0].level == kernel.LEVELS.index(request.param)
    yield request.param
    monkeypatch.delenv("VAVL_NATIVE_ISA")
    kernel.load.cache_clear()


def leaves(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, requires_grad=True) for s in shapes]


def next_keep(p, b, h, tq, tk):
    """The dropout factors the kernel uses next: it draws its seed from torch's generator."""
    if not p:
        return None
    seed = int(torch.randint(0, 2**32, (1,)))
    return kernel.keep_factors(seed, b * h, tq, tk, p).view(b, h, tq, tk).double()


def check(q, k, v, heads, mask=None, p=0.0, bias=None, seed=5):
    """Kernel vs float64 reference: output and the gradients of q, k, v (and bias)."""
    b, tq, tk = q.shape[0], q.shape[1], k.shape[1]
    torch.manual_seed(seed)
    out = attention(q, k, v, heads, mask, bias, p, implementation="cpu_kernel")
    torch.manual_seed(seed)
    keep = next_keep(p, b, heads, tq, tk)
    if keep is not None:  # the draw really dropped something, so the dropout path is covered
        assert (keep == 0).any() and (keep > 0).any()
    inputs = [x for x in (q, k, v, bias) if x is not None and x.requires_grad]
    doubles = [x.detach().double().requires_grad_(x.requires_grad) for x in (q, k, v)]
    bias_d = None if bias is None else bias.detach().double().requires_grad_(bias.requires_grad)
    ref = masked_reference(*doubles, mask, heads, keep, bias_d)
    assert out.dtype == torch.float32 and torch.allclose(out.double(), ref, atol=2e-5), (out.double() - ref).abs().max()
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    ours = torch.autograd.grad(out, inputs, grad)
    theirs = torch.autograd.grad(ref, [x for x in (*doubles, bias_d) if x is not None and x.requires_grad], grad.double())
    for a, b_ in zip(ours, theirs, strict=True):
        assert torch.allclose(a.double(), b_, atol=1e-4), (a.double() - b_).abs().max()
    return out


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padded", "cross"])
@pytest.mark.parametrize("p", [0.0, 0.25])
@pytest.mark.parametrize("tq,tk", [(7, 19), (37, 37), (40, 6)])  # fewer rows than a block, several, short keys
def test_values_and_gradients_match_float64_autograd(mask_kind, p, tq, tk):
    b, h, e = 3, 2, 5
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e))
    check(q, k, v, h, make_mask(mask_kind, b, tq, tk), p)


def test_every_isa_level_matches(level):
    b, h, e, tq, tk = 3, 2, 5, 21, 17
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e), seed=1)
    check(q, k, v, h, make_mask("padded", b, tq, tk), 0.2)
    check(q, k, v, h, make_mask("causal", b, tq, tk), 0.0, bias=leaves((1, h, tq, tk), seed=2)[0])


def test_dropout_decisions_are_the_same_at_every_level(monkeypatch):
    q, k, v = leaves((2, 30, 10), (2, 30, 10), (2, 30, 10))
    outs = []
    for name in supported_levels():
        monkeypatch.setenv("VAVL_NATIVE_ISA", name)
        kernel.load.cache_clear()
        torch.manual_seed(3)
        outs.append(attention(q, k, v, 2, None, dropout=0.3, implementation="cpu_kernel"))
    kernel.load.cache_clear()
    monkeypatch.delenv("VAVL_NATIVE_ISA")
    for out in outs[1:]:  # only rounding differs (lanes fold in another order)
        assert torch.allclose(out, outs[0], atol=1e-5)


@pytest.mark.parametrize("e", [4, 7, 64])  # a specialised width, the generic copy, the widest
def test_head_widths(e):
    b, h, tq, tk = 2, 2, 21, 17
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e), seed=e)
    check(q, k, v, h, make_mask("padded", b, tq, tk), 0.1)


@pytest.mark.parametrize("shape", [(3, 2, 9, 11), (1, 2, 9, 11), (3, 1, 9, 11), (9, 11)])
def test_an_extra_bias_and_its_gradient(shape):
    """A per-head additive bias (the Conformer's relative positions) with a gradient, broadcast
    over clips or heads or shared by all."""
    b, h, e, tq, tk = 3, 2, 5, 9, 11
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e), seed=4)
    (bias,) = leaves(shape, seed=5)
    check(q, k, v, h, make_mask("cross", b, tq, tk), 0.2, bias=bias)


def test_packed_projections_are_read_in_place():
    """q|k|v slices of one projection, and q plus slices of a packed k|v: the kernel reads the
    views without copies and the gradients land in the right channels."""
    b, h, e, t, tk = 2, 3, 5, 23, 11
    d = h * e
    (qkv,) = leaves((b, t, 3 * d))
    check(*qkv.split(d, -1), h, make_mask("causal", b, t, t), 0.2)
    q, kv = leaves((b, t, d + 4), (b, tk, 2 * d), seed=1)
    check(q[..., 4:], *kv.split(d, -1), h, make_mask("cross", b, t, tk), 0.2)


def test_rows_with_no_key_give_zeros_and_finite_gradients():
    b, h, e, tq, tk = 2, 2, 5, 5, 8
    q, k, v = leaves((b, tq, h * e), (b, tk, h * e), (b, tk, h * e))
    mask = AttentionMask(torch.ones(b, tq, dtype=torch.bool), torch.tensor([[False] * tk, [True] * tk]))
    out = attention(q, k, v, h, mask, dropout=0.1, implementation="cpu_kernel")
    assert torch.equal(out[0], torch.zeros(tq, h * e)) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v)) and torch.equal(q.grad[0], torch.zeros(tq, h * e))


def test_dropout_follows_torch_seed_and_the_no_grad_path_agrees():
    q, k, v = leaves((4, 30, 10), (4, 30, 10), (4, 30, 10))
    mask = make_mask("causal", 4, 30, 30)
    torch.manual_seed(11)
    with torch.no_grad():
        fast = attention(q, k, v, 2, mask, dropout=0.3, implementation="cpu_kernel")
    torch.manual_seed(11)
    graph = attention(q, k, v, 2, mask, dropout=0.3, implementation="cpu_kernel")
    assert torch.equal(fast, graph)
    other = attention(q, k, v, 2, mask, dropout=0.3, implementation="cpu_kernel")  # the next seed
    assert not torch.equal(other, graph)


def test_dropout_rate_is_p_everywhere():
    """The counter-based draws keep 1 - p of the weights, in every part of the (tile, row, key) grid."""
    keep = kernel.keep_factors(12345, 64, 125, 125, 0.1)
    assert keep.unique().tolist() == [0.0, pytest.approx(1 / 0.9, rel=1e-4)]
    kept = (keep > 0).double()
    assert abs(kept.mean().item() - 0.9) < 0.002
    for part in (kept[:32], kept[32:], kept[:, :60], kept[:, 60:], kept[..., :60], kept[..., 60:], kept[..., ::2]):
        assert abs(part.mean().item() - 0.9) < 0.005
    again, other = kernel.keep_factors(12345, 64, 125, 125, 0.1), kernel.keep_factors(12346, 64, 125, 125, 0.1)
    assert torch.equal(keep, again) and (keep != other).float().mean() > 0.1


def test_a_mask_with_holes_takes_the_bias_and_prefix_masks_do_not():
    assert make_mask("padded", 3, 7, 9).kernel_layout()[0] is not None  # a hole in clip 0's keys
    bias_t, keys = make_mask("cross", 3, 7, 9).kernel_layout()
    assert bias_t is None and keys.tolist() == [[9] * 7, [6] * 7, [0] * 7]
    bias_t, keys = make_mask("causal", 3, 7, 9).kernel_layout()
    assert bias_t is None and keys.tolist() == [3, 4, 5, 6, 7, 8, 9]


# ---- the op: checks before pointers, registration --------------------------------------------

def op_args(b=2, h=2, e=5, tq=7, tk=9):
    q, k, v = (torch.randn(b, t, h * e) for t in (tq, tk, tk))
    bias_t = kernel.kernel_bias(torch.zeros(b, 1, tq, tk))
    return [q, k, v, bias_t, torch.full((b, tq), tk, dtype=torch.int32), h, 0.1, torch.tensor([7])]


@pytest.mark.parametrize("index,bad,message", [
    (0, lambda a: a[0].double(), "float32"),                                  # dtype
    (1, lambda a: a[1][:1], "shape"),                                         # another batch
    (2, lambda a: a[2][:, :4], "shape"),                                      # keys and values of other lengths
    (0, lambda a: a[0].transpose(1, 2).contiguous().transpose(1, 2), "contiguous channels"),  # channel stride
    (3, lambda a: a[3][..., :7], "layout"),                                   # bias not padded
    (3, lambda a: torch.zeros(2, 1, 9, 32)[..., :16], "layout"),              # padded rows, wrong row stride
    (3, lambda a: a[3].expand(2, 3, 9, 16), "layout"),                        # more heads than the op has
    (4, lambda a: a[4].long(), "int32"),                                      # key counts' dtype
    (4, lambda a: a[4] + 1, r"\[0, 9\]"),                                     # a key past the end
    (5, lambda a: 3, "heads"),                                                # 10 channels, 3 heads
    (6, lambda a: 1.0, "dropout_p"),
    (7, lambda a: None, "seed"),                                              # dropout without a seed
    (7, lambda a: torch.tensor([1, 2]), "seed"),
])
def test_the_op_checks_what_the_c_code_trusts(index, bad, message):
    args = op_args()
    args[index] = bad(args)
    with pytest.raises(ValueError, match=message):
        kernel.cpu_attention(*args)


def test_opcheck():
    args = op_args()
    for x in args[:3]:
        x.requires_grad_()
    torch.library.opcheck(kernel.cpu_attention, args)
    with torch.no_grad():
        out, lse = kernel.cpu_attention(*args)
    q, k, v = (x.detach() for x in args[:3])
    torch.library.opcheck(kernel.cpu_attention_backward, [torch.randn(out.shape), q, k, v, out, lse, *args[3:], True])


def test_handshake_refuses_a_library_of_another_layout(monkeypatch):
    lib = ctypes.CDLL(str(library.library_path()))
    assert library.bind(lib, "ok.so")[0] is not None

    class Wider(library.Job):
        _fields_ = [("extra", ctypes.c_int64)]

    monkeypatch.setattr(library, "Job", Wider)
    found, why = library.bind(lib, "old.so")
    assert found is None and "byte Job" in why and "reinstall" in why
    monkeypatch.undo()
    monkeypatch.setattr(library, "ABI_VERSION", library.ABI_VERSION + 1)
    assert library.bind(lib, "old.so")[0] is None


def test_availability_says_why_not(monkeypatch):
    try:
        monkeypatch.setenv("VAVL_NATIVE", "0")
        library.load.cache_clear()
        assert native.availability() == (False, "turned off by VAVL_NATIVE=0")
        monkeypatch.delenv("VAVL_NATIVE")
        monkeypatch.setattr(library, "library_path", lambda: None)
        library.load.cache_clear()
        available, why = native.availability()
        assert not available and "VAVL_BUILD_KERNEL=1" in why
        monkeypatch.undo()
        monkeypatch.setenv("VAVL_NATIVE_ISA", "sse9")
        library.load.cache_clear()
        assert "not one of" in native.availability()[1]
    finally:
        monkeypatch.undo()
        library.load.cache_clear()
    assert native.availability()[0]


def test_the_library_is_loaded_from_the_package_only():
    path = kernel.library_path()
    assert path.parent == Path(kernel.__file__).parent and path.name.startswith("_attention")


# ---- the install-time build -------------------------------------------------------------------

@pytest.mark.slow
def test_a_wheel_carries_the_kernel_only_when_asked_for(tmp_path):
    """Building the kernel is a choice made at install (VAVL_BUILD_KERNEL=1), not a side effect of
    having a compiler: the default wheel has none, and no wheel ships the C source."""
    def wheel(folder, **env):
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(folder),
                        str(ROOT)], check=True, capture_output=True, timeout=600, env={**os.environ, **env})
        (found,) = folder.glob("vavl-*.whl")
        return zipfile.ZipFile(found).namelist()

    kernel_so = lambda names: [n for n in names if n.startswith("vavl/nn/native/_attention") and n.endswith(".so")]  # noqa: E731
    plain, built = wheel(tmp_path / "plain", VAVL_BUILD_KERNEL="0"), wheel(tmp_path / "built", VAVL_BUILD_KERNEL="1")
    assert not kernel_so(plain) and kernel_so(built)
    assert not any(n.endswith((".c", ".h")) for n in plain + built)  # the source stays out of the wheel


def test_without_a_compiler_the_build_goes_on_without_the_kernel(tmp_path):
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"),
                           "--build-temp", str(tmp_path / "tmp")], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "CC": str(tmp_path / "no-such-cc"), "VAVL_BUILD_KERNEL": "1"},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "could not be built" in done.stderr and "cpu_kernel" in done.stderr
    assert not list((tmp_path / "lib").rglob("_attention*"))

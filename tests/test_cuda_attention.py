"""On a GPU: "auto" runs SDPA, and SDPA on CUDA matches the eager path (masks, rows with no key,
an extra bias with its gradient, a whole model). Runs only where CUDA is available."""
import pytest
import torch
from attention_utils import make_mask

import vavl
from vavl.nn.attention import AttentionMask, attention, choose

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def on_cuda(mask):
    if mask is None:
        return None
    return AttentionMask(mask.query_mask.cuda(), mask.key_mask.cuda(), mask.causal)


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padded", "cross"])
def test_sdpa_on_cuda_matches_eager(mask_kind):
    b, h, e, tq, tk = 3, 2, 8, 12, 12 if mask_kind != "cross" else 17
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, t, h * e, generator=g).cuda().requires_grad_() for t in (tq, tk, tk))
    bias = torch.randn(1, h, tq, tk, generator=g).cuda().requires_grad_()
    mask = on_cuda(make_mask(mask_kind, b, tq, tk))
    assert choose("auto", q, h) == "sdpa"
    for extra in (None, bias):
        out = attention(q, k, v, h, mask, extra, implementation="sdpa")
        ref = attention(q, k, v, h, mask, extra, implementation="eager")
        assert out.is_cuda and torch.allclose(out, ref, atol=1e-5)
        inputs = [q, k, v] + ([extra] if extra is not None else [])
        for a, b_ in zip(torch.autograd.grad(out.sum(), inputs), torch.autograd.grad(ref.sum(), inputs), strict=True):
            assert torch.allclose(a, b_, atol=1e-4)


@pytest.mark.parametrize("name", ["auxformer", "vavl"])
def test_a_model_on_cuda_matches_its_eager_outputs(name):
    torch.manual_seed(0)
    model = vavl.create_model(name, audio_dim=12, visual_dim=10).eval()
    inputs = {k: v.cuda() for k, v in model.dummy_inputs.items()}
    model.cuda()
    with torch.no_grad():
        fast = model(**inputs).logits
        model.set_attn_implementation("eager")
        ref = model(**inputs).logits
    assert torch.allclose(fast, ref, atol=1e-4)

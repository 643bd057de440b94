"""The plain autograd attention every attention path is checked against, and masks to check with."""
import torch

from vavl.nn.attention import AttentionMask


def attention_reference(q, k, v, bias, heads, keep=None):
    """softmax(q k^T / sqrt(e) + bias), times `keep` (b, h, tq, tk) when given (dropout as 0 or
    1 / (1 - p)), @ v; on (b, t, heads * e) tensors, in their dtype."""
    q, k, v = (x.unflatten(-1, (heads, -1)).transpose(1, 2) for x in (q, k, v))
    w = q * q.shape[-1] ** -0.5 @ k.transpose(-1, -2)
    w = (w if bias is None else w + bias).softmax(-1)
    return ((w if keep is None else w * keep) @ v).transpose(1, 2).flatten(2)


def masked_reference(q, k, v, mask, heads, keep=None, bias=None):
    """`attention_reference` with the keys `mask.allowed` forbids at -inf (plus `bias`); a query
    that sees no key gets zeros."""
    allowed = None if mask is None else mask.allowed
    if allowed is None:
        return attention_reference(q, k, v, bias, heads, keep)
    allowed = allowed.view(1, 1, *allowed.shape) if allowed.dim() == 2 else allowed
    empty = ~allowed.any(-1, keepdim=True)  # (b, 1, tq, 1)
    forbid = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill(~(allowed | empty), float("-inf"))
    out = attention_reference(q, k, v, forbid if bias is None else forbid + bias, heads, keep)
    return out.masked_fill(empty.squeeze(1), 0.0)


def make_mask(kind, b, tq, tk):
    """An AttentionMask, or None: "none" (every key), "causal", "cross" (padding in queries and
    keys, and a last clip with no key at all: a missing modality), "padded" (the same, causal, and
    a hole in clip 0's keys, so not every query sees a run of first keys)."""
    if kind == "none":
        return None
    qm, km = torch.ones(b, tq, dtype=torch.bool), torch.ones(b, tk, dtype=torch.bool)
    if kind in ("padded", "cross"):
        qm[0, tq - 2:], km[1, tk - 3:], km[-1] = False, False, False
    if kind == "padded":
        km[0, 1] = False
    return AttentionMask(qm, km, causal=kind in ("causal", "padded"))

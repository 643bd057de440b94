"""The plain autograd attention the CPU attention paths are checked against."""


def attention_reference(q, k, v, bias, heads, keep=None):
    """softmax(q k^T / sqrt(e) + bias), times `keep` (b, h, tq, tk) when given (dropout as 0 or
    1 / (1 - p)), @ v; on (b, t, heads * e) tensors, in their dtype."""
    q, k, v = (x.unflatten(-1, (heads, -1)).transpose(1, 2) for x in (q, k, v))
    w = q * q.shape[-1] ** -0.5 @ k.transpose(-1, -2)
    w = (w if bias is None else w + bias).softmax(-1)
    return ((w if keep is None else w * keep) @ v).transpose(1, 2).flatten(2)

"""Losses shared by every model: hard and soft cross-entropy, 1 - CCC, masked reconstruction."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.labels import IGNORE_INDEX



def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean CE over samples with a label (!= -100) and `keep` true. Zero (with grad) if none."""
    labels = labels.long()
    if keep is not None:
        labels = labels.masked_fill(~keep, IGNORE_INDEX)
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, weight=weight, ignore_index=IGNORE_INDEX)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor | None = None,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """CE against label distributions (b, c). Rows summing to 0 (no votes) are ignored."""
    valid = targets.sum(-1) > 0
    if keep is not None:
        valid = valid & keep
    if not valid.any():
        return logits.sum() * 0.0
    targets = targets[valid] / targets[valid].sum(-1, keepdim=True)
    logp = F.log_softmax(logits[valid].float(), dim=-1)
    if weight is not None:
        logp = logp * weight
    return -(targets * logp).sum(-1).mean()


def ccc(pred: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Concordance correlation coefficient per column of (n, a) inputs (population moments)."""
    pred, gold = pred.float(), gold.float()
    pm, gm = pred.mean(0), gold.mean(0)
    pv, gv = pred.var(0, unbiased=False), gold.var(0, unbiased=False)
    cov = ((pred - pm) * (gold - gm)).mean(0)
    return 2 * cov / (pv + gv + (pm - gm) ** 2 + 1e-8)


def ccc_loss(pred: torch.Tensor, gold: torch.Tensor, keep: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Mean (or, reduction="sum", the sum) over attributes of 1 - CCC; rows with NaN gold values
    or keep false are skipped."""
    valid = ~torch.isnan(gold).any(-1)
    if keep is not None:
        valid = valid & keep
    if valid.sum() < 2:
        return pred.sum() * 0.0
    per_attribute = 1 - ccc(pred[valid], gold[valid])
    return per_attribute.sum() if reduction == "sum" else per_attribute.mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE over the frames (or rows) where mask is true. pred/target (b, t, d) or (b, d); mask (b, t) or (b,)."""
    err = (pred.float() - target.float()) ** 2
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    while m.dim() < err.dim():
        m = m.unsqueeze(-1)
    denom = m.sum() * err.shape[-1]
    if denom == 0:
        return pred.sum() * 0.0
    return (err * m).sum() / denom

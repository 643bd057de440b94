"""Emotion-recognition metrics on gathered predictions: UA, WA, macro/micro-F1, confusion matrix,
CCC, Pearson, RMSE, bootstrap intervals (over clips, or over speakers as clusters) and per-speaker
breakdowns.

Everything here works on plain arrays of ALL samples. Distributed evaluation gathers the
per-sample predictions first (`accelerator.gather_for_metrics`, see vavl.evaluation.scoring) and then
calls these functions once, so the numbers are the same on 1 or N processes — no averaging of
per-process scores, which would be wrong for every metric here except accuracy.

Conventions
- UA (unweighted accuracy) = mean recall over the classes present in the gold labels
  (= sklearn.metrics.balanced_accuracy_score); WA (weighted accuracy) = plain accuracy.
- macro-F1 averages F1 over the classes present in gold OR predictions (sklearn's default
  label set); micro-F1 pools all decisions (equals WA for single-label data).
- CCC uses population moments (as the CCC loss does); Pearson is NaN-free (0 for a constant input).
- Samples with gold -100 (classes) or NaN (attributes) are left out.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..core.labels import IGNORE_INDEX

CLASS_METRICS = ("UA", "WA", "macro_f1", "micro_f1")
REGRESSION_METRICS = ("ccc", "pearson", "rmse")


# ---- classification ----------------------------------------------------------------------
def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(c, c) counts, rows = gold class, columns = predicted class."""
    y_true, y_pred = _valid_classes(y_true, y_pred)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def unweighted_accuracy(y_true, y_pred) -> float:
    """Mean per-class recall over the classes that occur in y_true."""
    y_true, y_pred = _valid_classes(y_true, y_pred)
    if not len(y_true):
        return float("nan")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def weighted_accuracy(y_true, y_pred) -> float:
    y_true, y_pred = _valid_classes(y_true, y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def f1_scores(y_true, y_pred) -> tuple[float, float]:
    """(macro-F1, micro-F1); classes absent from both gold and predictions are not averaged."""
    y_true, y_pred = _valid_classes(y_true, y_pred)
    if not len(y_true):
        return float("nan"), float("nan")
    per_class = []
    tp_all = fp_all = fn_all = 0
    for c in np.union1d(y_true, y_pred):
        tp = int(np.sum((y_pred == c) & (y_true == c)))
        fp = int(np.sum((y_pred == c) & (y_true != c)))
        fn = int(np.sum((y_pred != c) & (y_true == c)))
        per_class.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    micro = 2 * tp_all / (2 * tp_all + fp_all + fn_all)
    return float(np.mean(per_class)), float(micro)


def per_class_recall(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(c,) recall of each class; NaN for a class with no gold sample."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def classification_metrics(y_true, y_pred) -> dict[str, float]:
    """{"UA", "WA", "macro_f1", "micro_f1"} for class indices (n,)."""
    macro, micro = f1_scores(y_true, y_pred)
    return {"UA": unweighted_accuracy(y_true, y_pred), "WA": weighted_accuracy(y_true, y_pred),
            "macro_f1": macro, "micro_f1": micro}


def _valid_classes(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"gold {y_true.shape} and predictions {y_pred.shape} differ in shape")
    keep = y_true != IGNORE_INDEX
    return y_true[keep], y_pred[keep]


# ---- regression --------------------------------------------------------------------------
def ccc(pred, gold) -> float:
    """Concordance correlation coefficient of two vectors (population moments)."""
    pred, gold = _valid_pairs(pred, gold)
    if len(pred) < 2:
        return float("nan")
    pm, gm = pred.mean(), gold.mean()
    cov = np.mean((pred - pm) * (gold - gm))
    denom = pred.var() + gold.var() + (pm - gm) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def pearson(pred, gold) -> float:
    pred, gold = _valid_pairs(pred, gold)
    if len(pred) < 2:
        return float("nan")
    ps, gs = pred.std(), gold.std()
    if ps == 0 or gs == 0:
        return 0.0
    return float(np.mean((pred - pred.mean()) * (gold - gold.mean())) / (ps * gs))


def rmse(pred, gold) -> float:
    pred, gold = _valid_pairs(pred, gold)
    return float(np.sqrt(np.mean((pred - gold) ** 2))) if len(pred) else float("nan")


def regression_metrics(pred, gold, attributes: Sequence[str]) -> dict[str, dict[str, float]]:
    """pred/gold (n, a) -> {attribute: {"ccc", "pearson", "rmse"}} plus "mean_ccc": float."""
    pred, gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if not (pred.shape == gold.shape and pred.shape[-1] == len(attributes)):
        raise ValueError(f"predictions {pred.shape} / gold {gold.shape} do not match attributes {list(attributes)}")
    out: dict = {a: {"ccc": ccc(pred[:, j], gold[:, j]), "pearson": pearson(pred[:, j], gold[:, j]),
                     "rmse": rmse(pred[:, j], gold[:, j])} for j, a in enumerate(attributes)}
    out["mean_ccc"] = float(np.mean([out[a]["ccc"] for a in attributes]))
    return out


def _valid_pairs(pred, gold) -> tuple[np.ndarray, np.ndarray]:
    pred, gold = np.asarray(pred, dtype=np.float64).ravel(), np.asarray(gold, dtype=np.float64).ravel()
    keep = ~(np.isnan(gold) | np.isnan(pred))
    return pred[keep], gold[keep]


# ---- intervals and breakdowns ------------------------------------------------------------
def resample_indices(n: int, n_resamples: int, seed: int = 0, clusters: Sequence | None = None) -> list[np.ndarray]:
    """Bootstrap resamples of row indices 0..n-1: rows drawn with replacement, or, with `clusters`
    (one label per row, e.g. the speaker), whole clusters drawn with replacement (as many draws as
    there are clusters) and every row of a drawn cluster taken. For speaker-independent test sets
    the speakers are the independent units, so the cluster bootstrap gives honest intervals."""
    rng = np.random.default_rng(seed)
    if clusters is None:
        return list(rng.integers(0, n, size=(n_resamples, n)))
    labels = np.asarray([str(c) for c in clusters])
    if len(labels) != n:
        raise ValueError(f"{len(labels)} cluster labels for {n} rows")
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    draws = rng.integers(0, len(members), size=(n_resamples, len(members)))
    return [np.concatenate([members[k] for k in row]) for row in draws]


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    stats = stats[~np.isnan(stats)]
    if not len(stats):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_ci(metric: Callable[..., float], *arrays, n_resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95, clusters: Sequence | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of metric(*arrays) over `resample_indices` (rows, or whole
    clusters). NaN resamples (e.g. a resample with one class) are dropped; (nan, nan) if all are."""
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if n == 0 or n_resamples <= 0:
        return float("nan"), float("nan")
    stats = np.array([metric(*(a[idx] for a in arrays)) for idx in resample_indices(n, n_resamples, seed, clusters)],
                     dtype=np.float64)
    return _percentiles(stats, confidence)


def classification_ci(y_true, y_pred, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                      clusters: Sequence | None = None) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of UA, WA, macro- and micro-F1 from the same resamples as
    `bootstrap_ci` (same seed and clusters -> same intervals), each resample's scores computed from
    its confusion matrix. `clusters` (one label per sample, e.g. speakers): resample whole clusters."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    keep = y_true != IGNORE_INDEX
    if clusters is not None:
        clusters = np.asarray([str(c) for c in clusters])[keep]
    y_true, y_pred = _valid_classes(y_true, y_pred)
    n = len(y_true)
    if n == 0 or n_resamples <= 0:
        return {k: [float("nan"), float("nan")] for k in CLASS_METRICS}
    c = int(max(y_true.max(), y_pred.max())) + 1
    rows = resample_indices(n, n_resamples, seed, clusters)
    cms = np.stack([np.bincount(y_true[idx] * c + y_pred[idx], minlength=c * c) for idx in rows]).reshape(-1, c, c)
    cms = cms.astype(np.float64)
    tp, gold, pred = np.einsum("rii->ri", cms), cms.sum(2), cms.sum(1)
    present = gold > 0
    ua = np.where(present, tp / np.maximum(gold, 1), 0).sum(1) / present.sum(1)
    wa = tp.sum(1) / cms.sum((1, 2))
    either = present | (pred > 0)
    f1 = np.where(either, 2 * tp / np.maximum(gold + pred, 1), 0)
    macro = f1.sum(1) / either.sum(1)
    return {k: list(_percentiles(v, confidence)) for k, v in (("UA", ua), ("WA", wa), ("macro_f1", macro), ("micro_f1", wa))}


def regression_ci(pred, gold, attributes: Sequence[str], n_resamples: int = 1000, seed: int = 0,
                  clusters: Sequence | None = None) -> dict:
    pred, gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    fns = {"ccc": ccc, "pearson": pearson, "rmse": rmse}
    kw = dict(n_resamples=n_resamples, seed=seed, clusters=clusters)
    out: dict = {a: {k: list(bootstrap_ci(f, pred[:, j], gold[:, j], **kw)) for k, f in fns.items()}
                 for j, a in enumerate(attributes)}
    mean_ccc = lambda p, g: float(np.mean([ccc(p[:, j], g[:, j]) for j in range(len(attributes))]))  # noqa: E731
    out["mean_ccc"] = list(bootstrap_ci(mean_ccc, pred, gold, **kw))
    return out


def per_speaker(metric: Callable[..., dict], speakers: Sequence, *arrays) -> dict[str, dict]:
    """{speaker: metric(*arrays restricted to that speaker's samples) + {"n": count}}, sorted by speaker."""
    speakers = np.asarray([str(s) for s in speakers])
    arrays = [np.asarray(a) for a in arrays]
    out = {}
    for s in sorted(set(speakers.tolist())):
        keep = speakers == s
        out[s] = {**metric(*(a[keep] for a in arrays)), "n": int(keep.sum())}
    return out

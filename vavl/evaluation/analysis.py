"""Looking inside a trained model: embedding maps, saliency over time, class-wise error summaries.

    vavl analyze --model DIR --manifest M --cache CACHE [--protocol P --split test] --out DIR \
        [--embedding pca|tsne] [--source fused|audio|visual] [--clip ID] [--saliency gradient|occlusion]

writes embedding_<source>.png (pooled representations in 2-D, coloured by label and by speaker),
saliency_<clip>.png + saliency_<clip>.json (which seconds of each modality drive the prediction),
errors.md + errors.json (per-class recall, most confused pairs). The same from Python:

    from vavl.evaluation.analysis import embedding_map, saliency_over_time, error_summary
    pred = vavl.evaluation.scoring.predict_dataset(model, dataset, "av", embeddings=True)

Saliency works on encoder features (a feature cache): gradient x input summed over the feature
axis per frame (|sum_d grad * x|), or occlusion: the drop in the predicted class' probability
when a window of frames is masked out. Frame times are spread evenly over the clip's duration
(from the cache metadata), so for faces they are approximate when some frames had no face.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import metrics as M
from ..core.errors import ConfigError
from .scoring import Predictions, gold_classes

SOURCES = ("fused", "audio", "visual")


# ---- embeddings ----------------------------------------------------------------------------
def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(n, d) -> (n, 2) with PCA or t-SNE (perplexity capped for small n)."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, perplexity=float(min(30, max(2, (len(x) - 1) // 3))), init="pca",
                    random_state=seed).fit_transform(x)
    raise ConfigError(f"embedding method {method!r} must be 'pca' or 'tsne'")


def embedding_map(pred: Predictions, label_names: list[str], path, source: str = "fused", method: str = "pca",
                  regression: bool = False) -> np.ndarray:
    """Plot `pred.embeddings[source + "_embedding"]` in 2-D; returns the (n, 2) points."""
    from .plots import plot_embeddings

    key = f"{source}_embedding"
    if key not in pred.embeddings:
        have = sorted(k.removesuffix("_embedding") for k in pred.embeddings)
        raise ConfigError(f"the model gives no {key}; available: {have or 'none'} (pass embeddings=True to predict_dataset)")
    keep = (pred.audio_present if source == "audio" else pred.visual_present if source == "visual"
            else pred.audio_present | pred.visual_present).numpy()
    if keep.sum() < 3:
        raise ConfigError(f"only {int(keep.sum())} clips have a {source} embedding; need at least 3 to plot")
    x = pred.embeddings[key].numpy()[keep]
    points = project_2d(x, method)
    if regression:
        labels = ["attributes (regression)"] * len(points)
    else:
        labels = [label_names[g] if g >= 0 else "no label" for g in gold_classes(pred.labels)[keep]]
    speakers = list(np.asarray(pred.speakers)[keep])
    plot_embeddings(points, labels, speakers, path, title=f"{source} embedding ({method.upper()}, {len(points)} clips)")
    return points


# ---- saliency over time ----------------------------------------------------------------------
def saliency_over_time(model, sample: dict[str, Any], method: str = "gradient", target: int | None = None,
                       window: int = 1) -> dict[str, Any]:
    """Per-frame saliency of one clip's features for the class `target` (default: the predicted one).

    sample: {"audio_features": (ta, da) or None, "visual_features": (tv, dv) or None}.
    Returns {"target": int, "audio": (ta,) array or None, "visual": (tv,) array or None}; None also
    for a modality the model does not take (a unimodal baseline). Any model of the registry, or a
    full model (encoders + fusion model), which takes the features as its fusion model does.
    Regression models: the target is an attribute index (default 0) and its predicted value is used.
    """
    config = model.emotion_config   # a model with encoders takes the features as its fusion model does
    inputs = {f"{m}_features": sample[f"{m}_features"].unsqueeze(0).float()
              for m in ("audio", "visual") if sample.get(f"{m}_features") is not None}
    if not inputs:
        raise ConfigError(f"clip {sample.get('id')} has no features")
    regression = config.task == "regression"
    model.eval()

    def score(out, k):
        return out.logits[:, k] if regression else out.logits.softmax(-1)[:, k]

    if method not in ("gradient", "occlusion"):
        raise ConfigError(f"saliency method {method!r} must be 'gradient' or 'occlusion'")
    with torch.no_grad():
        out = model(**inputs)
    if target is None:
        target = 0 if regression else int(out.logits[0].argmax())
    result: dict[str, Any] = {"target": target, "audio": None, "visual": None}
    # gradient x input; a modality whose input gets no gradient is one the model does not take
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = model(**leaves)
    (out.logits[0, target]).backward()
    used = {k: x for k, x in leaves.items() if x.grad is not None}
    model.zero_grad(set_to_none=True)
    if method == "gradient":
        for k, x in used.items():
            result[k.split("_")[0]] = (x.grad[0] * x[0]).sum(-1).abs().detach().numpy()
    else:
        with torch.no_grad():
            base = float(score(model(**inputs), target))
            for k, x in ((k, inputs[k]) for k in used):
                t = x.shape[1]
                masks = {f"{m}_mask": torch.ones(1, inputs[f"{m}_features"].shape[1], dtype=torch.bool)
                         for m in ("audio", "visual") if f"{m}_features" in inputs}
                drop = np.zeros(t)
                for start in range(0, t, window):
                    m = {n: v.clone() for n, v in masks.items()}
                    m[k.replace("features", "mask")][0, start: start + window] = False
                    drop[start: start + window] = base - float(score(model(**inputs, **m), target))
                result[k.split("_")[0]] = drop
    return result


def frame_times(n: int, duration: float | None) -> np.ndarray:
    """Centres of n frames spread over `duration` seconds (frame indices when unknown)."""
    return (np.arange(n) + 0.5) * (duration / n) if duration else np.arange(n, dtype=float)


# ---- errors ---------------------------------------------------------------------------------
def error_summary(pred: Predictions, label_names: list[str], top: int = 5) -> dict[str, Any]:
    """Per-class recall and support, and the most confused (gold -> predicted) pairs."""
    gold, guess = gold_classes(pred.labels), pred.logits.argmax(-1).numpy()
    cm = M.confusion_matrix(gold, guess, len(label_names))
    support = cm.sum(1)
    pairs = [{"gold": label_names[i], "predicted": label_names[j], "count": int(cm[i, j]),
              "share_of_gold": float(cm[i, j] / support[i])}
             for i in range(len(label_names)) for j in range(len(label_names)) if i != j and cm[i, j] > 0]
    pairs.sort(key=lambda p: (-p["count"], -p["share_of_gold"], p["gold"], p["predicted"]))
    recall = M.per_class_recall(gold, guess, len(label_names))
    return {"n": int(support.sum()), "UA": M.unweighted_accuracy(gold, guess), "WA": M.weighted_accuracy(gold, guess),
            "per_class": {name: {"recall": None if np.isnan(r) else float(r), "support": int(s),
                                 "predicted": int(cm[:, i].sum())}
                          for i, (name, r, s) in enumerate(zip(label_names, recall, support))},
            "most_confused": pairs[:top], "confusion_matrix": cm.tolist()}


def error_markdown(summary: dict[str, Any]) -> str:
    lines = ["# Class-wise errors", "", f"{summary['n']} clips, UA {100 * summary['UA']:.1f}, WA {100 * summary['WA']:.1f}", "",
             "| class | recall | gold clips | predicted as this |", "|---|---|---|---|"]
    for name, c in summary["per_class"].items():
        recall = "—" if c["recall"] is None else f"{100 * c['recall']:.1f}"
        lines.append(f"| {name} | {recall} | {c['support']} | {c['predicted']} |")
    lines += ["", "Most confused pairs (gold → predicted):", "", "| gold | predicted | clips | share of gold |", "|---|---|---|---|"]
    lines += [f"| {p['gold']} | {p['predicted']} | {p['count']} | {100 * p['share_of_gold']:.1f}% |" for p in summary["most_confused"]]
    return "\n".join(lines) + "\n"


# ---- command line -----------------------------------------------------------------------------

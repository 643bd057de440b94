"""Figures: confusion matrix, robustness chart, embedding map, saliency over time, and one clip's
prediction timeline. Each function writes one PNG with matplotlib's Agg backend (no display
needed), atomically (a temporary file renamed into place), and returns its path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

HEAD_COLOURS = {"fused": "#4c72b0", "audio": "#dd8452", "visual": "#55a868"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, **options) -> Path:
    from ..core.files import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:   # a failed write (a full disk) leaves no temporary file behind
            fig.savefig(tmp, **{"dpi": 110, "bbox_inches": "tight", "format": path.suffix[1:] or "png", **options})
    finally:
        _pyplot().close(fig)
    return path


def plot_confusion(cm: np.ndarray, label_names: Sequence[str], path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows gold, columns predicted) with counts in the cells."""
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    c = len(label_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * c, 0.8 + 0.6 * c))
    im = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    for i in range(c):
        for j in range(c):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(c), label_names, rotation=45, ha="right")
    ax.set_yticks(range(c), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title or "confusion matrix", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall share")
    return _save(fig, path)


def plot_robustness(results: dict, path, metric: str | None = None) -> Path:
    """Grouped bars: one group per condition, one bar per head, with 95% intervals; n/a where a
    head's modality is removed. metric: UA (classes) or mean_ccc (regression) by default."""
    plt = _pyplot()
    metric = metric or ("mean_ccc" if results["task"] == "regression" else "UA")
    conditions = list(results["conditions"])
    heads = ("fused", "audio", "visual")
    width = 0.8 / len(heads)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(conditions) + 2), 3.6))
    for k, head in enumerate(heads):
        xs, ys, errs = [], [], [[], []]
        for i, cond in enumerate(conditions):
            scores = results["conditions"][cond][head]
            x = i + (k - 1) * width
            value = scores.get(metric)
            if value is None:
                ax.text(x, 0.01, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, color="grey")
                continue
            lo, hi = ((scores.get("ci95") or {}).get(metric) or [None, None])
            xs.append(x)
            ys.append(value)
            errs[0].append(value - lo if lo is not None else 0)
            errs[1].append(hi - value if hi is not None else 0)
        ax.bar(xs, ys, width, yerr=errs, capsize=2, label=head, color=HEAD_COLOURS[head])
    if results["task"] != "regression" and metric in ("UA", "WA", "macro_f1"):
        ax.axhline(1 / len(results["labels"]), ls="--", lw=1, color="grey", label="chance")
    ax.set_xticks(range(len(conditions)), conditions, rotation=20, ha="right")
    ax.set_ylabel(metric)
    values = [s[h].get(metric) for s in results["conditions"].values() for h in heads]
    ax.set_ylim(min([0.0] + [v - 0.1 for v in values if v is not None]), 1)
    ax.set_title(f"{metric} per condition and head (95% bootstrap intervals)", fontsize=9)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def plot_embeddings(points: np.ndarray, labels: Sequence[str], speakers: Sequence[str], path, title: str = "") -> Path:
    """Two panels of the same 2-D points (n, 2): coloured by label and by speaker."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, values, name in ((axes[0], labels, "label"), (axes[1], speakers, "speaker")):
        values = np.asarray([str(v) for v in values])
        groups = sorted(set(values.tolist()))
        cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
        for g_i, g in enumerate(groups):
            keep = values == g
            ax.scatter(points[keep, 0], points[keep, 1], s=10, color=cmap(g_i % cmap.N), label=g)
        ax.set_title(f"coloured by {name}", fontsize=9)
        if len(groups) <= 20:
            ax.legend(fontsize=7, markerscale=1.5, loc="best")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_saliency(tracks: dict[str, tuple[np.ndarray, np.ndarray]], path, title: str = "") -> Path:
    """One row per modality: saliency (t,) against time in seconds (t,)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(tracks), 1, figsize=(8, 1.8 * len(tracks) + 0.6), sharex=True, squeeze=False)
    for ax, (name, (times, values)) in zip(axes[:, 0], tracks.items()):
        ax.fill_between(times, values, step="mid", alpha=0.6, color=HEAD_COLOURS.get(name, "#4c72b0"))
        ax.set_ylabel(f"{name}\nsaliency", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_timeline(result: dict[str, Any], path) -> str:
    """Line per class (or attribute) over time; where a modality drops out (a timeline entry that did
    not use it): grey bands for no face, hatched ones for no audio, both in the legend. Returns the path."""
    plt = _pyplot()
    entries = [e for e in result["timeline"] if e["scores"] is not None]
    names = list(entries[0]["scores"]) if entries else list(result.get("scores") or {})
    fig, ax = plt.subplots(figsize=(8, 3.2))
    bands = {"visual": dict(color="0.88", lw=0, label="no face"),
             "audio": dict(facecolor="none", edgecolor="tab:red", hatch="///", lw=0, alpha=0.45, label="no audio")}
    for modality, style in bands.items():
        labelled = False
        for e in result["timeline"]:
            if modality not in e["modalities"]:
                ax.axvspan(e["start"], e["end"], **{**style, "label": None if labelled else style["label"]})
                labelled = True
    mids = np.array([(e["start"] + e["end"]) / 2 for e in entries])
    for name in names:
        ax.plot(mids, [e["scores"][name] for e in entries], marker="o", ms=3, label=name)
    regression = result.get("task") == "regression"
    ax.set_xlabel("time (s)")
    ax.set_ylabel("value" if regression else "probability")
    if not regression:
        ax.set_ylim(0, 1)
    ax.set_xlim(0, max(result.get("duration") or 0, mids.max() if len(mids) else 1))
    title = f"{Path(result['file']).name}: {result['label'] or ''} ({'+'.join(result['modalities']) or 'no input'})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(names), 4), loc="upper right")
    fig.tight_layout()
    return str(_save(fig, path, dpi=100, bbox_inches=None))

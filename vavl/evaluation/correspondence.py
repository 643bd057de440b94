"""Audio-visual correspondence data and metrics: per-second pooling of cached frame features,
matched / mismatched pairs, ROC-AUC, accuracy and recall@k.

Negatives are of two kinds: "shift" (the clip's own audio rolled in time by 1 s or more, so
only timing gives it away) and "swap" (the audio of another clip).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..data.collate import pad_frames
from ..core.errors import DataError

KINDS = ("shift", "swap")


@dataclass
class ClipSeconds:
    """One clip as per-second features of both modalities, trimmed to the same number of seconds."""

    id: str
    audio: torch.Tensor   # (t, da)
    visual: torch.Tensor  # (t, dv)

    @property
    def seconds(self) -> int:
        return self.audio.shape[0]


@dataclass
class Pair:
    clip: str
    audio: torch.Tensor
    visual: torch.Tensor
    label: int   # 1 matched, 0 mismatched
    kind: str    # "match", "shift" or "swap"


def pool_seconds(frames: torch.Tensor, frame_rate: float, window: float = 1.0) -> torch.Tensor:
    """(t, d) frames at `frame_rate` -> (n, 2d): mean and standard deviation over each `window`
    seconds. n = round(t / frames per window), at least 1; the last window takes the rest."""
    if frames.dim() != 2 or frames.shape[0] == 0:
        raise ValueError(f"pool_seconds needs (t > 0, d) frames, got {tuple(frames.shape)}")
    per = frame_rate * window
    n = max(1, round(frames.shape[0] / per))
    bounds = [min(round(i * per), frames.shape[0]) for i in range(n)] + [frames.shape[0]]
    rows = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        chunk = frames[lo:max(hi, lo + 1)].float()
        rows.append(torch.cat([chunk.mean(0), chunk.std(0, unbiased=False)]))
    return torch.stack(rows)


def clip_seconds(clip_id: str, audio: torch.Tensor, visual: torch.Tensor, audio_rate: float, visual_rate: float,
                 window: float = 1.0) -> ClipSeconds:
    """Pool both modalities of a clip into `window`-second rows and keep the seconds both have."""
    a, v = pool_seconds(audio, audio_rate, window), pool_seconds(visual, visual_rate, window)
    t = min(a.shape[0], v.shape[0])
    return ClipSeconds(clip_id, a[:t], v[:t])


def frame_rates(meta: dict, settings: dict, duration: float | None, frames: tuple[int, int],
                override: tuple[float | None, float | None] = (None, None)) -> tuple[float, float]:
    """(audio, visual) frames per second of a cached clip: given on the command line, else from the
    clip's metadata or the cache settings (`<modality>_frame_rate`; for video the processor's
    `fps` that `vavl extract` records), else frames / duration."""
    rates = []
    for i, m in enumerate(("audio", "visual")):
        rate = override[i] or meta.get(f"{m}_frame_rate") or settings.get(f"{m}_frame_rate")
        if rate is None and m == "visual":
            rate = meta.get("fps") or settings.get("fps") or (settings.get("processor") or {}).get("fps")
        if rate is None and duration:
            rate = frames[i] / duration
        if not rate:
            raise DataError(f"cannot tell the {m} frame rate of the cached clips (no {m}_frame_rate or duration in "
                            f"their metadata); give it with --{m}-rate")
        rates.append(float(rate))
    return rates[0], rates[1]


# ---- pairs ---------------------------------------------------------------------------------------
def shifted(audio: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The same audio rolled in time by 1 .. t-1 seconds (needs t >= 2)."""
    return torch.roll(audio, int(rng.integers(1, audio.shape[0])), dims=0)


def build_pairs(clips: list[ClipSeconds], rng: np.random.Generator, negatives: str = "each",
                kinds: tuple[str, ...] = KINDS) -> list[Pair]:
    """For every clip: its matched pair, and mismatched ones — one of each kind in `kinds`
    (negatives="each", for evaluation) or one of a random kind (negatives="one", balanced
    classes for training). A clip shorter than 2 s has no shift negative; swaps need 2 clips."""
    if negatives not in ("each", "one"):
        raise ValueError(f"negatives={negatives!r}: use 'each' or 'one'")
    pairs = []
    for i, clip in enumerate(clips):
        pairs.append(Pair(clip.id, clip.audio, clip.visual, 1, "match"))
        possible = [k for k in kinds if (k == "shift" and clip.seconds >= 2) or (k == "swap" and len(clips) > 1)]
        if negatives == "one" and possible:
            possible = [possible[int(rng.integers(len(possible)))]]
        for kind in possible:
            if kind == "shift":
                audio = shifted(clip.audio, rng)
            else:
                j = int(rng.integers(len(clips) - 1))
                audio = clips[j + (j >= i)].audio
            pairs.append(Pair(clip.id, audio, clip.visual, 0, kind))
    return pairs


def collate_pairs(pairs: list[Pair]) -> dict[str, torch.Tensor]:
    audio, audio_mask = pad_frames([p.audio for p in pairs])
    visual, visual_mask = pad_frames([p.visual for p in pairs])
    return {"audio_features": audio, "audio_mask": audio_mask, "visual_features": visual, "visual_mask": visual_mask,
            "labels": torch.tensor([float(p.label) for p in pairs])}


# ---- metrics -------------------------------------------------------------------------------------
def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (probability a random positive outscores a random negative)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return math.nan
    return float(roc_auc_score(labels, np.asarray(scores)))


def recall_at_k(similarity: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """similarity (n, n): row i = one video against every audio, the true audio on the diagonal.
    recall@k = share of videos whose own audio ranks in the top k (ties count against it)."""
    true = similarity.diagonal().unsqueeze(1)
    rank = (similarity >= true).sum(1)  # 1 = best; a tie with another audio counts as losing
    return {f"recall@{k}": float((rank <= k).float().mean()) for k in ks}


def pair_metrics(logits, labels, kinds) -> dict[str, float]:
    """ROC-AUC overall and per negative kind, accuracy and balanced accuracy at logit 0."""
    logits, labels, kinds = np.asarray(logits, dtype=float), np.asarray(labels), np.asarray(kinds)
    pred = (logits > 0).astype(int)
    out = {"roc_auc": roc_auc(logits, labels), "accuracy": float((pred == labels).mean()),
           "balanced_accuracy": float(np.mean([(pred[labels == c] == c).mean() for c in (0, 1) if (labels == c).any()])),
           "pairs": int(len(labels)), "positives": int(labels.sum())}
    for kind in KINDS:
        keep = (kinds == "match") | (kinds == kind)
        if (kinds == kind).any():
            out[f"roc_auc_{kind}"] = roc_auc(logits[keep], labels[keep])
    return out


def plot_roc(logits, labels, kinds, path) -> None:
    """ROC curves (all negatives, and each kind) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    logits, labels, kinds = np.asarray(logits, dtype=float), np.asarray(labels), np.asarray(kinds)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, keep in [("all", np.ones_like(labels, dtype=bool))] + [(k, (kinds == "match") | (kinds == k)) for k in KINDS]:
        if labels[keep].min() == labels[keep].max():
            continue
        fpr, tpr, _ = roc_curve(labels[keep], logits[keep])
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(logits[keep], labels[keep]):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="audio-visual correspondence")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

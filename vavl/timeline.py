"""Plotting one prediction's timeline (scores per second) with matplotlib."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def plot_timeline(result: dict[str, Any], path: str | os.PathLike) -> str:
    """Line per class (or attribute) over time; grey bands where no face was used. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in result["timeline"] if e["scores"] is not None]
    names = list(entries[0]["scores"]) if entries else list(result.get("scores") or {})
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for e in result["timeline"]:
        if "visual" not in e["modalities"]:
            ax.axvspan(e["start"], e["end"], color="0.9", lw=0)
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
    ax.set_title(title + "  — grey: no face", fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(names), 4), loc="upper right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return str(path)

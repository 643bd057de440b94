"""Report files of a missing-modality evaluation (the dict vavl.evaluation.scoring.evaluate returns):
metrics.json, report.md, robustness.png and one confusion matrix per condition (classes)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import metrics as M



def write_report(results: dict, out_dir: str | os.PathLike) -> Path:
    """metrics.json, report.md, robustness.png and confusion_<condition>.png (classes) into out_dir."""
    from .plots import plot_confusion, plot_robustness

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "metrics.json", json.dumps(results, indent=2))
    _atomic_write(out / "report.md", markdown_report(results))
    plot_robustness(results, out / "robustness.png")
    if results["task"] != "regression":
        for name, heads in results["conditions"].items():
            cm = heads["fused"].get("confusion_matrix")
            if cm is not None:
                plot_confusion(np.asarray(cm), results["labels"], out / f"confusion_{safe_name(name)}.png",
                               title=f"fused head, condition {name}")
    return out


def safe_name(condition: str) -> str:
    return condition.replace(":", "_")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(value, ci=None, percent: bool = True) -> str:
    """A metric for the tables: ×100 with one decimal (percent) or three decimals; "—" when undefined."""
    if value is None:
        return "—"
    scale, spec = (100, ".1f") if percent else (1, ".3f")
    text = f"{scale * value:{spec}}"
    if ci and None not in ci:
        text += f" [{scale * ci[0]:{spec}}, {scale * ci[1]:{spec}}]"
    return text


def markdown_report(results: dict) -> str:
    """The tables of report.md: one row per condition and head, then the per-speaker breakdown."""
    lines = ["# Missing-modality evaluation", ""]
    for key in ("model", "manifest", "protocol", "fold", "split", "source"):
        if results.get(key) is not None:
            lines.append(f"- {key}: `{results[key]}`")
    data = results.get("data") or {}
    if data:
        what = "**synthetic clips** (vavl.data.synthetic), not real recordings" if data.get("synthetic") else \
            f"`{data.get('corpus') or 'a custom manifest'}`"
        lines.append(f"- scored on: {what}, label field `{data.get('label_field')}`")
    if results.get("model_provenance"):
        from ..models.provenance import provenance_lines

        lines += provenance_lines(results["model_provenance"])
    boot = results["bootstrap"]
    lines += [f"- clips: {results['n_samples']}, task: {results['task']}, labels: {', '.join(results['labels'])}",
              f"- intervals: 95% percentile bootstrap, {boot['resamples']} resamples of {boot.get('unit', 'clip')}s"
              + (f" (at least {boot['min_clusters']} speakers, else clips, marked †)"
                 if boot.get("unit") == "speaker" and boot.get("min_clusters") else ""), ""]
    flagged: list[str] = []
    regression = results["task"] == "regression"
    attrs = results["labels"]
    if regression:
        lines += ["Per attribute: CCC / Pearson r / RMSE; mean CCC with its 95% interval.", "",
                  "| condition | head | " + " | ".join(attrs) + " | mean CCC [95% CI] | n |",
                  "|---|---|" + "---|" * (len(attrs) + 2)]
    else:
        lines += ["All numbers ×100; UA = mean per-class recall, WA = accuracy; UA with its 95% interval.", "",
                  "| condition | head | UA [95% CI] | WA | macro-F1 | micro-F1 | n |", "|---|---|---|---|---|---|---|"]
    for cond, heads in results["conditions"].items():
        for head, s in heads.items():
            ci = s.get("ci95") or {}
            mark = " †" if s.get("ci_note") else ""
            if mark:
                flagged.append(f"- † `{cond}` / {head}: {s['ci_note']}")
            if regression:
                cells = [" / ".join(_fmt(s[a][k], percent=False) for k in M.REGRESSION_METRICS) if s.get(a) else "—"
                         for a in attrs]
                cells.append(_fmt(s.get("mean_ccc"), ci.get("mean_ccc"), percent=False) + mark)
            else:
                cells = [_fmt(s.get("UA"), ci.get("UA")) + mark] + [_fmt(s.get(k)) for k in ("WA", "macro_f1", "micro_f1")]
            n = s.get("n") if s.get("n") else (s.get("note") or 0)
            lines.append(f"| {cond} | {head} | " + " | ".join(cells) + f" | {n} |")
    if flagged:
        lines += ["", "Intervals that are not speaker intervals:", ""] + flagged
    lines += ["", "Conditions:", ""] + [f"- `{k}`: {v}" for k, v in results["condition_semantics"].items()]
    first = next(iter(results["conditions"]))
    speakers = results["conditions"][first]["fused"].get("per_speaker") or {}
    if speakers:
        key = "mean_ccc" if regression else "UA"
        lines += ["", f"## Per speaker (condition `{first}`, fused head, {key}{'' if regression else ' ×100'})", "",
                  "| speaker | " + key + " | n |", "|---|---|---|"]
        lines += [f"| {spk} | {_fmt(v.get(key), percent=not regression)} | {v['n']} |" for spk, v in speakers.items()]
    return "\n".join(lines) + "\n"

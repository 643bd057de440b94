"""Train and evaluate one config on every VAVL partition (vavl-1 .. vavl-5) and write each partition's
results next to their mean and standard deviation.

    vavl run partitions --config crema_d/vavl_official
    python recipes/partitions.py --config recipes/configs/crema_d/auxformer_official.yaml train.epochs=5
    python recipes/partitions.py --config ... --partitions vavl-1,vavl-3      # a subset

Each partition is one recipes/finetune.py run (its `main`, in this process) with `data.protocol=vavl-k`
and `output_dir=<output_dir>/vavl-k`; the other overrides are passed on unchanged. A partition whose
results.json exists is not trained again; one with checkpoints but no results resumes from its latest
checkpoint. <output_dir>/partitions.json and partitions.md (written atomically after every partition)
hold each partition's test / dev rows and, per row and metric, the mean and the sample standard
deviation (n - 1) over the partitions finished so far. Run by path; the library never imports it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import finetune   # this folder is first on sys.path when run by path or by `vavl run`
from vavl.core.errors import ConfigError, VavlError
from vavl.core.files import atomic_write_text

PARTITIONS = [f"vavl-{k}" for k in range(1, 6)]


def summarize(per_partition: dict[str, dict]) -> dict:
    """{row: {metric: {"mean", "sd", "n"}}} over the partitions' results rows (float metrics only)."""
    rows: dict[str, dict[str, list[float]]] = {}
    for results in per_partition.values():
        for row, metrics in results.items():
            for name, value in metrics.items():
                if isinstance(value, float) and name != "loss":
                    rows.setdefault(row, {}).setdefault(name, []).append(value)
    return {row: {name: {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else None, "n": len(v)}
                  for name, v in metrics.items()} for row, metrics in rows.items()}


def markdown(config: str, per_partition: dict[str, dict], summary: dict) -> str:
    lines = [f"# {config}: {len(per_partition)} partition(s)", "",
             "Mean ± sample standard deviation over the partitions; each partition's own value below it.", ""]
    for row, metrics in summary.items():
        names = list(metrics)
        lines += [f"## {row}", "", "| partition | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for p, results in per_partition.items():
            values = results.get(row, {})
            lines.append(f"| {p} | " + " | ".join(f"{values[n]:.4f}" if isinstance(values.get(n), float) else "–" for n in names) + " |")
        cells = [f"{m['mean']:.4f} ± {m['sd']:.4f}" if m["sd"] is not None else f"{m['mean']:.4f}" for m in metrics.values()]
        lines += ["| mean ± sd | " + " | ".join(cells) + " |", ""]
    return "\n".join(lines)


def run_partitions(config: str | None, overrides: list[str], partitions: list[str]) -> dict:
    if any(o.split("=", 1)[0] in ("data.protocol", "data.fold") for o in overrides):
        raise ConfigError("partitions.py sets data.protocol itself; drop the data.protocol / data.fold override "
                          "(use --partitions to choose them)")
    root = Path(finetune.load_config(config, overrides).output_dir)
    per_partition: dict[str, dict] = {}
    for p in partitions:
        out = root / p
        done = out / "results.json"
        if not done.is_file():
            resume = {"resume": "latest"} if any((out / "checkpoints").glob("*")) else None
            cfg = finetune.load_config(config, [*overrides, f"data.protocol={p}", "data.fold=null", f"output_dir={out}"], resume)
            finetune.main(cfg, config)
            if not done.is_file():
                raise ConfigError(f"{out}: the run wrote no results.json (train.max_steps stops before testing?); "
                                  "the partitions need a full run")
        per_partition[p] = json.loads(done.read_text(encoding="utf-8"))["results"]
        summary = summarize(per_partition)
        report = {"config": config, "partitions": {k: {"output_dir": str(root / k), "results": v} for k, v in per_partition.items()},
                  "summary": summary, "sd": "sample standard deviation (n - 1) over the partitions"}
        atomic_write_text(root / "partitions.json", json.dumps(report, indent=2))
        atomic_write_text(root / "partitions.md", markdown(str(config), per_partition, summary))
    print(markdown(str(config), per_partition, summarize(per_partition)))
    return report


def cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", help="a YAML file under recipes/configs/")
    p.add_argument("--partitions", default=",".join(PARTITIONS), help="comma-separated protocols (default vavl-1..vavl-5)")
    p.add_argument("overrides", nargs="*", help="key=value, passed to every finetune run")
    args = p.parse_args(argv)
    try:
        run_partitions(args.config, args.overrides, [s.strip() for s in args.partitions.split(",") if s.strip()])
    except VavlError as e:
        print(f"partitions.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())

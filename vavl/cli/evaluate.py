"""`vavl evaluate`: one trained model scored under missing / corrupted modality conditions ->
metrics.json, report.md, robustness.png, confusion PNGs.

    vavl evaluate --model DIR --manifest M --protocol vavl-1 --split test --cache CACHE \
        --conditions av,audio,video,drop-frames:0.5,drop-audio:0.3 --out REPORT
    vavl evaluate --model DIR --manifest M --split all ...   # every clip (no protocol: say so)

Conditions: vavl.data.conditions; scoring: vavl.evaluation.scoring; the report: vavl.evaluation.reports. Under
`accelerate launch` the clips are sharded and each is counted once.
"""
from __future__ import annotations

import argparse
import os

from ..core.errors import ConfigError
from ..data.conditions import DEFAULT_CONDITIONS, VALID_CONDITIONS, check_conditions_for_source, parse_conditions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="folder written by save_pretrained (recipes/finetune.py output)")
    parser.add_argument("--manifest", required=True, help="manifest (.jsonl) of the clips to score")
    parser.add_argument("--protocol", default=None, help="fold/split protocol in the manifest, e.g. vavl-1 or speaker-5fold")
    parser.add_argument("--fold", type=int, default=None, help="test fold of a k-fold protocol")
    parser.add_argument("--split", default=None, choices=("train", "dev", "test", "all"),
                        help="split of --protocol to score (default test), or `all`: every clip of the manifest, "
                             "training clips included (no --protocol)")
    parser.add_argument("--cache", default=None, help="feature cache made by `vavl extract` (feature models)")
    parser.add_argument("--conditions", default=DEFAULT_CONDITIONS, help=f"comma-separated; valid: {VALID_CONDITIONS}")
    parser.add_argument("--out", required=True, help="report folder: metrics.json, report.md, robustness.png, confusion_*.png")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (0: none)")
    parser.add_argument("--bootstrap-unit", choices=("speaker", "clip"), default="speaker",
                        help="what the intervals resample: speakers, as clusters (default; speaker-independent test sets), "
                             "or clips")
    parser.add_argument("--seed", type=int, default=0, help="seed of the frame dropping / noise / occlusion and the bootstrap")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (single process; accelerate launch picks its own)")


def run(args: argparse.Namespace) -> int:
    from ..data import read_manifest
    from ..data.datasets import check_labels, data_source, model_dataset, select_records
    from ..models.loading import load_model
    from ..evaluation.scoring import distributed, evaluate
    from ..evaluation.reports import markdown_report, write_report

    conditions = parse_conditions(args.conditions)          # every check before any model runs
    if args.split == "all" and args.protocol is not None:
        raise ConfigError("--split all scores every clip of the manifest: drop --protocol, or name its split "
                          "(--split train|dev|test)")
    if args.protocol is None and args.split != "all":
        raise ConfigError("give --protocol P (and --split, default test) to score a split, or --split all "
                          "to score every clip of the manifest, training clips included")
    args.split = args.split or "test"
    records = select_records(read_manifest(args.manifest), args.protocol, args.split, args.fold)
    model = load_model(args.model)
    check_labels(model.emotion_config, read_manifest(args.manifest), args.manifest)
    dataset = model_dataset(model, args.model, records, args.cache)
    check_conditions_for_source(conditions, data_source(dataset))
    if not distributed():
        model.to(args.device)
    meta = {"model": str(args.model), "manifest": str(args.manifest), "protocol": args.protocol, "fold": args.fold,
            "split": args.split if args.protocol else "all clips", "source": "feature cache" if args.cache else "raw media"}
    results = evaluate(model, dataset, conditions, batch_size=args.batch_size, bootstrap=args.bootstrap, seed=args.seed, meta=meta,
                       bootstrap_unit=args.bootstrap_unit)
    if int(os.environ.get("RANK", "0")) == 0:
        out = write_report(results, args.out)
        print(markdown_report(results))
        print(f"wrote {out}/metrics.json, report.md, robustness.png")
    return 0

"""`vavl evaluate`: one trained model scored under missing / corrupted modality conditions ->
metrics.json, report.md, robustness.png, confusion PNGs.

    vavl evaluate --model DIR --manifest M --protocol vavl-1 --split test --cache CACHE \
        --conditions av,audio,video,drop-frames:0.5,drop-audio:0.3 --out REPORT
    vavl evaluate --model DIR --manifest M --split all ...   # every clip (no protocol: say so)

Cross-corpus: `--label-map PRESET|FILE` scores a model on another corpus' manifest, its labels
mapped to the model's classes (vavl.data.label_maps); what the map drops is counted, and
metrics.json names the training and test corpora.

Conditions: vavl.data.conditions; scoring: vavl.evaluation.scoring; the report: vavl.evaluation.reports. Under
`accelerate launch` the clips are sharded and each is counted once.
"""
from __future__ import annotations

import argparse
import os

from ..core.errors import ConfigError, DataError
from ..data.conditions import DEFAULT_CONDITIONS, VALID_CONDITIONS, check_conditions_for_source, parse_conditions
from .args import bounded


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
    parser.add_argument("--batch-size", type=bounded(1, 4096, int), default=None,
                        help="clips per forward pass (default 16; a model whose outputs depend on the batch, "
                             "official_batching, takes its recipe's test batch from finetune_config.yaml or needs this)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (0: none)")
    parser.add_argument("--bootstrap-unit", choices=("speaker", "clip"), default="speaker",
                        help="what the intervals resample: speakers, as clusters (default; speaker-independent test sets), "
                             "or clips")
    parser.add_argument("--seed", type=int, default=0, help="seed of the frame dropping / noise / occlusion and the bootstrap")
    parser.add_argument("--label-map", default=None,
                        help="cross-corpus: a preset (e.g. ravdess-to-crema-d) or a JSON / CSV file mapping the manifest's "
                             "labels to the model's classes (null: drop the clip)")
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
    cross = {}
    if args.label_map:
        from ..data.label_maps import apply_label_map, load_label_map

        name, mapping = load_label_map(args.label_map)
        records, dropped = apply_label_map(records, mapping, model.emotion_config.label_names, f"label map {name}")
        if not any(r.get("label") is not None for r in records):
            raise DataError(f"{args.manifest}: no clip keeps a label under the label map {name}")
        cross = {"label_map": name, "dropped_by_label_map": dropped, "dropped_clips": sum(dropped.values()),
                 "train_corpus": train_corpus(args.model),
                 "test_corpus": ", ".join(sorted({str(r.get("corpus") or "unnamed") for r in records}))}
    else:
        check_labels(model.emotion_config, read_manifest(args.manifest), args.manifest)
    args.batch_size = batch_size(args.batch_size, model, args.model)
    dataset = model_dataset(model, args.model, records, args.cache)
    check_conditions_for_source(conditions, data_source(dataset))
    if not distributed():
        model.to(args.device)
    meta = {"model": str(args.model), "manifest": str(args.manifest), "protocol": args.protocol, "fold": args.fold,
            "split": args.split if args.protocol else "all clips", "source": "feature cache" if args.cache else "raw media",
            **cross}
    results = evaluate(model, dataset, conditions, batch_size=args.batch_size, bootstrap=args.bootstrap, seed=args.seed, meta=meta,
                       bootstrap_unit=args.bootstrap_unit)
    if int(os.environ.get("RANK", "0")) == 0:
        out = write_report(results, args.out)
        print(markdown_report(results))
        if cross:
            print(f"label map {cross['label_map']}: {cross['dropped_clips']} clips dropped {cross['dropped_by_label_map']}; "
                  f"trained on {cross['train_corpus'] or 'an unnamed corpus'}, scored on {cross['test_corpus']}")
        print(f"wrote {out}/metrics.json, report.md, robustness.png")
    return 0


def batch_size(given: int | None, model, model_dir) -> int:
    """--batch-size, or its default: 16, except for a model that computes the official padded-batch
    function (official_batching), whose scores change with the batch: there it is the test batch its
    recipe used (finetune_config.yaml in the model folder), and without one the user must name it."""
    if given is not None:
        return given
    if not getattr(model.emotion_config, "official_batching", False):
        return 16
    from pathlib import Path

    import yaml

    path = Path(model_dir) / "finetune_config.yaml"
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable ({e}); give --batch-size") from None
    if isinstance(cfg, dict):
        found = (cfg.get("evaluate") or {}).get("test_batch_size") or (cfg.get("train") or {}).get("eval_batch_size")
        if isinstance(found, int) and found > 0:
            print(f"batch size {found}: this model's outputs depend on the batch (official_batching), and its recipe "
                  f"tested at {found} ({path.name})")
            return found
    raise ConfigError(f"{model_dir}: this model computes the official padded-batch function (official_batching), so "
                      "its scores depend on the batch size and no finetune_config.yaml names one: give --batch-size N "
                      "(the batch its paper tested with)")


def train_corpus(model_dir) -> str | None:
    """The corpus a model folder's card (README.md, written by the finetune recipe) says it was trained on."""
    from pathlib import Path

    import yaml

    card = Path(model_dir) / "README.md"
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    try:
        header = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    datasets = header.get("datasets") if isinstance(header, dict) else None
    return ", ".join(map(str, datasets)) if isinstance(datasets, list) and datasets else None

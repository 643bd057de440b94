"""`vavl analyze`: embedding maps, saliency over time and error summaries of a trained model.

    vavl analyze --model DIR --manifest M --cache CACHE [--protocol P --split test] --out DIR \
        [--embedding pca|tsne] [--source fused|audio|visual] [--clip ID] [--saliency gradient|occlusion]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import ConfigError
from ..evaluation.analysis import SOURCES
from .args import bounded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="folder written by save_pretrained")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--cache", default=None, help="feature cache (needed for saliency)")
    parser.add_argument("--protocol", default=None)
    parser.add_argument("--fold", type=int, default=None)
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"))
    parser.add_argument("--condition", default="av", help="condition the clips are run under (see vavl evaluate)")
    parser.add_argument("--out", required=True, help="folder for the figures and summaries")
    parser.add_argument("--embedding", default="pca", choices=("pca", "tsne", "none"))
    parser.add_argument("--source", default=None, choices=SOURCES,
                        help="which pooled representation to plot (default: fused, or the one a unimodal model has)")
    parser.add_argument("--clip", default=None, help="clip id for the saliency plot (default: the first clip)")
    parser.add_argument("--saliency", default="gradient", choices=("gradient", "occlusion", "none"))
    parser.add_argument("--batch-size", type=bounded(1, 4096, int), default=16)


def run(args: argparse.Namespace) -> int:
    from ..data import read_manifest
    from ..data.conditions import parse_condition
    from ..data.datasets import check_labels, model_dataset, select_records
    from ..evaluation.analysis import embedding_map, error_markdown, error_summary, frame_times, saliency_over_time
    from ..evaluation.plots import plot_saliency
    from ..evaluation.scoring import predict_dataset
    from ..models.loading import load_model

    condition = parse_condition(args.condition)
    records = select_records(read_manifest(args.manifest), args.protocol, args.split, args.fold)
    if args.clip is not None and args.clip not in {r["id"] for r in records}:
        raise ConfigError(f"clip {args.clip!r} is not among the {len(records)} clips chosen from {args.manifest}")
    if args.saliency != "none" and args.cache is None:
        raise ConfigError("saliency needs encoder features: give --cache, or --saliency none")
    model = load_model(args.model)
    config = model.emotion_config
    check_labels(config, read_manifest(args.manifest), args.manifest)
    dataset = model_dataset(model, args.model, records, args.cache)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pred = predict_dataset(model, dataset, condition, batch_size=args.batch_size, embeddings=True)
    written = []
    if args.embedding != "none":
        source = args.source or next((s for s in SOURCES if f"{s}_embedding" in pred.embeddings), "fused")
        path = out / f"embedding_{source}.png"
        embedding_map(pred, config.label_names, path, source, args.embedding, config.task == "regression")
        written.append(path.name)
    if config.task != "regression":
        summary = error_summary(pred, config.label_names)
        (out / "errors.json").write_text(json.dumps(summary, indent=2))
        (out / "errors.md").write_text(error_markdown(summary))
        written += ["errors.md", "errors.json"]
        print(error_markdown(summary))
    if args.saliency != "none":
        clip = args.clip or dataset.records[0]["id"]
        index = [r["id"] for r in dataset.records].index(clip)
        sample = dataset[index]
        duration = dataset.cache.read(clip)["meta"].get("duration")
        sal = saliency_over_time(model, sample, args.saliency)
        tracks = {m: (frame_times(len(sal[m]), duration), sal[m]) for m in ("audio", "visual") if sal[m] is not None}
        target = config.label_names[sal["target"]]
        name = f"saliency_{clip}"
        plot_saliency(tracks, out / f"{name}.png", title=f"{clip}: {args.saliency} saliency for '{target}'")
        (out / f"{name}.json").write_text(json.dumps({"clip": clip, "target": target, "method": args.saliency,
                                                      **{m: {"times": t.tolist(), "saliency": s.tolist()} for m, (t, s) in tracks.items()}}))
        written += [f"{name}.png", f"{name}.json"]
    print(f"wrote {', '.join(written)} to {out}")
    return 0

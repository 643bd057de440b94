"""`vavl demo`: synthetic CREMA-D-layout corpus -> manifest -> features -> fine-tuned AuxFormer ->
missing-modality report -> one prediction, in a few minutes on a CPU.

The corpus (vavl.data.synthetic) puts the emotion in both modalities (audio: pitch, loudness,
syllable rate; video: face tint, size, motion). Features come from small hand-crafted encoders
that keep those cues: 40 MFCCs per 10 ms for audio, 32x32 RGB MTCNN face crops for video
("mfcc" and "face-rgb" in the encoder registry; no downloads). Training is recipes/finetune.py
itself, run by path as `vavl run finetune` runs it (from a checkout or an installed wheel).

Leaves in DIR: corpus/, manifest.jsonl, features/, finetune/ (the recipe's output folder),
model/ (a copy of the recipe's best model: the fusion model with the encoders that made the
features, loadable with AutoModel after `import vavl`, and usable by `vavl predict` as it is), report/ (metrics.json, report.md, confusion and robustness PNGs).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..core.errors import ConfigError

AUDIO_ENCODER, VISUAL_ENCODER = "mfcc", "face-rgb"
SIZES = {  # n_speakers, clips per class and speaker, epochs
    "default": (10, 2, 20),       # 120 clips
    "small": (5, 2, 20),          # 60 clips
}


def demo(out: str | Path = "demo-out", size: str = "default", seed: int = 0, progress: bool = True) -> dict:
    """Run every step; returns the summary that is printed at the end."""
    import torch
    import yaml

    import vavl
    from ..data import read_manifest, split_records
    from ..data.extract import extract
    from ..data.prepare import prepare
    from ..data.synthetic import make_corpus
    from ..evaluation.reports import write_report
    from ..models.loading import load_model
    from .run import run_recipe

    if size not in SIZES:
        raise ConfigError(f"--size {size!r} is not one of {sorted(SIZES)}")
    n_speakers, per_class, epochs = SIZES[size]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times = {}

    def step(name):
        times[name] = time.perf_counter()
        print(f"[vavl demo] {name}", flush=True)

    step("corpus")
    corpus = out / "corpus"
    if not (corpus / "SentenceFilenames.csv").is_file():
        make_corpus("crema-d", corpus, n_speakers=n_speakers, clips_per_class=per_class, duration=1.5,
                    size=(128, 96), fps=15.0, signal="both", seed=seed)
    step("prepare")
    manifest = out / "manifest.jsonl"
    prepare("crema-d", corpus, manifest, label="intended")
    step("extract")
    extract(manifest, out / "features", audio_encoder=AUDIO_ENCODER, visual_encoder=VISUAL_ENCODER, fps=5.0,
            batch_size=8, max_side=160, progress=progress)

    step("fine-tune")
    config = {
        "seed": seed, "output_dir": str(out / "finetune"),
        "model": {"name": "auxformer_w2v2l_effb2.crema_d",
                  "config": {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "aux_repeats": 1, "embed_dropout": 0.1}},
        "data": {"manifest": str(manifest), "cache": str(out / "features"), "protocol": "speaker-5fold", "fold": 0},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 2e-3, "warmup_ratio": 0.1, "metric": "UA",
                  "modality_dropout": {"audio": 0.2, "visual": 0.2}},
        "log": {"wandb": False, "progress": progress, "every": 5},
        "evaluate": {"conditions": ["av", "audio", "video"], "bootstrap": 200},
    }
    config_path = out / "finetune.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # a model this small gains nothing from threads, and loses a lot on a busy CPU
    try:
        code = run_recipe("finetune", ["--config", str(config_path)])
    finally:
        torch.set_num_threads(threads)
    if code:
        raise ConfigError(f"the fine-tune recipe stopped (exit code {code}); its config is {config_path}")
    trained = json.loads((out / "finetune" / "results.json").read_text())   # what the recipe measured

    step("report")                    # the recipe scored the test split with vavl.evaluation.scoring, as `vavl evaluate` does
    meta = {"model": str(out / "model"), "manifest": str(manifest), "protocol": "speaker-5fold", "fold": 0,
            "split": "test", "source": "feature cache"}
    results = {**meta, **trained["metrics"]["test"]}
    write_report(results, out / "report")
    test = split_records(read_manifest(manifest), "speaker-5fold", 0)["test"]

    step("save model")   # the recipe's best-model folder already holds the mfcc / face-rgb encoders: a copy
    import shutil

    (out / "model").mkdir(exist_ok=True)
    for f in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        shutil.copy2(out / "finetune" / f, out / "model" / f)
    load_model(str(out / "model"), media=True)   # loads, takes media files, its encoders are those of the cache

    step("predict")
    clip = test[0]
    prediction = vavl.predict(clip["video"], model=str(out / "model"))
    times["end"] = time.perf_counter()

    conds = results["conditions"]
    summary = {
        "output": str(out), "clips": len(read_manifest(manifest)), "test_clips": len(test),
        "labels": results["labels"], "chance_UA": 1 / len(results["labels"]),
        "UA": {c: conds[c]["fused"]["UA"] for c in conds},
        "prediction": {"clip": clip["id"], "gold": clip["label"], "predicted": _top(prediction)},
        "seconds": {name: round(t1 - t0, 1) for (name, t0), t1 in zip(list(times.items())[:-1], list(times.values())[1:])},
        "best_dev_UA": trained["dev_best"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(format_summary(summary))
    return summary


def _top(prediction) -> str:
    """The predicted class from whatever vavl.predict returns (dict / object with label or scores)."""
    if isinstance(prediction, list) and prediction:
        prediction = prediction[0]
    for key in ("label", "emotion", "prediction"):
        value = prediction.get(key) if isinstance(prediction, dict) else getattr(prediction, key, None)
        if isinstance(value, str):
            return value
    scores = prediction.get("scores") if isinstance(prediction, dict) else getattr(prediction, "scores", None)
    if isinstance(scores, dict) and scores:
        return max(scores, key=scores.get)
    return str(prediction)


def format_summary(s: dict) -> str:
    rows = [f"vavl demo: {s['clips']} synthetic CREMA-D-layout clips, test = {s['test_clips']} clips of unseen speakers",
            f"{'condition':<12} {'UA (fused head)':>16}   chance {100 * s['chance_UA']:.1f}"]
    rows += [f"{c:<12} {100 * v:>15.1f}%" for c, v in s["UA"].items()]
    p = s["prediction"]
    rows.append(f"predict {p['clip']}: {p['predicted']} (gold {p['gold']})")
    rows.append("time: " + ", ".join(f"{k} {v}s" for k, v in s["seconds"].items()) + f"; total {sum(s['seconds'].values()):.0f}s")
    rows.append(f"files: {s['output']}/manifest.jsonl, model/, report/metrics.json, report/robustness.png, report/confusion_av.png")
    return "\n".join(rows)


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    parser.add_argument("--size", default="default", choices=sorted(SIZES),
                        help="corpus size: default (120 clips) or small (60 clips, for tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    demo(args.out, size=args.size, seed=args.seed, progress=not args.no_progress)
    return 0

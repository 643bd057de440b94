"""Missing-modality evaluation on a synthetic corpus whose label lives in the audio only.

    python recipes/benchmarks/missing_modality_synthetic.py [--out recipes/benchmarks/results/missing_modality_synthetic.json]

Steps: vavl.data.synthetic (CREMA-D layout, signal="audio": the video shows a random class) ->
prepare -> extract ("mfcc" audio, "face-rgb" MTCNN face crops, 5 fps) -> train a small early-fusion
model on the train split of speaker-5fold fold 0 -> vavl.evaluation.scoring on the test split, twice:
on cached features (av, audio, video, drop-frames, drop-audio) and on raw media through the same
fusion model with its encoders in front (av, noise-snr, occlude-face). Expected: audio-only stays
high, video-only falls to chance (1/6). Writes the scores, clip counts and wall times as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "missing_modality_synthetic.json"
FEATURE_CONDITIONS = "av,audio,video,drop-frames:0.5,drop-audio:0.5"
RAW_CONDITIONS = "av,audio,video,noise-snr:0,occlude-face:0.5"


def train(model, dataset, epochs: int, seed: int) -> None:
    from vavl.data import collate

    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=True, collate_fn=collate)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    model.train()
    for _ in range(epochs):
        for batch in loader:
            loss = model(audio_features=batch["audio_features"], audio_mask=batch["audio_mask"],
                         visual_features=batch["visual_features"], visual_mask=batch["visual_mask"], labels=batch["labels"]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--work", default=None, help="working folder (default: a temp dir)")
    parser.add_argument("--speakers", type=int, default=5)
    parser.add_argument("--clips-per-class", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import vavl
    from vavl.data import read_manifest, split_records
    from vavl.data.cache import FeatureCache, FeatureDataset
    from vavl.data.extract import extract
    from vavl.data.prepare import prepare
    from vavl.data.synthetic import make_corpus
    from vavl.data.datasets import RawClipDataset
    from vavl.evaluation.scoring import evaluate
    from vavl.evaluation.reports import write_report
    from vavl.models.with_encoders import AudioVisualModel

    work = Path(args.work or tempfile.mkdtemp(prefix="vavl-mm-"))
    seconds = {}
    t = time.perf_counter()
    make_corpus("crema-d", work / "corpus", n_speakers=args.speakers, clips_per_class=args.clips_per_class, duration=1.5,
                size=(128, 96), fps=15.0, signal="audio", seed=args.seed)
    prepare("crema-d", work / "corpus", work / "manifest.jsonl", label="intended")
    seconds["corpus+prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    extract(work / "manifest.jsonl", work / "features", audio_encoder="mfcc", visual_encoder="face-rgb", fps=5.0,
            batch_size=8, max_side=160, progress=False)
    seconds["extract"] = time.perf_counter() - t
    records = read_manifest(work / "manifest.jsonl")
    split = split_records(records, "speaker-5fold", 0)
    cache = FeatureCache(work / "features")
    names = sorted({r["label"] for r in records if r.get("label")})
    model = vavl.create_model("early_fusion_w2v2l_effb2.crema_d", audio_dim=40, visual_dim=3 * 32 * 32, hidden_size=32,
                              num_layers=1, num_attention_heads=4, id2label=dict(enumerate(names)))
    t = time.perf_counter()
    train(model, FeatureDataset(cache, split["train"] + split["dev"], model.config), args.epochs, args.seed)
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    feats = evaluate(model, FeatureDataset(cache, split["test"], model.config), FEATURE_CONDITIONS, bootstrap=1000,
                     seed=args.seed, progress=False, meta={"source": "feature cache", "split": "speaker-5fold fold 0 test"})
    seconds["evaluate features (5 conditions)"] = time.perf_counter() - t
    write_report(feats, work / "report_features")
    full = AudioVisualModel.from_parts(model, audio_encoder="mfcc", visual_encoder="face-rgb", processor={"fps": 5.0, "max_side": 160})
    t = time.perf_counter()
    raw = evaluate(full, RawClipDataset(split["test"], full.processor, model.config), RAW_CONDITIONS, bootstrap=1000,
                   seed=args.seed, progress=False, meta={"source": "raw media", "split": "speaker-5fold fold 0 test"})
    seconds["evaluate raw media (5 conditions)"] = time.perf_counter() - t
    write_report(raw, work / "report_raw")

    def ua(res):
        return {c: {h: res["conditions"][c][h]["UA"] for h in ("fused", "audio", "visual")} for c in res["conditions"]}

    result = {
        "what": "UA per condition and head of a small early-fusion model on a synthetic CREMA-D-layout corpus whose label "
                "is in the audio only (video shows a random class); speaker-5fold fold 0, test split",
        "clips": len(records), "train_clips": len(split["train"]) + len(split["dev"]), "test_clips": len(split["test"]),
        "classes": names, "chance_UA": 1 / len(names),
        "UA_features": ua(feats), "UA_raw_media": ua(raw),
        "UA_95ci_features_fused": {c: feats["conditions"][c]["fused"]["ci95"] and feats["conditions"][c]["fused"]["ci95"]["UA"]
                                   for c in feats["conditions"]},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "reports": str(work),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "python": platform.python_version(), "note": "2-core machine shared with other jobs; one run"},
        "command": "python recipes/benchmarks/missing_modality_synthetic.py",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

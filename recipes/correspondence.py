"""Audio-visual correspondence: train a two-tower model to tell whether audio belongs to a silent
video, on any manifest + feature cache: setup -> train -> evaluate -> save.

    vavl extract data/crema_d/manifest.jsonl --audio-encoder mfcc --visual-encoder optical-flow --out data/crema_d/avc
    python recipes/correspondence.py --manifest data/crema_d/manifest.jsonl --cache data/crema_d/avc --out runs/avc
    python recipes/correspondence.py ... --shuffle-labels        # control: must stay at chance

Cached frames are pooled into 1 s windows (mean + std). Training pairs are drawn afresh every
epoch: each clip's own audio (label 1) and one negative (label 0): its audio rolled by >= 1 s
("shift") or another clip's audio ("swap"). Evaluation on held-out clips (speaker-disjoint
unless --protocol names a split) scores every clip against both kinds of negative and ranks
each video's own audio among all held-out audios. Writes <out>/metrics.json, <out>/roc.png and
<out>/model (load it with transformers.AutoModel.from_pretrained after `import vavl`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import vavl
from vavl.evaluation.correspondence import ClipSeconds, build_pairs, clip_seconds, collate_pairs, frame_rates, pair_metrics, plot_roc, recall_at_k
from vavl.data import read_manifest, split_records
from vavl.core.files import atomic_write_text
from vavl.data.cache import FeatureCache
from vavl.data.collate import pad_frames
from vavl.core.errors import DataError, VavlError

MODEL = "avc_two_tower.generic"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="manifest (.jsonl) of the clips")
    p.add_argument("--cache", required=True, help="feature cache from `vavl extract` with both modalities")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--protocol", help="use this manifest protocol's train / test split (default: hold out 20%% of speakers)")
    p.add_argument("--fold", type=int, help="test fold, for k-fold protocols")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of speakers held out when no --protocol")
    p.add_argument("--window", type=float, default=1.0, help="seconds per pooled window")
    p.add_argument("--audio-rate", type=float, help="audio frames per second (default: from the cache)")
    p.add_argument("--visual-rate", type=float, help="visual frames per second (default: from the cache)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--recall-k", type=int, nargs="+", default=[1, 5, 10])
    p.add_argument("--shuffle-labels", action="store_true", help="control run: train on permuted labels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    return p.parse_args(argv)


# ---- setup ---------------------------------------------------------------------------------------
def split(records: list[dict], args, rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """(train, test): a protocol's split, else held-out speakers (clips when there are < 2 speakers)."""
    if args.protocol:
        parts = split_records(records, args.protocol, args.fold)
        return parts["train"] + parts["dev"], parts["test"]
    speakers = sorted({str(r.get("speaker")) for r in records})
    if len(speakers) >= 2 and all(r.get("speaker") is not None for r in records):
        held = set(rng.permutation(speakers)[: max(1, round(args.test_fraction * len(speakers)))].tolist())
        return [r for r in records if str(r["speaker"]) not in held], [r for r in records if str(r["speaker"]) in held]
    order = rng.permutation(len(records))
    n_test = max(2, round(args.test_fraction * len(records)))
    return [records[i] for i in order[n_test:]], [records[i] for i in order[:n_test]]


def load_clips(cache: FeatureCache, records: list[dict], args) -> list[ClipSeconds]:
    """Per-second features of every clip that has both modalities cached."""
    settings, clips, skipped = cache.settings, [], 0
    for r in tqdm(records, desc="pool", unit="clip", leave=False):
        if not cache.has(r["id"]):
            skipped += 1
            continue
        item = cache.read(r["id"])
        a, v, meta = item["audio_features"], item["visual_features"], item["meta"]
        if a is None or v is None or not len(a) or not len(v):
            skipped += 1
            continue
        rates = frame_rates(meta, settings, meta.get("duration") or r.get("duration"), (len(a), len(v)),
                            (args.audio_rate, args.visual_rate))
        clips.append(clip_seconds(r["id"], a, v, *rates, window=args.window))
    if skipped:
        print(f"{skipped} of {len(records)} clips left out (not cached, or missing a modality)", file=sys.stderr)
    return clips


def setup(args):
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    if not Path(args.cache).is_dir():
        raise DataError(f"{args.cache}: feature cache not found; run `vavl extract {args.manifest} --out {args.cache}`")
    cache, records = FeatureCache(args.cache), read_manifest(args.manifest)
    train_records, test_records = split(records, args, rng)
    train_clips, test_clips = load_clips(cache, train_records, args), load_clips(cache, test_records, args)
    if len(train_clips) < 2 or len(test_clips) < 2:
        raise DataError(f"{args.cache}: need at least 2 training and 2 test clips with both modalities, have "
                        f"{len(train_clips)} and {len(test_clips)}")
    dims = {"audio_dim": train_clips[0].audio.shape[1], "visual_dim": train_clips[0].visual.shape[1]}
    model = vavl.create_model(MODEL, hidden_size=args.hidden_size, embed_dim=args.embed_dim, **dims).to(args.device)
    return model, train_clips, test_clips, rng


# ---- train / evaluate ----------------------------------------------------------------------------
def batches(pairs, size):
    for i in range(0, len(pairs), size):
        yield collate_pairs(pairs[i:i + size])


def train(model, clips: list[ClipSeconds], args, rng: np.random.Generator) -> list[float]:
    """Fresh balanced pairs every epoch; returns the mean loss per epoch."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    history = []
    for _ in (bar := tqdm(range(args.epochs), desc="train", unit="epoch")):
        model.train()
        pairs = build_pairs(clips, rng, negatives="one")
        pairs = [pairs[i] for i in rng.permutation(len(pairs))]
        if args.shuffle_labels:
            for p, label in zip(pairs, rng.permutation([p.label for p in pairs])):
                p.label = int(label)
        losses = []
        for batch in batches(pairs, args.batch_size):
            loss = model(**{k: v.to(args.device) for k, v in batch.items()}).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
        bar.set_postfix(loss=f"{history[-1]:.3f}")
    return history


@torch.no_grad()
def evaluate(model, clips: list[ClipSeconds], args) -> tuple[dict, dict]:
    """Pair metrics (each clip vs. a shift and a swap negative) and retrieval over all clips."""
    model.eval()
    pairs = build_pairs(clips, np.random.default_rng(args.seed + 1), negatives="each")
    logits = torch.cat([model(**{k: v.to(args.device) for k, v in b.items()}).logits.cpu()
                        for b in batches(pairs, args.batch_size)]).tolist()
    labels, kinds = [p.label for p in pairs], [p.kind for p in pairs]
    metrics = pair_metrics(logits, labels, kinds)
    audio, amask = pad_frames([c.audio for c in clips])
    visual, vmask = pad_frames([c.visual for c in clips])
    sim = torch.cat([model.similarity_matrix(audio.to(args.device), amask.to(args.device),
                                             visual[i:i + 256].to(args.device), vmask[i:i + 256].to(args.device)).cpu()
                     for i in range(0, len(clips), 256)])
    ks = [k for k in args.recall_k if k <= len(clips)]
    metrics.update(recall_at_k(sim, ks))
    metrics.update({f"chance_recall@{k}": k / len(clips) for k in ks})
    metrics["retrieval_set"] = len(clips)
    return metrics, {"logits": logits, "labels": labels, "kinds": kinds}


def save(model, args, metrics: dict, scores: dict) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "model")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))   # with the umask's permissions
    plot_roc(scores["logits"], scores["labels"], scores["kinds"], out / "roc.png")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        model, train_clips, test_clips, rng = setup(args)
        history = train(model, train_clips, args, rng)
        test, scores = evaluate(model, test_clips, args)
        train_metrics, _ = evaluate(model, train_clips, args)
    except VavlError as e:
        print(f"correspondence: error: {e}", file=sys.stderr)
        return 2
    metrics = {"test": test, "train": train_metrics, "loss_per_epoch": history,
               "clips": {"train": len(train_clips), "test": len(test_clips)},
               "seconds_per_clip": float(np.mean([c.seconds for c in train_clips + test_clips])),
               "settings": vars(args), "torch": torch.__version__}
    out = save(model, args, metrics, scores)
    print(f"test ROC-AUC {test['roc_auc']:.3f} (shift {test.get('roc_auc_shift', float('nan')):.3f}, "
          f"swap {test.get('roc_auc_swap', float('nan')):.3f}), accuracy {test['accuracy']:.3f}, "
          + ", ".join(f"{k} {v:.3f}" for k, v in test.items() if k.startswith("recall@")) + f" -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

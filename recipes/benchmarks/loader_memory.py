"""Does training-time data loading from a feature cache stay flat in memory as the corpus grows?

    python recipes/benchmarks/loader_memory.py                  # N = 100 and 10 x N = 1000 cached clips
    python recipes/benchmarks/loader_memory.py --clips 300 --workers 2

Writes a cache of N clips with CREMA-D-sized features (2.5 s: wav2vec2-large 125 x 1024 frames,
EfficientNet-B2 13 x 1408 face frames at 5 fps, float32, random values), and another of 10 x N.
Each measurement runs in a fresh subprocess: read the manifest, build `FeatureDataset`, iterate a
shuffled DataLoader (batch 16, `collate`) over one epoch, touching every batch. Peak RSS is
`ru_maxrss` of the process (and of its DataLoader workers, when there are any). The loader reads
each clip lazily (safetensors, memory-mapped, closed after the read), so the peak should not grow
with the number of clips: the check is peak(10 x N) <= 1.2 x peak(N). Median of --runs runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AUDIO, VISUAL = (125, 1024), (13, 1408)


def make_cache(root: Path, n: int) -> Path:
    import torch

    from vavl.data import write_manifest
    from vavl.data.cache import FeatureCache

    cache = FeatureCache(root / "cache")
    g = torch.Generator().manual_seed(n)
    records = []
    for i in range(n):
        clip_id = f"clip{i:06d}"
        cache.write(clip_id, torch.randn(*AUDIO, generator=g), torch.randn(*VISUAL, generator=g), {"frames": VISUAL[0]})
        records.append({"id": clip_id, "speaker": str(i % 91), "label": ["angry", "happy", "sad"][i % 3], "folds": {}})
    write_manifest(records, root / "manifest.jsonl")
    return root


def epoch(root: str, workers: int, batch_size: int) -> dict:
    """Runs in the subprocess: one epoch over the cache, then peak RSS (MiB)."""
    import torch

    from vavl.data import read_manifest
    from vavl.data.cache import FeatureDataset
    from vavl.models.base import EmotionConfig

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    config = EmotionConfig(num_labels=3, id2label={0: "angry", 1: "happy", 2: "sad"}, audio_dim=AUDIO[1],
                           visual_dim=VISUAL[1])
    ds = FeatureDataset(Path(root) / "cache", read_manifest(Path(root) / "manifest.jsonl"), config)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         collate_fn=FeatureDataset.collate)
    t0, total, clips = time.perf_counter(), 0.0, 0
    for batch in loader:
        total += float(batch["audio_features"].sum() + batch["visual_features"].sum())
        clips += len(batch["ids"])
    seconds = time.perf_counter() - t0
    main_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers else 0.0
    return {"clips": clips, "seconds": seconds, "rss_after_imports_mib": base, "peak_rss_mib": main_peak,
            "worker_peak_rss_mib": worker_peak}


def measure(root: Path, workers: int, batch_size: int) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from loader_memory import epoch; "
            f"print(json.dumps(epoch({str(root)!r}, {workers}, {batch_size})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=100, help="N: the small cache; the large one has 10 x N")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "loader_memory.json"))
    args = parser.parse_args()
    import torch

    work = Path(tempfile.mkdtemp(prefix="vavl-loader-mem-"))
    sizes = {"N": args.clips, "10N": 10 * args.clips}
    results = {}
    for label, n in sizes.items():
        root = make_cache(work / label, n)
        runs = [measure(root, args.workers, args.batch_size) for _ in range(args.runs)]
        results[label] = {"clips": n, "cache_mib": sum(p.stat().st_size for p in (root / "cache" / "clips").iterdir()) / 2**20,
                          "runs": runs, "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                          "median_worker_peak_rss_mib": statistics.median(r["worker_peak_rss_mib"] for r in runs),
                          "median_epoch_seconds": statistics.median(r["seconds"] for r in runs)}
    ratio = results["10N"]["median_peak_rss_mib"] / results["N"]["median_peak_rss_mib"]
    worker_ratio = (results["10N"]["median_worker_peak_rss_mib"] / results["N"]["median_worker_peak_rss_mib"]
                    if args.workers else None)
    result = {
        "benchmark": "peak RSS of one training epoch of data loading from a FeatureDataset, N vs 10 x N clips",
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "platform": platform.platform(), "note": "2 shared CPU cores: other jobs ran at the same time"},
        "settings": {"audio_features": AUDIO, "visual_features": VISUAL, "dtype": "float32", "batch_size": args.batch_size,
                     "workers": args.workers, "runs": args.runs, "measured_in": "a fresh subprocess per run (ru_maxrss)"},
        "results": results,
        "peak_rss_ratio_10N_over_N": ratio,
        "worker_peak_rss_ratio_10N_over_N": worker_ratio,
        "within_1_2x": ratio <= 1.2 and (worker_ratio is None or worker_ratio <= 1.2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

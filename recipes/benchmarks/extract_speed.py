"""How fast does `vavl extract` fill a feature cache with full-size encoders?

    python recipes/benchmarks/extract_speed.py                         # CPU, a handful of CREMA-D-shaped clips
    python recipes/benchmarks/extract_speed.py --device cuda --clips 64 --batch-size 16 --precision bf16
    python recipes/benchmarks/extract_speed.py --device cuda --precision bf16-autocast --workers 8 --face-device cpu

Clips: synthetic CREMA-D (vavl.data.synthetic; 480x360 FLV with audio, 16 kHz WAV, 2.5 s, as the
corpus' clips are). Encoders: wav2vec2-large-robust (first 12 layers, as the presets build it) and
EfficientNet-B2 on 260 px face crops, random weights (same architecture and cost as trained ones).
Each run extracts every clip into a fresh cache (`vavl.data.extract.extract`, encoders built once
outside the timing). Reports the median of --runs runs: clips/s, real-time factor (seconds of
compute per second of clip), and the estimated time for CREMA-D's 7,442 clips. A second pass times
the stages (decode, faces, audio encoder, visual encoder) per clip.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CREMA_D_CLIPS = 7442


def stage_times(records, args, audio_encoder, visual_encoder) -> dict:
    """Per-clip medians of each stage, run by hand on the same clips."""
    from vavl.data.extract import ClipLoader, encode_batch
    from vavl.media.processor import AudioVisualProcessor

    processor = AudioVisualProcessor.for_encoders(audio_encoder, visual_encoder, fps=args.fps,
                                                  device=args.face_device or args.device)
    loader = ClipLoader(records, processor, True, True, None)
    times = {"decode": [], "faces": [], "audio_encoder": [], "visual_encoder": []}
    from vavl.data.extract import PRECISIONS

    dtype, autocast = PRECISIONS[args.precision], args.precision == "bf16-autocast"
    for rec in records:
        t0 = time.perf_counter()
        clip, _ = loader.decode(rec)
        t1 = time.perf_counter()
        inputs = processor(clip)
        t2 = time.perf_counter()
        item = [{"inputs": inputs}]
        encode_batch(item, audio_encoder, None, args.device, dtype, autocast)
        _sync(args.device)
        t3 = time.perf_counter()
        encode_batch(item, None, visual_encoder, args.device, dtype, autocast)
        _sync(args.device)
        t4 = time.perf_counter()
        for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[k].append(v)
    return {k: statistics.median(v) for k, v in times.items()}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=6, help="clips to extract (multiples of 6 emotions)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16", "bf16-autocast"), default="fp32")
    parser.add_argument("--face-device", help="where MTCNN runs (default: --device)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--fps", type=float, default=5.0, help="face frames per second (the processor default)")
    parser.add_argument("--audio-encoder", default="wav2vec2-large-robust")
    parser.add_argument("--visual-encoder", default="efficientnet_b2")
    parser.add_argument("--out", default=str(HERE / "results" / "extract_speed.json"))
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device on this machine")

    import vavl.data.extract as ex
    from vavl.data import read_manifest
    from vavl.data.prepare import prepare
    from vavl.data.synthetic import make_corpus
    from vavl.encoders import build_encoder

    work = Path(tempfile.mkdtemp(prefix="vavl-extract-bench-"))
    per_class = max(1, args.clips // 6)
    make_corpus("crema-d", work / "corpus", n_speakers=1, clips_per_class=per_class, duration=2.5, size=(480, 360))
    prepare("crema-d", work / "corpus", work / "m.jsonl", log=open(os.devnull, "w"))
    records = read_manifest(work / "m.jsonl")
    seconds_of_media = 2.5 * len(records)

    dtype = ex.PRECISIONS[args.precision]
    # untrained weights, asked for in words: the same architecture and cost as the pretrained ones, offline
    audio_encoder = build_encoder(args.audio_encoder, pretrained=False).to(args.device, dtype).eval()
    visual_encoder = build_encoder(args.visual_encoder, pretrained=False).to(args.device, dtype).eval()
    runs = []
    for i in range(args.runs + 1):                     # the first run warms up (MTCNN load, allocators)
        t0 = time.perf_counter()
        summary = ex.extract(work / "m.jsonl", work / f"cache{i}", audio_encoder, visual_encoder,
                             fps=args.fps, batch_size=args.batch_size, device=args.device, workers=args.workers,
                             face_device=args.face_device,
                             precision=args.precision, progress=False, log=open(os.devnull, "w"))
        elapsed = time.perf_counter() - t0
        assert summary["cached"] == len(records), summary
        if i:
            runs.append(elapsed)
    stages = stage_times(records, args, audio_encoder, visual_encoder)
    seconds = statistics.median(runs)
    result = {
        "benchmark": "vavl extract throughput, full-size encoders (random weights)",
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "platform": platform.platform(), "processor": platform.processor(),
                    "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"clips": len(records), "clip_seconds": 2.5, "frame_size": [480, 360], "fps": args.fps,
                     "audio_encoder": args.audio_encoder, "visual_encoder": args.visual_encoder,
                     "face_size": visual_encoder.image_size, "batch_size": args.batch_size, "workers": args.workers,
                     "precision": args.precision, "face_device": args.face_device or args.device, "runs": args.runs},
        "runs_seconds": runs,
        "median_seconds": seconds,
        "clips_per_second": len(records) / seconds,
        "real_time_factor": seconds / seconds_of_media,
        "stage_seconds_per_clip_median": stages,
        "estimated_seconds_for_crema_d_7442_clips": CREMA_D_CLIPS * seconds / len(records),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""`vavl extract`: run frozen encoders over a manifest's clips into a feature cache (vavl.data.extract).

    vavl extract --manifest crema_d.jsonl --audio-encoder wav2vec2-large-robust \\
        --visual-encoder efficientnet_b2 --out cache/crema_d [--fps 5] [--batch-size 4]
    accelerate launch --num_processes 2 -m vavl.cli extract ...     # disjoint shards, one cache
"""
from __future__ import annotations

import os

from ..core.errors import DataError
from ..core.jobs import EXIT_CODES, exit_code
from ..data.extract import BF16_TOLERANCE, GPU_FACE_BATCH, extract
from ..data.extract_long import WINDOW_SECONDS
from .args import bounded, positive_float, positive_int


def add_arguments(parser) -> None:
    parser.add_argument("--manifest", required=True, help="manifest from `vavl prepare`")
    parser.add_argument("--out", required=True, help="cache folder (created; re-running resumes)")
    parser.add_argument("--audio-encoder", help="preset name (its pretrained weights), saved encoder folder, or transformers folder")
    parser.add_argument("--visual-encoder", help="preset or timm model name (its pretrained weights), or saved encoder folder")
    parser.add_argument("--random-init", action="store_true",
                        help="named encoders with untrained (random) weights: for benchmarks and tests; cache.json says so")
    parser.add_argument("--fps", type=bounded(0.01, 60, unit=" frames per second"), default=5.0,
                        help="video frames per second fed to the face encoder (at most 60)")
    parser.add_argument("--batch-size", type=bounded(1, 1024, int), default=4, help="clips per encoder forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (under accelerate: each rank's own GPU)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16", "int8", "auto"), default="fp32",
                        help="encoder weights: cast to fp32 / bf16 (conv nets channels-last) / fp16; int8: dynamic "
                             "quantisation of Linear layers (CPU); auto: bf16 on a CPU with AMX / AVX-512 BF16, else "
                             "fp32 (`vavl env` says which); cache.json records it, so caches never mix precisions")
    parser.add_argument("--bf16", action="store_true",
                        help="encoders under bfloat16 autocast, weights kept fp32 (cache.json: precision bf16-autocast); "
                             f"{BF16_TOLERANCE}")
    parser.add_argument("--face-device", help="where MTCNN finds faces (default: --device): cpu runs it in the worker "
                                              "processes, a GPU in this process on the frames of several clips at once")
    parser.add_argument("--face-batch", type=bounded(1, 4096, int), help="frames per MTCNN forward (default 16 on the CPU, "
                                                                  f"{GPU_FACE_BATCH} on a GPU)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes decoding clips (and finding faces, when they run on the CPU); pinned memory on CUDA")
    parser.add_argument("--max-seconds", type=positive_float, help="use at most this many seconds of each clip")
    parser.add_argument("--window", type=bounded(5, 3600, unit=" seconds"), default=WINDOW_SECONDS,
                        help=f"a file longer than this is decoded and encoded this many seconds at a time, so memory "
                             f"does not grow with its length (default {WINDOW_SECONDS:g}; cache.json records it)")
    parser.add_argument("--max-side", type=positive_int, default=640, help="scale video so its longer side is at most this")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.epilog = EXIT_CODES.format(items="clip")


def run(args) -> int:
    from ..core.devices import check_device
    device = check_device(args.device)
    face_device = check_device(args.face_device, "--face-device") if args.face_device else device
    if args.workers < 0:
        raise DataError(f"--workers {args.workers}: give 0 (decode in this process) or more")
    if args.bf16 and args.precision != "fp32":
        raise DataError(f"--bf16 keeps the weights fp32 and autocasts; it does not go with --precision {args.precision}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:   # under accelerate: each rank's own GPU
        device, face_device = (f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if d == "cuda" else d for d in (device, face_device))
    summary = extract(args.manifest, args.out, args.audio_encoder, args.visual_encoder, fps=args.fps,
                      batch_size=args.batch_size, device=device, workers=args.workers, max_seconds=args.max_seconds,
                      max_side=args.max_side, precision="bf16-autocast" if args.bf16 else args.precision,
                      progress=not args.no_progress, random_init=args.random_init, face_device=face_device,
                      face_batch=args.face_batch, window=args.window)
    return exit_code(summary.get("cached", summary["written"]), summary["failed"])

"""How fast is `vavl.predict` on a raw clip with full-size encoders?

    python recipes/benchmarks/predict_speed.py                     # CPU, 2 threads, 3 s 1280x720 30 fps clip, 48 kHz audio
    python recipes/benchmarks/predict_speed.py --bf16              # bfloat16 autocast (AVX512-BF16 CPUs)
    python recipes/benchmarks/predict_speed.py --device cuda --batch 64   # batched clips/s on a GPU
    python recipes/benchmarks/predict_speed.py --audio-encoder whisper-small          # any audio preset
    python recipes/benchmarks/predict_speed.py --visual-encoder videomae-base --fps 8  # any visual preset
    python recipes/benchmarks/predict_speed.py --device cuda --face-device cuda       # MTCNN on the GPU too

The model: AuxFormer on wav2vec2-large-robust (first 12 layers) + EfficientNet-B2 by default, or on
the presets given, random weights (the same architecture and cost as trained ones). The clip:
skimage's astronaut moving over a background, written with PyAV. Reports the median of --runs runs (after one warm-up) in total and per
stage (decode, faces, audio encoder, visual encoder, fusion), and the real-time factor.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
STAGES = ("decode", "faces", "audio_encoder", "visual_encoder", "fusion")
AUDIO, VISUAL = "wav2vec2-large-robust", "efficientnet_b2"


def make_clip(path: Path, seconds: float = 3.0, fps: int = 30, width: int = 1280, height: int = 720) -> Path:
    from PIL import Image
    from skimage.data import astronaut

    from vavl.media import write_clip

    head = np.asarray(Image.fromarray(astronaut()[10:210, 140:310]).resize((255, 300), Image.BILINEAR))
    n = int(seconds * fps)
    frames = np.empty((n, height, width, 3), np.uint8)
    frames[:] = (70, 80, 100)
    for i in range(n):
        x = 300 + int(400 * i / max(n - 1, 1))
        frames[i, 200:500, x:x + 255] = head
    t = np.arange(int(seconds * 48000)) / 48000
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return write_clip(path, frames, fps=fps, audio=np.stack([voice, voice]).astype(np.float32), sample_rate=48000)


def build_model(args):
    import vavl

    model = vavl.create_model("auxformer", audio_encoder=args.audio_encoder, visual_encoder=args.visual_encoder,
                              num_labels=6, pretrained_encoders=False)   # untrained: same cost, no download
    if args.fps:
        model.processor.fps = args.fps
    if args.face_device:   # `vavl predict` finds faces on the processor's device: the CPU unless told otherwise
        import dataclasses

        model.processor = dataclasses.replace(model.processor, device=args.face_device)
    if args.detect_every or args.detect_side:
        face = dict(model.processor.face)
        face.update({k: v for k, v in (("detect_every", args.detect_every), ("detect_side", args.detect_side)) if v})
        model.processor.face = face
    return model.eval()


def cpu_benchmark(args, model, clip) -> dict:
    import vavl

    runs = []
    for i in range(args.runs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        r = vavl.predict(clip, model=model, device=args.device, bf16=args.bf16)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        if i:  # the first run warms up allocators, MTCNN and oneDNN kernels
            runs.append({"wall": {"total": total, **r["timings"]}, "cpu": {"total": cpu, **r["cpu_timings"]}})
        print(f"run {i}: wall {total:.2f} s, cpu {cpu:.2f} s, {r['timings']}", file=sys.stderr)

    def median(kind):
        return {k: round(statistics.median(run[kind][k] for run in runs), 3) for k in ("total", *STAGES)}

    wall, cpu = median("wall"), median("cpu")
    idle = {k: round(v / args.threads, 3) for k, v in cpu.items()}
    return {"median_wall_s": wall, "real_time_factor_wall": round(wall["total"] / args.seconds, 3),
            "median_cpu_s": cpu, "estimated_idle_wall_s": idle,
            "real_time_factor_idle_estimate": round(idle["total"] / args.seconds, 3),
            "note": "CPU seconds / threads estimates the wall time on the same cores when nothing else runs "
                    "(assumes both threads busy); compare with machine.load_average to judge the wall times",
            "runs_wall_s": [round(r["wall"]["total"], 3) for r in runs],
            "face_frames": r["face_frames"], "frames": r["frames"], "modalities": r["modalities"]}


def batch_benchmark(args, model, clip) -> dict:
    """Clips/s for batches: decoding + faces on CPU worker processes, encoders + fusion batched on the device."""
    from torch.utils.data import DataLoader, Dataset

    from vavl.data.collate import pad_frames

    processor = model.processor

    class Clips(Dataset):
        def __len__(self):
            return args.batch * (args.runs + 1)

        def __getitem__(self, i):
            out = processor(str(clip))
            return {"wave": out["input_values"][0], "crops": out["pixel_values"][0] if out["pixel_values"] is not None else None,
                    "mask": out["pixel_mask"][0] if out["pixel_mask"] is not None else None}

    def collate(items):
        wave, wmask = pad_frames([x["wave"][:, None] for x in items])
        t = max(x["crops"].shape[0] if x["crops"] is not None else 1 for x in items)
        crops = torch.zeros(len(items), t, *items[0]["crops"].shape[1:])
        pmask = torch.zeros(len(items), t, dtype=torch.bool)
        for i, x in enumerate(items):
            if x["crops"] is not None:
                crops[i, : len(x["crops"])], pmask[i, : len(x["mask"])] = x["crops"], x["mask"]
        return wave[..., 0], wmask, crops, pmask

    model = model.to(args.device)
    loader = DataLoader(Clips(), batch_size=args.batch, num_workers=args.workers, collate_fn=collate,
                        persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers else None)
    times = []
    with torch.inference_mode(), torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.bf16):
        t0 = time.perf_counter()
        for i, (wave, wmask, crops, pmask) in enumerate(loader):
            out = model(input_values=wave.to(args.device, non_blocking=True), attention_mask=wmask.to(args.device),
                        pixel_values=crops.to(args.device, non_blocking=True), pixel_mask=pmask.to(args.device))
            out.logits.float().softmax(-1).cpu()
            t1 = time.perf_counter()
            if i:
                times.append(t1 - t0)
            t0 = t1
    per_batch = statistics.median(times)
    return {"batch": args.batch, "workers": args.workers, "median_batch_s": round(per_batch, 4),
            "clips_per_s": round(args.batch / per_batch, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--fps", type=float, default=None, help="face frames per second (default: the processor's)")
    p.add_argument("--detect-every", type=int, default=None, help="MTCNN on every n-th frame (default: the processor's)")
    p.add_argument("--detect-side", type=int, default=None, help="MTCNN frame side in pixels (default: the processor's)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--face-device", help="where MTCNN runs (default: the processor's device, the CPU)")
    p.add_argument("--batch", type=int, default=0, help="> 0: batched throughput mode (clips/s)")
    p.add_argument("--workers", type=int, default=8, help="CPU processes decoding clips in batch mode")
    p.add_argument("--audio-encoder", default=AUDIO, help=f"audio encoder preset (default {AUDIO})")
    p.add_argument("--visual-encoder", default=VISUAL, help=f"visual encoder preset (default {VISUAL})")
    p.add_argument("--out", default=str(HERE / "results" / "predict_speed.json"))
    args = p.parse_args()
    from vavl.encoders import list_encoders

    for flag, name, modality in (("--audio-encoder", args.audio_encoder, "audio"), ("--visual-encoder", args.visual_encoder, "visual")):
        if name not in list_encoders(modality=modality):
            p.error(f"{flag} {name}: not a {modality} preset; choose from {', '.join(list_encoders(modality=modality))}")
    torch.set_num_threads(args.threads)
    from vavl.encoders.hf import quiet_hub

    quiet_hub()
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", args.seconds)
        model = build_model(args)
        result = batch_benchmark(args, model, clip) if args.batch else cpu_benchmark(args, model, clip)
    report = {
        "what": f"vavl.predict on a {args.seconds:g} s 1280x720 30 fps mp4 (H.264, AAC 48 kHz stereo) with one moving face",
        "model": f"AuxFormer (official width) on {args.audio_encoder} + {args.visual_encoder} "
                 f"({model.processor.face_size} px crops), random weights",
        "settings": {"device": args.device, "face_device": model.processor.device, "torch_threads": args.threads, "bf16": args.bf16,
                     "processor": {k: v for k, v in model.processor.to_dict().items() if k in ("fps", "face", "max_side", "face_size")},
                     "runs": args.runs, "statistic": "median after one warm-up run"},
        "machine": {"cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "result": result,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    key = f"{args.device}{'_bf16' if args.bf16 else ''}{f'_batch{args.batch}' if args.batch else ''}"
    key += f"_faces_{args.face_device}" if args.face_device else ""
    key += "".join(f"_{name}" for name, default in ((args.audio_encoder, AUDIO), (args.visual_encoder, VISUAL)) if name != default)
    previous[key] = report
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(previous, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long does `vavl.predict` take with a full-size HiCMAE, next to AuxFormer, on the same clip?

    python recipes/benchmarks/hicmae_predict.py               # CPU, 2 threads, 3 s 1280x720 30 fps clip, 3 runs each
    python recipes/benchmarks/hicmae_predict.py --device cuda

HiCMAE: the released architecture (80.8 M parameters; 16 face frames per view at 160 px, a 256 x 128
fbank, 2 views per clip; faces found on every decoded frame at 30 fps, as its face folders hold
every video frame), random weights. AuxFormer: predict_speed.py's default model (wav2vec2-large-
robust + EfficientNet-B2, untrained encoders, faces at 4 fps). Both run in this one process on the
one clip predict_speed.py writes, alternating, one warm-up each; medians of wall and CPU seconds
per stage and the ratio HiCMAE / AuxFormer go to results/hicmae_predict.json (the machine's load
average is recorded: on a shared machine compare the ratio and the CPU seconds, not the wall).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
STAGES = ("decode", "faces", "audio_encoder", "visual_encoder", "fusion")


def _predict_speed():
    spec = importlib.util.spec_from_file_location("predict_speed", HERE / "predict_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def models(device: str) -> dict:
    import vavl
    from vavl.models.hicmae import HiCMAEConfig, HiCMAEForEmotionRecognition

    torch.manual_seed(0)
    hicmae = HiCMAEForEmotionRecognition(HiCMAEConfig()).eval().to(device)
    auxformer = vavl.create_model("auxformer", audio_encoder="wav2vec2-large-robust", visual_encoder="efficientnet_b2",
                                  num_labels=6, pretrained_encoders=False).eval().to(device)
    return {"hicmae": hicmae, "auxformer": auxformer}


def run(args) -> dict:
    import vavl

    with tempfile.TemporaryDirectory() as tmp:
        clip = _predict_speed().make_clip(Path(tmp) / "clip.mp4", args.seconds)
        built = models(args.device)
        runs = {name: [] for name in built}
        last = {}
        for i in range(args.runs + 1):
            for name, model in built.items():
                t0, c0 = time.perf_counter(), time.process_time()
                r = vavl.predict(clip, model=model, device=args.device)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                print(f"{name} run {i}: wall {wall:.2f} s, cpu {cpu:.2f} s, {r['timings']}", file=sys.stderr)
                if i:   # the first run of each warms up allocators, MTCNN and oneDNN kernels
                    runs[name].append({"wall": {"total": wall, **r["timings"]}, "cpu": {"total": cpu, **r["cpu_timings"]}})
                last[name] = r
    out = {}
    for name, rs in runs.items():
        med = {kind: {k: round(statistics.median(x[kind][k] for x in rs), 3) for k in ("total", *STAGES)}
               for kind in ("wall", "cpu")}
        out[name] = {"median_wall_s": med["wall"], "median_cpu_s": med["cpu"],
                     "real_time_factor_wall": round(med["wall"]["total"] / args.seconds, 3),
                     "runs_wall_s": [round(x["wall"]["total"], 3) for x in rs],
                     "frames": last[name]["frames"], "face_frames": last[name]["face_frames"],
                     "modalities": last[name]["modalities"],
                     "parameters": sum(p.numel() for p in built[name].parameters())}
    for kind in ("wall", "cpu"):
        key = f"median_{kind}_s"
        out[f"ratio_hicmae_to_auxformer_{kind}"] = round(out["hicmae"][key]["total"] / out["auxformer"][key]["total"], 2)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", default=str(HERE / "results" / "hicmae_predict.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from vavl.encoders.hf import quiet_hub

    quiet_hub()
    result = run(args)
    report = {
        "what": f"vavl.predict on a {args.seconds:g} s 1280x720 30 fps mp4 (H.264, AAC 48 kHz stereo) with one moving face",
        "models": {"hicmae": "HiCMAE, released architecture (HiCMAEConfig defaults), random weights; processor defaults "
                             "(30 fps faces, 2 views of 16 frames, 160 px)",
                   "auxformer": "AuxFormer (official width) on wav2vec2-large-robust + efficientnet_b2, untrained encoders; "
                                "its processor defaults (4 fps faces, 260 px)"},
        "settings": {"device": args.device, "torch_threads": args.threads, "runs": args.runs,
                     "statistic": "median after one warm-up run of each model, runs alternating"},
        "machine": {"cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "note": "HiCMAE's two encoders and fusion run as one model call per clip (its views), timed under 'fusion'; "
                "its 'faces' stage tracks faces on every frame at 30 fps (AuxFormer's: 4 fps)",
        "result": result,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous[args.device] = report
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(previous, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `--precision` buys on this CPU: `predict` and `extract` at fp32, bf16 and int8 in one run.

    python recipes/benchmarks/cpu_precision.py                  # 2 threads, wav2vec2-large-robust + EfficientNet-B2
    python recipes/benchmarks/cpu_precision.py --rounds 2 --clips 6 --precisions fp32 int8

The model: AuxFormer on wav2vec2-large-robust (first 12 layers, full width) + EfficientNet-B2, random
weights built from their configs (no download; same architecture and cost as trained ones).

- predict: `vavl.predict` on a 3 s 1280x720 30 fps clip (predict_speed.py's clip), each precision in
  turn within every round (interleaved, so a change of machine load hits all of them alike), one
  warm-up call each; median wall seconds in total and per stage, and the ratio fp32 / precision.
- extract: `vavl.data.extract` of a set of short clips (astronaut face moved, scaled and lit
  differently; voiced tone of a different pitch each) into a fresh cache per precision and round;
  clips/s of its clip loop (median over rounds) and the ratio to fp32. Building and converting the
  encoders happens once per run, however many clips (int8's quantisation takes seconds): it is
  reported on its own (`setup_s`), and end-to-end clips/s with it included, which for a set this
  small is mostly setup.
- accuracy: per clip and modality, the relative L2 |f_p - f_fp32| / |f_fp32| of the cached features,
  and whether the fusion model (random weights) gives the same label on them as on the fp32 ones.

Writes results/cpu_precision.json with the machine, its CPU flags (AMX / AVX-512 BF16 or not) and
the load average before and after (other jobs on the machine slow every precision alike, but
noisily: read the ratios with the load).
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
sys.path.insert(0, str(HERE))
from predict_speed import AUDIO, STAGES, VISUAL, make_clip  # noqa: E402  (the 3 s 720p clip of predict_speed)


def clip_set(root: Path, n: int, seconds: float = 2.0, fps: int = 25) -> list[dict]:
    """n clips of one moving astronaut face (size, path, light vary) with a voiced tone (pitch varies)."""
    from PIL import Image
    from skimage.data import astronaut

    from vavl.media import write_clip

    rng = np.random.default_rng(0)
    face = Image.fromarray(astronaut()[10:210, 140:310])
    records = []
    for i in range(n):
        w = int(rng.integers(120, 200))
        head = np.asarray(face.resize((w, int(w * 300 / 255)), Image.BILINEAR)).astype(np.float32)
        head = np.clip(head * rng.uniform(0.7, 1.2), 0, 255).astype(np.uint8)
        frames = np.empty((int(seconds * fps), 360, 640, 3), np.uint8)
        frames[:] = rng.integers(40, 160, 3)
        y0, x0, dx = int(rng.integers(10, 360 - head.shape[0])), int(rng.integers(0, 200)), int(rng.integers(50, 200))
        for j in range(len(frames)):
            x = x0 + int(dx * j / len(frames))
            frames[j, y0:y0 + head.shape[0], x:x + w] = head
        t = np.arange(int(seconds * 16000)) / 16000
        f0 = rng.uniform(100, 260)
        voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3)) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        voice = (0.2 * voice + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
        path = write_clip(root / f"clip{i:02d}.mp4", frames, fps=fps, audio=voice, sample_rate=16000)
        records.append({"id": f"clip{i:02d}", "audio": str(path), "video": str(path), "label": "neutral", "speaker": f"s{i}"})
    return records


def cpu_flags() -> list[str]:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("avx", "amx")))


def cpu_name() -> str:
    try:
        return next(line for line in open("/proc/cpuinfo") if line.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


@torch.inference_mode()
def matmul_probe(repeats: int = 5) -> dict:
    """One wav2vec2-large feed-forward Linear (1024 -> 4096) on 150 frames (3 s of audio) at each precision:
    shows in seconds whether this CPU runs bf16 natively (faster than fp32) or emulates it (slower)."""
    from vavl.encoders.precision import apply_precision

    torch.manual_seed(0)
    x, out = torch.randn(150, 1024), {}
    for p in ("fp32", "bf16", "int8"):
        layer = apply_precision(torch.nn.Sequential(torch.nn.Linear(1024, 4096)), p)
        layer(x)
        t0 = time.perf_counter()
        for _ in range(repeats):
            layer(x)
        out[p] = round((time.perf_counter() - t0) / repeats, 5)
    return {"what": "Linear(1024, 4096) on (150, 1024), seconds per call", "seconds": out,
            "speedup_vs_fp32": {p: ratio(out["fp32"], v) for p, v in out.items() if p != "fp32"}}


def bench_predict(models: dict, clip: Path, rounds: int) -> dict:
    import vavl

    runs = {p: [] for p in models}
    for r in range(rounds + 1):
        for p, model in models.items():
            t0 = time.perf_counter()
            out = vavl.predict(clip, model=model)
            total = time.perf_counter() - t0
            if r:   # round 0 warms up oneDNN kernels, MTCNN and the allocators
                runs[p].append({"total": total, **out["timings"]})
            print(f"predict round {r} {p}: {total:.2f} s {out['timings']}", file=sys.stderr, flush=True)
    med = {p: {k: round(statistics.median(x[k] for x in rs), 3) for k in ("total", *STAGES)} for p, rs in runs.items()}
    ref = med["fp32"]
    return {"median_wall_s": med,
            "speedup_vs_fp32": {p: {k: ratio(ref[k], m[k]) for k in ("total", "audio_encoder", "visual_encoder")}
                                for p, m in med.items() if p != "fp32"},
            "runs_total_s": {p: [round(x["total"], 3) for x in rs] for p, rs in runs.items()}}


def bench_extract(manifest: Path, n: int, precisions: list[str], rounds: int, root: Path) -> tuple[dict, dict]:
    from vavl.data.extract import extract

    quiet = open(os.devnull, "w")
    speed, setup, whole = ({p: [] for p in precisions} for _ in range(3))
    caches = {}
    for r in range(rounds):
        for p in precisions:
            out = root / f"{p}_{r}"
            t0 = time.perf_counter()
            s = extract(manifest, out, AUDIO, VISUAL, random_init=True, precision=p, batch_size=1, progress=False, log=quiet)
            seconds = time.perf_counter() - t0
            assert s["failed"] == 0, s
            speed[p].append(n / s["seconds"])          # the clip loop, after the encoders are built and converted
            setup[p].append(seconds - s["seconds"])    # building + converting the encoders: once per run
            whole[p].append(n / seconds)
            caches.setdefault(p, out)
            print(f"extract round {r} {p}: {n / s['seconds']:.2f} clips/s, setup {seconds - s['seconds']:.1f} s",
                  file=sys.stderr, flush=True)
    med = {p: round(statistics.median(v), 3) for p, v in speed.items()}
    end = {p: round(statistics.median(v), 3) for p, v in whole.items()}
    return {"clips": n, "median_clips_per_s": med, "speedup_vs_fp32": {p: ratio(v, med["fp32"]) for p, v in med.items() if p != "fp32"},
            "median_setup_s": {p: round(statistics.median(v), 2) for p, v in setup.items()},
            "median_end_to_end_clips_per_s": end,
            "end_to_end_speedup_vs_fp32": {p: ratio(v, end["fp32"]) for p, v in end.items() if p != "fp32"},
            "runs_clips_per_s": {p: [round(x, 3) for x in v] for p, v in speed.items()}}, caches


@torch.inference_mode()
def accuracy(caches: dict, fusion_model) -> dict:
    from vavl.data.cache import FeatureCache

    ref = FeatureCache(caches["fp32"])
    ids = ref.ids()

    def label(feats):
        batch = {}
        for m in ("audio", "visual"):
            x = feats.get(f"{m}_features")
            if x is not None:
                batch[f"{m}_features"] = x[None].float()
                batch[f"{m}_mask"] = torch.ones(1, x.shape[0], dtype=torch.bool)
        return int(fusion_model(**batch).logits.argmax(-1))

    out = {}
    for p, root in caches.items():
        if p == "fp32":
            continue
        cache, rel, same = FeatureCache(root), {"audio": [], "visual": []}, 0
        for i in ids:
            a, b = ref.read(i), cache.read(i)
            for m in rel:
                x, y = a.get(f"{m}_features"), b.get(f"{m}_features")
                if x is not None and y is not None:
                    rel[m].append(float((y - x).norm() / x.norm()))
            same += label(a) == label(b)
        out[p] = {"feature_relative_l2": {m: {"median": round(statistics.median(v), 4), "max": round(max(v), 4), "clips": len(v)}
                                          for m, v in rel.items() if v},
                  "same_label": f"{same}/{len(ids)}", "label_agreement": round(same / len(ids), 3)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="predict rounds (after a warm-up) and extract rounds")
    p.add_argument("--extract-rounds", type=int, default=2)
    p.add_argument("--clips", type=int, default=8, help="clips in the extract / accuracy set")
    p.add_argument("--precisions", nargs="+", choices=["fp32", "bf16", "int8"],
                   help="default: fp32 int8, and bf16 where the CPU runs it natively (elsewhere it is emulated, "
                        "several times slower than fp32: the matmul probe shows by how much)")
    p.add_argument("--out", default=str(HERE / "results" / "cpu_precision.json"))
    args = p.parse_args()
    from vavl.core.devices import cpu_bf16_support

    args.precisions = args.precisions or (["fp32", "bf16", "int8"] if cpu_bf16_support()[0] else ["fp32", "int8"])
    if args.precisions[0] != "fp32":
        args.precisions = ["fp32"] + [x for x in args.precisions if x != "fp32"]
    torch.set_num_threads(args.threads)
    import vavl
    from vavl.core.devices import resolve_precision
    from vavl.data import write_manifest
    from vavl.encoders.hf import quiet_hub
    from vavl.inference.predict import prepare_model

    quiet_hub()
    load_before = [round(x, 2) for x in os.getloadavg()]
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        probe = matmul_probe()
        print(f"probe: {probe}", file=sys.stderr, flush=True)
        clip = make_clip(tmp / "clip.mp4", 3.0)
        torch.manual_seed(0)
        base = vavl.create_model("auxformer", audio_encoder=AUDIO, visual_encoder=VISUAL, num_labels=6,
                                 pretrained_encoders=False).eval()
        models = {pr: prepare_model(base, "cpu", pr) for pr in args.precisions}
        predict = bench_predict(models, clip, args.rounds)
        del models
        records = clip_set(tmp / "set", args.clips)
        manifest = write_manifest(records, tmp / "set.jsonl")
        extract_result, caches = bench_extract(manifest, args.clips, args.precisions, args.extract_rounds, tmp / "caches")
        acc = accuracy(caches, base)
    native, why = cpu_bf16_support()
    report = {
        "what": "vavl predict (3 s 1280x720 30 fps clip) and vavl extract (clip set) at each --precision vs fp32, in one run",
        "model": f"AuxFormer on {AUDIO} (12 layers, full width) + {VISUAL}, random weights from configs",
        "settings": {"torch_threads": args.threads, "predict_rounds": args.rounds, "extract_rounds": args.extract_rounds,
                     "precisions": args.precisions, "clips": args.clips, "clip_set": "2 s 640x360 25 fps mp4s, one astronaut face each, voiced tones",
                     "statistic": "median over rounds, precisions interleaved within each round"},
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "cpu_flags": cpu_flags(),
                    "native_bf16": native, "why": why, "auto_picks": resolve_precision("auto", "cpu"),
                    "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
                    "note": "load average of the whole machine (1, 5, 15 min): other jobs shared its cores"},
        "seconds": round(time.perf_counter() - t_start, 1),
        "matmul_probe": probe, "predict": predict, "extract": extract_result, "accuracy_vs_fp32": acc,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_out, out)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time per epoch: cached encoder features (vavl) against the official loops' way (the frozen
wav2vec2-large-robust, 12 layers, recomputed on every step), same training math.

    python recipes/benchmarks/epoch_speed.py                       # CPU: times a few steps, extrapolates
    python recipes/benchmarks/epoch_speed.py --device cuda --full  # GPU: whole 7,442-clip set, 20 epochs, extraction included

Both sides train the same AuxFormer (official shape: 1024-d audio frames, width 50, 5 layers,
10 heads; 1408-d face-embedding frames) with AdamW on the same batches of a CREMA-D-shaped synthetic
set (2.5 s clips = 125 wav2vec2 frames, 12 face frames per clip at 5 fps, VAVL partition sizes),
at the official batch size (32, AuxFormer's run_model.sh) on both cores by default.
"official": each step runs wav2vec2-large-robust (full-size architecture, random weights, frozen,
no_grad) on the batch's 16 kHz waveforms, then the AuxFormer step. "cached": the AuxFormer step on
features read from memory (a FeatureCache on disk is memory-mapped; reading is not the bottleneck).
An epoch is what both loops do per epoch: the training steps, then one pass over the dev split
(official: wav2vec2 + AuxFormer forward; cached: AuxFormer forward). The JSON also gives the
training steps alone. CPU mode times `--steps` steps of each kind (after one warm-up step), each
kind in its own process (the cached loop never loads wav2vec2), repeats `--repeats` times, and
extrapolates the median step times to a full epoch; it says so in the JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import vavl
from vavl.encoders import build_encoder

CLIPS = 7442
TRAIN_FRACTION = 0.7          # VAVL partitions: ~70 / 15 / 15
DEV_FRACTION = 0.15
SECONDS = 2.5                 # mean CREMA-D clip length
FRAMES_PER_SECOND = 50        # wav2vec2 output rate
FACE_FPS = 5


def make_model(device):
    model = vavl.create_model("auxformer.official", audio_dim=1024, visual_dim=1408, num_labels=6)
    return model.to(device).train()


def batch(b: int, device, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = int(SECONDS * 16000)
    return {"wave": torch.randn(b, n, generator=g).to(device),
            "audio_features": torch.randn(b, int(SECONDS * FRAMES_PER_SECOND), 1024, generator=g).to(device),
            "visual_features": torch.randn(b, int(SECONDS * FACE_FPS) + 0, 1408, generator=g).to(device),
            "labels": torch.randint(0, 6, (b,), generator=g).to(device)}


def train_step(model, opt, audio, x, amp):
    with torch.autocast(x["labels"].device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(audio_features=audio, visual_features=x["visual_features"], labels=x["labels"])
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def one_step(kind: str, model, opt, encoder, x, amp: bool) -> None:
    """One training step (official / official_vavl / cached) or one dev batch (*_eval) of `kind`."""
    autocast = torch.autocast(x["wave"].device.type, dtype=torch.bfloat16, enabled=amp)
    ones = torch.ones_like(x["wave"], dtype=torch.bool)
    if kind.endswith("_eval"):                      # forward only, as both loops' dev pass
        model.eval()
        with torch.no_grad(), autocast:
            audio = encoder(x["wave"], ones)[0].float() if kind == "official_eval" else x["audio_features"]
            model(audio_features=audio, visual_features=x["visual_features"])
        model.train()
        return
    if kind == "official":
        with torch.no_grad(), autocast:
            audio = encoder(x["wave"], ones)[0].float()
    elif kind == "official_vavl":   # VAVL's loop: gradients flow into wav2vec2 (CNN frozen), no optimiser steps it
        encoder.set_frozen(False)   # a frozen encoder runs under no_grad; VAVL's builds the graph
        for sub in encoder.modules():
            if hasattr(sub, "freeze_feature_encoder"):
                sub.freeze_feature_encoder()
        with autocast:
            audio = encoder(x["wave"], ones)[0].float()
    else:
        audio = x["audio_features"]
    train_step(model, opt, audio, x, amp)
    if kind == "official_vavl":
        assert any(p.grad is not None for p in encoder.parameters()), "VAVL mode must backpropagate into wav2vec2"
        encoder.zero_grad(set_to_none=True)
        encoder.set_frozen(True)


def time_steps(kind: str, model, opt, encoder, x, steps: int, amp: bool, sync) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) of each timed step."""
    times, cpu = [], []
    for i in range(steps + 1):                      # step 0 is a warm-up, not timed
        t0, c0 = time.perf_counter(), time.process_time()
        one_step(kind, model, opt, encoder, x, amp)
        sync()
        if i:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return times, cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32, help="the official AuxFormer batch size")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both sides (the same for a fair comparison)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per repeat (official side); cached side times 10x more")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--full", action="store_true", help="GPU: the full 20-epoch run instead of timing steps (not run on CPU)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "epoch_speed.json"))
    p.add_argument("--only", help=argparse.SUPPRESS)    # child process: time one kind, print JSON
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    amp = device.type == "cuda"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    train_clips, dev_clips = int(CLIPS * TRAIN_FRACTION), int(CLIPS * DEV_FRACTION)
    steps_per_epoch, dev_batches = math.ceil(train_clips / args.batch_size), math.ceil(dev_clips / args.batch_size)
    if args.full or args.only:
        # the cached loop never builds wav2vec2, so its process does not either
        needs_encoder = args.full or args.only.startswith("official")
        encoder = build_encoder("wav2vec2-large-robust", pretrained=False).to(device).eval().requires_grad_(False) if needs_encoder else None
        model = make_model(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = batch(args.batch_size, device, 0)
        if args.full:
            if device.type != "cuda":
                p.error("--full is the GPU mode (a full 20-epoch run); on CPU time steps instead")
            return full_run(args, encoder, model, opt, x, steps_per_epoch, amp, sync)
        print(json.dumps(time_steps(args.only, model, opt, encoder, x, args.steps, amp, sync)))
        return 0
    kinds = (("official", args.steps), ("official_eval", args.steps), ("official_vavl", args.steps),
             ("cached", args.steps * 10), ("cached_eval", args.steps * 10))
    runs = {k: [] for k, _ in kinds}
    cpu_runs = {k: [] for k, _ in kinds}
    for r in range(args.repeats):
        for kind, steps in kinds:   # each kind in its own process, as each loop runs alone
            child = subprocess.run([sys.executable, __file__, "--only", kind, "--steps", str(steps), "--device", args.device,
                                    "--batch-size", str(args.batch_size), "--threads", str(args.threads)],
                                   check=True, capture_output=True, text=True)
            times, cpu = json.loads(child.stdout.strip().splitlines()[-1])
            runs[kind].append(statistics.median(times))
            cpu_runs[kind].append(statistics.median(cpu))
            print(f"repeat {r + 1}: {kind:<13} median step {runs[kind][-1]:.3f} s wall, {cpu_runs[kind][-1]:.3f} s CPU", flush=True)
    step = {k: statistics.median(v) for k, v in runs.items()}
    cpu_step = {k: statistics.median(v) for k, v in cpu_runs.items()}
    extraction_step = step["official_eval"] - step["cached_eval"]     # the wav2vec2 forward on one batch
    train_epoch = {k: step[k] * steps_per_epoch for k in ("official", "official_vavl", "cached")}
    eval_pass = {"official": step["official_eval"] * dev_batches, "cached": step["cached_eval"] * dev_batches}

    def per_epoch(t: dict) -> dict:
        """Step times -> seconds per epoch of each loop: training steps + dev pass (VAVL's dev pass is
        the same wav2vec2 + AuxFormer forward as AuxFormer's)."""
        dev = {"official": t["official_eval"], "official_vavl": t["official_eval"], "cached": t["cached_eval"]}
        return {k: t[k] * steps_per_epoch + dev[k] * dev_batches for k in dev}
    epoch, cpu_epoch = per_epoch(step), per_epoch(cpu_step)
    # each repeat's loops ran minutes apart on the same machine: their own ratio is robust to slow drifts in its load
    per_repeat = [per_epoch({k: v[r] for k, v in runs.items()}) for r in range(args.repeats)]
    speedup_per_repeat = [e["official"] / e["cached"] for e in per_repeat]
    result = {
        "benchmark": "epoch_speed",
        "what": "seconds per epoch (AuxFormer, official shape; training steps + one dev pass, as both loops do) with cached "
                "features vs recomputing the frozen wav2vec2-large-robust (12 layers, full-size architecture, random weights) "
                "every step, as the official loops do",
        "how": f"median of {args.repeats} repeats of the median step time over {args.steps} (official) / {args.steps * 10} "
               f"(cached) timed steps after a warm-up step; per-epoch numbers are EXTRAPOLATED: training step time x "
               f"{steps_per_epoch} steps ({train_clips} training clips of {CLIPS}, batch {args.batch_size}) + dev step time x "
               f"{dev_batches} batches ({dev_clips} dev clips)",
        "data": {"clips": CLIPS, "train_clips": train_clips, "dev_clips": dev_clips, "batch_size": args.batch_size,
                 "clip_seconds": SECONDS, "audio_frames": int(SECONDS * 50),
                 "visual_frames": int(SECONDS * FACE_FPS), "audio_dim": 1024, "visual_dim": 1408},
        "step_seconds": step, "step_seconds_all_repeats": runs,
        "epoch_seconds": epoch, "training_steps_seconds_per_epoch": train_epoch, "dev_pass_seconds": eval_pass,
        "speedup": epoch["official"] / epoch["cached"],
        "speedup_training_steps_only": train_epoch["official"] / train_epoch["cached"],
        "speedup_per_repeat": speedup_per_repeat, "speedup_median_of_repeats": statistics.median(speedup_per_repeat),
        "speedup_vs_vavl_official_loop": epoch["official_vavl"] / epoch["cached"],
        "cpu_step_seconds": cpu_step, "cpu_step_seconds_all_repeats": cpu_runs,
        "speedup_cpu_time": cpu_epoch["official"] / cpu_epoch["cached"],
        "speedup_vs_vavl_official_loop_cpu_time": cpu_epoch["official_vavl"] / cpu_epoch["cached"],
        "kinds": {"official": "wav2vec2 forward under no_grad every step (the cheapest way to recompute)",
                  "official_vavl": "wav2vec2 forward AND backward every step (VAVL's train.py: wav2vec2 is in the graph, "
                                   "CNN frozen, no optimiser steps it)", "cached": "features from the cache",
                  "official_eval / cached_eval": "one dev batch, forward only (wav2vec2 + AuxFormer / AuxFormer)"},
        "one_off_extraction_seconds_estimate": max(extraction_step, 0.0) * math.ceil(CLIPS / args.batch_size),
        "note": "extraction runs once (all 7,442 clips) and is then reused by every epoch and every run; the official "
                "loops pay it every epoch on the training and dev splits.",
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": str(device), "platform": platform.platform(), "python": sys.version.split()[0],
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"epoch: official {epoch['official']:.0f} s, cached {epoch['cached']:.1f} s, "
          f"speed-up {result['speedup']:.1f}x vs no_grad recompute ({result['speedup_training_steps_only']:.1f}x for the "
          f"training steps alone; per repeat {', '.join(f'{x:.1f}' for x in speedup_per_repeat)}), "
          f"{result['speedup_vs_vavl_official_loop']:.1f}x vs VAVL's loop "
          f"(CPU time: {result['speedup_cpu_time']:.1f}x / {result['speedup_vs_vavl_official_loop_cpu_time']:.1f}x; "
          f"extrapolated from timed steps) -> {out}")
    return 0


def full_run(args, encoder, model, opt, x, steps_per_epoch, amp, sync) -> int:
    """GPU only: extract features for all clips once, then 20 epochs on the cache (wall clock)."""
    t0 = time.perf_counter()
    for _ in range(math.ceil(CLIPS / args.batch_size)):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            encoder(x["wave"], torch.ones_like(x["wave"], dtype=torch.bool))
    sync()
    extraction = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(20 * steps_per_epoch):
        train_step(model, opt, x["audio_features"], x, amp)
    sync()
    training = time.perf_counter() - t1
    result = {"benchmark": "epoch_speed --full", "extraction_seconds": extraction, "training_seconds_20_epochs": training,
              "total_seconds": extraction + training, "device": torch.cuda.get_device_name(), "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

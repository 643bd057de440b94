"""CPU attention at the zoo's shapes: the fused C kernel (attn_implementation="cpu_kernel") against
SDPA ("sdpa"), forward + backward of one attention layer.

    python recipes/benchmarks/attention_speed.py [--threads 2] [--rounds 5] [--steps 20]

AuxFormer at the official size (batch 32, width 50, 10 heads of 5), the shapes of one training
step: audio self-attention 125x125 (causal mask, dropout 0.1; 20 layers per step), visual
self-attention 12x12 (20 per step), audio queries on visual keys 125x12 and visual queries on
audio keys 12x125 (5 each, no dropout); one `MultiHeadAttention` each. Wider heads: the audio
self-attention with 8 heads of 16 (the widest "auto" gives the kernel), and VAVL's Conformer (batch
32, width 512, 8 heads of 64: "auto" runs SDPA) on 125 frames with the relative-position bias and
its gradient, dropout 0.1, one `RelativeSelfAttention`. Each path runs in its own process, the two alternate for
`--rounds` rounds, and each round times `--steps` calls after a warm-up; the JSON gives the median
over rounds of each round's median (and the best round).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

SHAPES = {"audio self 125x125": (125, 125, 0.1), "visual self 12x12": (12, 12, 0.1),
          "audio on visual 125x12": (125, 12, 0.0), "visual on audio 12x125": (12, 125, 0.0)}
WIDER = "self 125x125, 8 heads of 16"
CONFORMER = "conformer 125x125, 8 heads of 64"
PATHS = ("cpu_kernel", "sdpa")


def time_shapes(path: str, steps: int) -> dict:
    from vavl.nn.attention import AttentionMask, MultiHeadAttention
    from vavl.models.auxformer import AuxFormerConfig
    from vavl.models.vavl import VAVLConfig
    from vavl.models.vavl.conformer import RelativeSelfAttention

    def median_time(layer, x, *args):
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            layer(x, *args).sum().backward()
            if i:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    torch.manual_seed(0)
    config = AuxFormerConfig(attn_implementation=path)
    out = {}
    for name, (tq, tk, p) in SHAPES.items():
        mha = MultiHeadAttention(50, 10, p, config).train()
        x, y = torch.randn(32, tq, 50, requires_grad=True), torch.randn(32, tk, 50, requires_grad=True)
        mask = AttentionMask(torch.ones(32, tq, dtype=torch.bool), torch.ones(32, tk, dtype=torch.bool), causal=True)
        key = None if "self" in name else y
        out[name] = median_time(mha, x, key, None, mask)
    mha = MultiHeadAttention(128, 8, 0.1, config).train()  # between the two: where "auto" stops taking the kernel
    ones = torch.ones(32, 125, dtype=torch.bool)
    out[WIDER] = median_time(mha, torch.randn(32, 125, 128, requires_grad=True), None, None, AttentionMask(ones, ones, True))
    layer = RelativeSelfAttention(512, 8, 0.1, VAVLConfig(attn_implementation=path)).train()
    frames = torch.ones(32, 125, dtype=torch.bool)
    out[CONFORMER] = median_time(layer, torch.randn(32, 125, 512, requires_grad=True), AttentionMask(frames, frames))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "attention_speed.json"))
    ap.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(time_shapes(args.child, args.steps)))
        return 0
    from vavl.nn.native import availability

    if not availability()[0]:
        sys.exit(f"the CPU attention kernel cannot run here: {availability()[1]}")
    load_before = os.getloadavg()
    names = [*SHAPES, WIDER, CONFORMER]
    runs = {path: [] for path in PATHS}
    for r in range(args.rounds):
        for path in PATHS:
            child = subprocess.run([sys.executable, __file__, "--child", path, "--threads", str(args.threads),
                                    "--steps", str(args.steps)], check=True, capture_output=True, text=True)
            res = json.loads(child.stdout.strip().splitlines()[-1])
            runs[path].append(res)
            print(f"round {r + 1} {path:<10}" + "".join(f"  {k}: {v * 1e3:.2f} ms" for k, v in res.items()), flush=True)
    ms = {path: {k: statistics.median(run[k] for run in rounds) * 1e3 for k in names} for path, rounds in runs.items()}
    best = {path: {k: min(run[k] for run in rounds) * 1e3 for k in names} for path, rounds in runs.items()}
    per_step = {path: sum(v[k] * (20 if "self" in k else 5) for k in SHAPES) for path, v in ms.items()}
    result = {"benchmark": "attention_speed",
              "what": "forward + backward of one attention layer: AuxFormer's MultiHeadAttention (batch 32, width 50, "
                      "10 heads) at its four shapes, the same with 8 heads of 16, and VAVL's RelativeSelfAttention "
                      "(batch 32, width 512, 8 heads of 64), attn_implementation cpu_kernel vs sdpa",
              "how": f"median over {args.rounds} alternating rounds (one process per path and round) of the median of "
                     f"{args.steps} timed calls after a warm-up",
              "milliseconds": ms, "speedup": {k: ms["sdpa"][k] / ms["cpu_kernel"][k] for k in names},
              "best_round_milliseconds": best,  # less swayed by other jobs than the median on a busy machine
              "auxformer_attention_per_step_ms": per_step,
              "kernel": availability()[1],
              "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                          "platform": platform.platform(),
                          "load_average": {"start": [round(x, 2) for x in load_before],
                                           "end": [round(x, 2) for x in os.getloadavg()]}}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for k in names:
        print(f"{k:<34} kernel {ms['cpu_kernel'][k]:7.2f} ms   sdpa {ms['sdpa'][k]:7.2f} ms   {result['speedup'][k]:.2f}x")
    print(f"AuxFormer attention per training step: kernel {per_step['cpu_kernel']:.0f} ms, sdpa {per_step['sdpa']:.0f} ms "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

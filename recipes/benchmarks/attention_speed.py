"""CPU attention of AuxFormer's shapes: the fused C kernel (vavl/native/attention.c) against the
PyTorch path it replaces (`VAVL_NATIVE=0`), forward + backward of one `MultiHeadAttention`.

    python recipes/benchmarks/attention_speed.py [--threads 2] [--rounds 5]

Shapes are those of one AuxFormer training step at the official size (batch 32, width 50, 10 heads
of 5): audio self-attention 125x125 (causal mask, dropout 0.1; 20 layers per step), visual
self-attention 12x12 (20 per step), audio queries on visual keys 125x12 and visual queries on audio
keys 12x125 (5 each, no dropout). Each path runs in its own process (the kernel is chosen when
vavl loads), the two alternate for `--rounds` rounds, and each round times `--steps` calls after a
warm-up; the JSON gives the median over rounds of each round's median.
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


def time_shapes(steps: int) -> dict:
    from vavl.layers import AttentionBias, MultiHeadAttention, attention_mask
    from vavl.native import attention as native_attention

    torch.manual_seed(0)
    out = {"kernel": native_attention.library() is not None}
    for name, (tq, tk, p) in SHAPES.items():
        mha = MultiHeadAttention(50, 10, p).train()
        x, y = torch.randn(32, tq, 50, requires_grad=True), torch.randn(32, tk, 50, requires_grad=True)
        mask = AttentionBias.from_mask(attention_mask(torch.ones(32, tq, dtype=torch.bool), torch.ones(32, tk, dtype=torch.bool), True))
        key = None if name.startswith(("audio self", "visual self")) else y
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            mha(x, key, None, mask).sum().backward()
            if i:
                times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "attention_speed.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(time_shapes(args.steps)))
        return 0
    runs = {"kernel": [], "pytorch": []}
    for r in range(args.rounds):
        for path in runs:
            env = {**os.environ, "VAVL_NATIVE": "1" if path == "kernel" else "0"}
            child = subprocess.run([sys.executable, __file__, "--child", "--threads", str(args.threads), "--steps", str(args.steps)],
                                   env=env, check=True, capture_output=True, text=True)
            res = json.loads(child.stdout.strip().splitlines()[-1])
            if res.pop("kernel") != (path == "kernel"):
                sys.exit(f"the {path} run did not get the path it asked for (is there a C compiler?)")
            runs[path].append(res)
            print(f"round {r + 1} {path:<8}" + "".join(f"  {k}: {v * 1e3:.2f} ms" for k, v in res.items()), flush=True)
    ms = {path: {k: statistics.median(run[k] for run in rounds) * 1e3 for k in SHAPES} for path, rounds in runs.items()}
    per_step = {path: sum(v[k] * (20 if "self" in k else 5) for k in SHAPES) for path, v in ms.items()}
    result = {"benchmark": "attention_speed",
              "what": "MultiHeadAttention forward + backward (batch 32, width 50, 10 heads), fused C kernel vs the PyTorch path",
              "how": f"median over {args.rounds} alternating rounds (one process per path and round) of the median of "
                     f"{args.steps} timed calls after a warm-up",
              "milliseconds": ms, "speedup": {k: ms["pytorch"][k] / ms["kernel"][k] for k in SHAPES},
              "per_auxformer_step_ms": per_step,
              "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                          "platform": platform.platform(), "load_average": [round(x, 2) for x in os.getloadavg()]}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for k in SHAPES:
        print(f"{k:<24} kernel {ms['kernel'][k]:7.2f} ms   pytorch {ms['pytorch'][k]:7.2f} ms   {result['speedup'][k]:.2f}x")
    print(f"attention per AuxFormer step: kernel {per_step['kernel']:.0f} ms, pytorch {per_step['pytorch']:.0f} ms -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

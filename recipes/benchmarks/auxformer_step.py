"""Benchmark: one AuxFormer training step (forward + backward + AdamW) at the official default
shape, inference latency for one clip, and peak memory, for each attention implementation asked
for and, optionally, the official implementation in the same run.

    python recipes/benchmarks/auxformer_step.py                      # ours with the C kernel and with SDPA
    python recipes/benchmarks/auxformer_step.py --attn sdpa          # one path
    python recipes/benchmarks/auxformer_step.py --official-src DIR   # DIR holds the official
        # ilucasgoncalves/AuxFormer files net/avmodel_AF.py and modules/ (not shipped with vavl)
    python recipes/benchmarks/auxformer_step.py --device cuda --dtype bf16   # SDPA
    python recipes/benchmarks/auxformer_step.py --model vavl         # VAVL's step (vavl.official), ours only

Each run (every --attn path, then the official code) is its own subprocess, so that peak memory
(RSS, or CUDA peak allocated) is its own; --in-process times a single path in this process instead, whose
peak is then that path's too (the gpu_suite smoke: one process start less per run). --hidden-size: the model at
another width than the official one (the smoke's VAVL step on a CPU, where bf16 is emulated: at width 512 one
bf16 step of batch 2 takes ~40 s there). Same input shapes, same loss (CE on fused + both
auxiliary heads), same optimiser. The JSON records the load average: other jobs skew timings.
"""
from __future__ import annotations

import argparse
import importlib.util
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
from types import SimpleNamespace

import torch
import torch.nn.functional as F

DEFAULT_OUT = Path(__file__).parent / "results" / "auxformer_step.json"
SHAPE = {"batch": 32, "audio_frames": 125, "visual_frames": 75, "audio_dim": 1024, "visual_dim": 50,
         "hidden_size": 50, "num_layers": 5, "num_heads": 10, "num_labels": 6}
# VAVL at its official shape (vavl.official: Conformers of width 512), on 1408-d EfficientNet-B2 face frames;
# its step is one forward + backward of the model's own loss (fused, unimodal and reconstruction terms)
VAVL_SHAPE = {"batch": 32, "audio_frames": 125, "visual_frames": 75, "audio_dim": 1024, "visual_dim": 1408, "num_labels": 6}


def build(impl: str, official_src: str | None, arch: str = "auxformer", hidden_size: int = 0):
    """impl "ours:<attn_implementation>" or "official" -> (model, fn(audio, visual, labels) -> loss,
    fn(audio, visual) -> logits). hidden_size: ours at that width (0: the official one)."""
    if impl.startswith("ours:"):
        import vavl
        from vavl.nn.native import availability

        attn = impl.split(":")[1]
        if attn == "cpu_kernel" and not availability()[0]:
            sys.exit(f"--attn cpu_kernel: the kernel cannot run here: {availability()[1]}")
        width = {"hidden_size": hidden_size} if hidden_size else {}
        model = vavl.create_model(f"{arch}.official", attn_implementation=attn, **width)

        def loss_fn(a, v, y):
            return model(audio_features=a, visual_features=v, labels=y).loss

        def infer(a, v):
            return model(audio_features=a, visual_features=v).logits
        return model, loss_fn, infer
    # the official class, from the user's copy: net/avmodel_AF.py alone (net/__init__.py pulls in the
    # training code and its dependencies), with modules/ importable
    sys.path.insert(0, official_src)
    spec = importlib.util.spec_from_file_location("avmodel_AF", Path(official_src) / "net" / "avmodel_AF.py")
    official = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official)
    AVmodel = official.AVmodel

    args = SimpleNamespace(num_heads=SHAPE["num_heads"], layers=SHAPE["num_layers"], attn_mask=True,
                           output_dim=SHAPE["num_labels"], attn_dropout=0.1, relu_dropout=0.1, res_dropout=0.1,
                           out_dropout=0.2, embed_dropout=0.25)
    model = AVmodel(args)

    def loss_fn(a, v, y):
        out, out_a, out_v = model(a, v)
        return F.cross_entropy(out, y) + F.cross_entropy(out_a, y) + F.cross_entropy(out_v, y)

    def infer(a, v):
        return model(a, v)[0]
    return model, loss_fn, infer


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(impl: str, args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model, loss_fn, infer = build(impl, args.official_src, args.model, args.hidden_size)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shape = shape_of(args)
    b = shape["batch"]
    audio = torch.randn(b, shape["audio_frames"], shape["audio_dim"], device=device)
    visual = torch.randn(b, shape["visual_frames"], shape["visual_dim"], device=device)
    labels = torch.randint(0, shape["num_labels"], (b,), device=device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(audio, visual, labels)
        loss.backward()
        opt.step()

    model.train()
    times, cpu = [], []  # wall and process CPU seconds (CPU time suffers less from other jobs)
    for i in range(args.warmup + args.steps):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    model.eval()
    lat = []
    with torch.no_grad(), autocast:
        for i in range(args.warmup + args.latency_runs):
            sync()
            t0 = time.perf_counter()
            infer(audio[:1], visual[:1])
            sync()
            if i >= args.warmup:
                lat.append(time.perf_counter() - t0)
    return {"train_step_s": {"median": statistics.median(times), "min": min(times), "max": max(times), "n": len(times)},
            "train_step_cpu_s": {"median": statistics.median(cpu), "min": min(cpu)},
            "latency_one_clip_ms": {"median": 1000 * statistics.median(lat), "n": len(lat)},
            "peak_memory_mb": peak_memory_mb(args.device),
            "peak_memory_kind": "cuda max_memory_allocated" if args.device == "cuda" else "process max RSS (getrusage)"}


def shape_of(args) -> dict:
    """The model's official input shape, with --batch when given."""
    shape = dict(VAVL_SHAPE if args.model == "vavl" else SHAPE)
    shape["batch"] = args.batch or shape["batch"]
    if args.hidden_size:
        shape["hidden_size"] = args.hidden_size
    return shape


def run_in_subprocess(impl: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, __file__, "--only", impl, "--out", str(out), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--latency-runs", str(args.latency_runs), "--threads", str(args.threads),
               "--device", args.device, "--dtype", args.dtype, "--model", args.model, "--batch", str(args.batch),
               "--hidden-size", str(args.hidden_size)]
        if args.official_src:
            cmd += ["--official-src", args.official_src]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--latency-runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--model", default="auxformer", choices=["auxformer", "vavl"], help="whose official shape and step")
    p.add_argument("--batch", type=int, default=0, help="batch size (default: the official 32)")
    p.add_argument("--hidden-size", type=int, default=0, help="the model's width (default: the official one)")
    p.add_argument("--in-process", action="store_true",
                   help="time the single --attn path in this process, not in a child process")
    p.add_argument("--attn", nargs="+", choices=["cpu_kernel", "sdpa", "eager"],
                   help="attn_implementation(s) of ours to time (default: cpu_kernel and sdpa on CPU, sdpa on CUDA)")
    p.add_argument("--official-src", help="folder with the official AuxFormer source (net/, modules/)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--only", help=argparse.SUPPRESS)  # child process: "ours:<attn>" or "official"
    args = p.parse_args()
    if args.official_src and args.model != "auxformer":
        p.error("--official-src: the official code is timed for --model auxformer only")
    if args.hidden_size and args.official_src:
        p.error("--hidden-size: the official code is timed at its own width only")
    if args.in_process and (args.official_src or len(args.attn or ()) != 1):
        p.error("--in-process: one --attn path, without --official-src")
    if args.only:  # child process: one implementation
        Path(args.out).write_text(json.dumps(measure(args.only, args)))
        return 0
    load_before = os.getloadavg()[0]  # other jobs on the machine skew every timing: recorded
    attn = args.attn or (["cpu_kernel", "sdpa"] if args.device == "cpu" else ["sdpa"])
    if args.in_process:
        results = {f"ours_{attn[0]}": measure(f"ours:{attn[0]}", args)}
    else:
        results = {f"ours_{a}": run_in_subprocess(f"ours:{a}", args) for a in attn}
    if args.official_src:
        official = results["official"] = run_in_subprocess("official", args)
        for a in attn:
            ours = results[f"ours_{a}"]
            results[f"speedup_train_step_{a}"] = official["train_step_s"]["median"] / ours["train_step_s"]["median"]
            results[f"speedup_latency_{a}"] = official["latency_one_clip_ms"]["median"] / ours["latency_one_clip_ms"]["median"]
    report = {
        "benchmark": f"{'VAVL' if args.model == 'vavl' else 'AuxFormer'} training step (forward + backward + AdamW) and "
                     "one-clip inference", "model": f"{args.model}.official",
        "shape": shape_of(args), "device": args.device, "dtype": args.dtype, "threads": args.threads, "attn_implementations": attn,
        "in_process": args.in_process,
        "steps": args.steps, "warmup": args.warmup,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "processor": platform.processor() or platform.machine(),
                    "load_average_1m": {"start": load_before, "end": os.getloadavg()[0]}},
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One run of the GPU benchmarks -> one JSON, recipes/benchmarks/results/gpu_suite.json.

    python recipes/benchmarks/gpu_suite.py --official-src DIR      # one GPU; DIR: a checkout of ilucasgoncalves/AuxFormer
    python recipes/benchmarks/gpu_suite.py --parts step,predict    # some parts only
    python recipes/benchmarks/gpu_suite.py --smoke --out /tmp/gpu_suite.json   # CPU, tiny sizes (tests/test_gpu_suite.py)

Parts, each in subprocesses, run as a user runs them:
  step     auxformer_step.py at the official shape, fp32 and bf16: ours (SDPA) and, with --official-src, the
           official AuxFormer code in the same run; then VAVL's step (vavl.official, ours)
  predict  predict_speed.py: vavl.predict on a 3 s 1280x720 30 fps clip, wav2vec2-large-robust-12 + EfficientNet-B2,
           bf16; faces where `vavl predict` finds them (the CPU), and on the GPU
  extract  `vavl extract` over a tenth of the corpus below, faces on the GPU in this process vs faces in CPU
           worker processes: clips/s and real-time factor of each
  e2e      a synthetic corpus the size of CREMA-D: vavl prepare -> vavl extract (wav2vec2-large-robust-12 +
           EfficientNet-B2, random weights, --bf16, faces at the default 5 fps, the faster face placement of the
           extract part) -> 20 epochs of recipes/finetune.py (AuxFormer at the official width, bf16, speaker fold 0)
           -> vavl evaluate (the test split): each stage's wall time

The corpus: CREMA-D's layout and its 7,442 ids (91 actors), 2.5 s 480x360 30 fps FLV + 16 kHz WAV with a real
face (vavl.data.synthetic), 24 distinct clips (4 per emotion) under the 7,442 names (hard links): every clip is
still decoded, searched for faces and encoded, but the accuracies mean nothing (test clips repeat training
clips). The JSON (device name, torch version, date, every part) is rewritten after each part, so a run cut short
keeps what it measured. --smoke: the same steps on the CPU at tiny sizes with tiny random encoders.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_OUT = HERE / "results" / "gpu_suite.json"
PARTS = ("step", "predict", "extract", "e2e")
EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
VAVL = (sys.executable, "-m", "vavl.cli")   # the `vavl` command, with this interpreter
TARGETS = {"crema_d_extraction_s": 120, "e2e_s": 300, "auxformer_bf16_speedup_vs_official": 3.0, "predict_s": 0.3}


class Sizes:
    """What the run does at full size (a GPU) and with --smoke (the CPU, tiny)."""

    def __init__(self, smoke: bool):
        self.smoke = smoke
        self.device = "cpu" if smoke else "cuda"
        self.actors, self.per_actor = (10, 6) if smoke else (91, 82)   # 91 x 82 = 7,462 ids, minus 20: 7,442
        self.clips = 60 if smoke else 7442
        self.distinct_per_emotion = 1 if smoke else 4
        self.media = ({"duration": 0.5, "size": (160, 120), "fps": 15.0} if smoke else
                      {"duration": 2.5, "size": (480, 360), "fps": 30.0})
        self.epochs = 2 if smoke else 20
        # bf16 autocast on a CPU without native bf16 is emulated (the smoke's training took 150 s of its 350 s
        # in it on an AVX2 CPU) and measures nothing: the smoke trains in fp32, the GPU run in bf16
        self.mixed_precision = "no" if smoke else "bf16"
        self.workers = 1 if smoke else max(1, min((os.cpu_count() or 2) - 2, 12))
        self.batch_size = 8 if smoke else 32
        # the smoke times each step in the benchmark's own process (a process start less each), on one thread (two
        # stall for seconds per step when another job holds a core: the test suite's other worker), and VAVL at width
        # 64: its bf16 step at the official width 512 is emulated on a CPU (40 s for a batch of 2 on a 2-core machine)
        tiny = ["--batch", "2", "--steps", "1", "--warmup", "0", "--latency-runs", "1", "--in-process", "--threads", "1"]
        self.step_args = {"auxformer": tiny, "vavl": [*tiny, "--hidden-size", "64"]} if smoke else {"auxformer": [], "vavl": []}
        self.predict_args = (["--audio-encoder", "mfcc", "--visual-encoder", "face-rgb", "--seconds", "1", "--runs", "1"]
                             if smoke else ["--bf16", "--runs", "5"])


def run(cmd: list[str], log: Path, env: dict | None = None) -> float:
    """Run a command as a user would; its wall time in seconds. Output goes to `log`; a failure
    raises with the end of it."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", **(env or {})})
    seconds = time.perf_counter() - t0
    if done.returncode:
        tail = log.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} ... exited {done.returncode}:\n{tail}")
    return seconds


# ---- parts --------------------------------------------------------------------------------------
def part_step(sizes: Sizes, work: Path, official_src: str | None) -> dict:
    out = {}
    for model in ("auxformer", "vavl"):
        for dtype in ("fp32", "bf16"):
            path = work / f"step_{model}_{dtype}.json"
            cmd = [sys.executable, HERE / "auxformer_step.py", "--device", sizes.device, "--dtype", dtype, "--model", model,
                   "--attn", "sdpa", "--out", path, *sizes.step_args[model]]
            if model == "auxformer" and official_src:
                cmd += ["--official-src", official_src]
            run(cmd, work / f"step_{model}_{dtype}.log")
            out[f"{model}_{dtype}"] = json.loads(path.read_text())["results"]
    ours, official = out["auxformer_bf16"]["ours_sdpa"], out["auxformer_fp32"].get("official")
    if official:
        out["auxformer_bf16_speedup_vs_official_fp32"] = official["train_step_s"]["median"] / ours["train_step_s"]["median"]
        out["auxformer_bf16_speedup_vs_official_bf16"] = out["auxformer_bf16"]["speedup_train_step_sdpa"]
    return out


def part_predict(sizes: Sizes, work: Path) -> dict:
    out = {}
    for faces in dict.fromkeys(("cpu", sizes.device)):
        path = work / f"predict_{faces}.json"
        run([sys.executable, HERE / "predict_speed.py", "--device", sizes.device, "--face-device", faces, "--threads",
             torch.get_num_threads(), "--out", path, *sizes.predict_args], work / f"predict_{faces}.log")
        report = next(iter(json.loads(path.read_text()).values()))
        out[f"faces_on_{faces}"] = {"settings": report["settings"], **report["result"]}
    return out


def part_extract(sizes: Sizes, work: Path, corpus: dict) -> dict:
    """A tenth of the corpus, faces on the device (this process) vs in CPU workers."""
    from vavl.data import read_manifest, write_manifest

    records = read_manifest(corpus["manifest"])
    records = records[: max(len(records) // 10, 6)]
    write_manifest(records, work / "tenth.jsonl")
    out = {"clips": len(records)}
    for faces in dict.fromkeys((sizes.device, "cpu")):
        log = work / f"extract_{faces}.log"
        seconds = run(extract_command(sizes, corpus, work / "tenth.jsonl", work / f"cache_tenth_{faces}", faces), log)
        out[f"faces_on_{faces}"] = rates(sizes, seconds, len(records), log)
    return out


def part_e2e(sizes: Sizes, work: Path, corpus: dict, faces: str) -> dict:
    manifest, cache, model, report = work / "crema_d.jsonl", work / "features", work / "model", work / "report"
    stages = {}
    stages["prepare"] = run([*VAVL, "prepare", "crema-d", "--root", corpus["root"], "--out", manifest, "--label", "intended"],
                            work / "e2e_prepare.log")
    extract_log = work / "e2e_extract.log"
    stages["extract"] = run(extract_command(sizes, corpus, manifest, cache, faces), extract_log)
    stages["train"] = run([sys.executable, ROOT / "recipes" / "finetune.py", "--config", ROOT / "recipes/configs/crema_d/auxformer.yaml",
                           f"data.manifest={manifest}", f"data.cache={cache}", "data.protocol=speaker-5fold", "data.fold=0",
                           f"output_dir={model}", f"train.epochs={sizes.epochs}", "train.early_stopping_patience=0",
                           f"train.mixed_precision={sizes.mixed_precision}", f"data.num_workers={sizes.workers}", "log.wandb=false",
                           "log.progress=false", "evaluate.test=false"], work / "e2e_train.log")
    stages["evaluate"] = run([*VAVL, "evaluate", "--model", model, "--manifest", manifest, "--protocol", "speaker-5fold",
                              "--fold", "0", "--split", "test", "--cache", cache, "--conditions", "av,audio,video", "--out", report,
                              "--device", sizes.device, "--batch-size", "64"], work / "e2e_evaluate.log")
    metrics = json.loads((report / "metrics.json").read_text())
    log = [json.loads(x) for x in (model / "log.jsonl").read_text().splitlines()]
    return {"clips": corpus["clips"], "stages_s": stages, "total_s": sum(stages.values()),
            "extract": {**rates(sizes, stages["extract"], corpus["clips"], extract_log), "faces_on": faces},
            "train": {"epochs": sizes.epochs, "mixed_precision": sizes.mixed_precision, "epochs_logged": len({r["epoch"] for r in log}),
                      "seconds_per_epoch": stages["train"] / sizes.epochs},
            "test_clips": metrics["n_samples"], "test_UA_av": metrics["conditions"]["av"]["fused"].get("UA"),
            "note": "stage times are wall times of the commands (process start and model building included); the "
                    f"accuracy is not a result (the corpus repeats {6 * sizes.distinct_per_emotion} distinct clips)"}


def extract_command(sizes: Sizes, corpus: dict, manifest: Path, out: Path, faces: str) -> list:
    return [*VAVL, "extract", "--manifest", manifest, "--out", out, "--audio-encoder", corpus["audio_encoder"],
            "--visual-encoder", corpus["visual_encoder"], "--random-init", "--device", sizes.device, "--face-device", faces,
            "--bf16", "--workers", sizes.workers, "--batch-size", sizes.batch_size, "--no-progress"]


def rates(sizes: Sizes, seconds: float, clips: int, log: Path) -> dict:
    """Clips/s and real-time factor of an extraction: of the command (what a user waits), and of its
    loop alone (without starting up and building the encoders), which `vavl extract` reports."""
    found = re.search(r"written in ([0-9.]+) s\)", log.read_text(errors="replace"))
    loop = float(found[1]) if found else None
    media = clips * sizes.media["duration"]
    return {"seconds": seconds, "clips_per_s": clips / seconds, "real_time_factor": seconds / media,
            "loop_seconds": loop, "loop_clips_per_s": clips / loop if loop else None,
            "loop_real_time_factor": loop / media if loop else None, "crema_d_7442_clips_s_estimate": 7442 * seconds / clips}


# ---- the corpus ---------------------------------------------------------------------------------
def crema_ids(actors: int, per_actor: int, total: int) -> list[str]:
    """CREMA-D's ids: per actor 11 sentences x 6 emotions at level XX, and IEO at LO/MD/HI (XX for
    neutral); one sentence's six emotions first, so that a few ids per actor cover every emotion."""
    per = []
    for sentence in SENTENCES[1:] + SENTENCES[:1]:
        for emotion in EMOTIONS:
            levels = ("LO", "MD", "HI") if sentence == "IEO" and emotion != "NEU" else ("XX",)
            per += [f"{sentence}_{emotion}_{level}" for level in levels]
    ids = [f"{1001 + a}_{name}" for a in range(actors) for name in per[:per_actor]]
    return ids[:total]


def build_corpus(sizes: Sizes, root: Path) -> dict:
    """Distinct synthetic clips (vavl.data.synthetic, CREMA-D layout) linked under every id, with the
    metadata `vavl prepare crema-d` reads."""
    from vavl.data.synthetic import make_corpus

    distinct = root / "distinct"
    make_corpus("crema-d", distinct, n_speakers=1, clips_per_class=sizes.distinct_per_emotion, **sizes.media)
    corpus = root / "CREMA-D"
    for sub in ("AudioWAV", "VideoFlash", "processedResults"):
        (corpus / sub).mkdir(parents=True, exist_ok=True)
    ids = crema_ids(sizes.actors, sizes.per_actor, sizes.clips)
    for n, clip_id in enumerate(ids):
        emotion = clip_id.split("_")[2]
        source = f"1001_{SENTENCES[n % sizes.distinct_per_emotion]}_{emotion}_XX"
        for sub, suffix in (("AudioWAV", ".wav"), ("VideoFlash", ".flv")):
            link(distinct / sub / f"{source}{suffix}", corpus / sub / f"{clip_id}{suffix}")
    with open(corpus / "SentenceFilenames.csv", "w", newline="") as f:
        csv.writer(f).writerows([["Stimulus_Number", "Filename"], *([i + 1, c] for i, c in enumerate(ids))])
    with open(corpus / "VideoDemographics.csv", "w", newline="") as f:
        csv.writer(f).writerows([["ActorID", "Age", "Sex"], *([1001 + a, 30, ("Male", "Female")[a % 2]] for a in range(sizes.actors))])
    with open(corpus / "processedResults" / "summaryTable.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "FileName", "VoiceVote", "VoiceLevel", "FaceVote", "FaceLevel", "MultiModalVote", "MultiModalLevel"])
        w.writerows([i + 1, c, c.split("_")[2][0], 60, c.split("_")[2][0], 60, c.split("_")[2][0], 60] for i, c in enumerate(ids))
    out = {"root": corpus, "clips": len(ids)}
    if sizes.smoke:   # tiny random encoders: a layer-norm wav2vec2 saved by transformers (50 frames/s, as the real
        # one's stride of 320 samples gives), timm's test_convnext
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                     conv_dim=(32, 32), conv_stride=(20, 16), conv_kernel=(20, 16), num_feat_extract_layers=2,
                                     num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
                                     do_stable_layer_norm=True)).save_pretrained(root / "tiny_audio")
        out.update(audio_encoder=root / "tiny_audio", visual_encoder="test_convnext")
    else:
        out.update(audio_encoder="wav2vec2-large-robust", visual_encoder="efficientnet_b2")
    from vavl.data.prepare import prepare

    prepare("crema-d", corpus, root / "all.jsonl", label="intended", log=open(os.devnull, "w"))
    out["manifest"] = root / "all.jsonl"
    return out


def link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:   # no hard links here (another file system): a copy
        shutil.copyfile(source, target)


# ---- report -------------------------------------------------------------------------------------
def machine(sizes: Sizes) -> dict:
    gpu = torch.cuda.is_available() and sizes.device == "cuda"
    return {"device": torch.cuda.get_device_name() if gpu else "cpu", "torch": torch.__version__,
            "cuda": torch.version.cuda if gpu else None, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_1m": os.getloadavg()[0]}


def targets(parts: dict) -> dict:
    """The issue's targets, where the parts that measure them ran."""
    found = {}
    e2e, step, predict = parts.get("e2e", {}), parts.get("step", {}), parts.get("predict", {})
    if "stages_s" in e2e:
        found["crema_d_extraction_s"] = e2e["stages_s"]["extract"]
        found["e2e_s"] = e2e["total_s"]
    if "auxformer_bf16_speedup_vs_official_fp32" in step:
        found["auxformer_bf16_speedup_vs_official"] = step["auxformer_bf16_speedup_vs_official_fp32"]
    if "faces_on_cpu" in predict:   # where `vavl predict` finds faces
        found["predict_s"] = predict["faces_on_cpu"]["median_wall_s"]["total"]
    return {k: {"measured": v, "target": TARGETS[k], "met": v >= TARGETS[k] if "speedup" in k else v <= TARGETS[k]}
            for k, v in found.items()}


def write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, tiny random encoders (what the test runs)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    p.add_argument("--official-src", help="a checkout of github.com/ilucasgoncalves/AuxFormer (net/, modules/) for the step part")
    p.add_argument("--out", help=f"the JSON (default {DEFAULT_OUT.relative_to(ROOT)}; with --smoke required)")
    p.add_argument("--work", help="folder for the corpus, caches and logs (default: a temporary one, removed at the end)")
    args = p.parse_args(argv)
    parts = [x for x in args.parts.split(",") if x]
    if set(parts) - set(PARTS):
        p.error(f"--parts: unknown {sorted(set(parts) - set(PARTS))}; choose from {', '.join(PARTS)}")
    if args.smoke and not args.out:
        p.error("--smoke writes no result into recipes/benchmarks/results: give --out")
    if not args.smoke and not torch.cuda.is_available():
        p.error("no CUDA device here: run on a GPU, or --smoke on the CPU")
    if args.official_src and not (Path(args.official_src) / "net" / "avmodel_AF.py").is_file():
        p.error(f"--official-src {args.official_src}: no net/avmodel_AF.py there")
    from vavl.encoders.hf import quiet_hub

    quiet_hub()   # the stages' own lines only: no library bars
    sizes = Sizes(args.smoke)
    out = Path(args.out) if args.out else DEFAULT_OUT
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vavl-gpu-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "gpu_suite", "smoke": args.smoke, **machine(sizes), "command": " ".join(sys.argv),
              "official_src": bool(args.official_src), "parts": {}, "seconds": {}}
    failed, corpus, faces = [], None, sizes.device
    t_start = time.perf_counter()
    try:
        for part in parts:
            t0 = time.perf_counter()
            try:
                if part in ("extract", "e2e") and corpus is None:
                    t1 = time.perf_counter()
                    corpus = build_corpus(sizes, work / "corpus")
                    report["seconds"]["corpus"] = time.perf_counter() - t1
                if part == "step":
                    result = part_step(sizes, work, args.official_src)
                elif part == "predict":
                    result = part_predict(sizes, work)
                elif part == "extract":
                    result = part_extract(sizes, work, corpus)
                    faces = min((k for k in result if k.startswith("faces_on_")),   # the faster placement
                                key=lambda k: result[k]["loop_seconds"] or result[k]["seconds"])[len("faces_on_"):]
                else:
                    result = part_e2e(sizes, work, corpus, faces)
            except Exception as e:   # one part failing keeps the others' numbers
                failed.append(part)
                result = {"error": f"{type(e).__name__}: {e}"}
                print(f"gpu_suite: part {part} failed: {e}", file=sys.stderr)
            report["parts"][part] = result
            report["seconds"][part] = time.perf_counter() - t0
            if not args.smoke:   # tiny sizes on a CPU say nothing about the targets
                report["targets"] = targets(report["parts"])
            report["seconds"]["total"] = time.perf_counter() - t_start
            write(out, report)
            print(f"gpu_suite: {part} done in {report['seconds'][part]:.1f} s -> {out}", file=sys.stderr, flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report.get("targets", {}), indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Does `vavl stream` keep up with a live source? A file played at its own pace (--realtime).

    python recipes/benchmarks/stream_realtime.py                  # 10 minutes of media, 2 threads, --window 2 --hop 0.5
    python recipes/benchmarks/stream_realtime.py --minutes 1      # a shorter check
    python recipes/benchmarks/stream_realtime.py --precision int8 --out recipes/benchmarks/results/stream_realtime_int8.json
    python recipes/benchmarks/stream_realtime.py --incremental --precision int8 \
        --out recipes/benchmarks/results/stream_realtime_incremental_int8.json     # vavl stream --incremental
    python recipes/benchmarks/stream_realtime.py --compare --minutes 0.5 --out /tmp/compare.json   # the two modes' answers

The model: AuxFormer on wav2vec2-large-robust (first 12 layers, full width) + EfficientNet-B2, random
weights built from their configs (no download; the same architecture and cost as trained ones),
saved to a temporary folder. The media: a 640x360 25 fps H.264 file with 48 kHz stereo AAC, the
astronaut face of predict_speed.py drifting across the frame and a voiced tone, written frame by
frame (never whole in memory). The command, run as a child process (niced, OMP_NUM_THREADS=2):

    vavl stream media.mp4 --model DIR --realtime --window 2 --hop 0.5

Measured from its stdout lines and /proc: the real-time factor (the seconds scoring takes, the sum of
each line's stage `timings`, per window scored, times the windows the media holds, over the media
seconds: <= 1 keeps up; queue waits are not in it, they are in the latency), the CPU real-time
factor (the process's CPU seconds per window scored, times the windows the media holds, over
threads x media seconds: an estimate for a quiet machine only; under load it overstates, as waiting
OpenMP threads spin and count as CPU time), the per-window latency (median, p95), how far the
lines fell behind the media clock (`behind`: line arrival minus window end, minus its smallest value;
it grows when scoring does not keep up), the source chunks dropped, the windows scored against those
the media holds, and the process RSS every few seconds (the RSS at 20% of the run, minute 2 of 10,
against the end). Writes results/stream_realtime.json with the machine, its load average and the command.
With --incremental the command is `vavl stream --incremental` (each audio block of one hop and each
frame worked on once, vavl/inference/stream_blocks.py); the reuse medians then count blocks too.

--compare (no realtime, no child process): how much `--incremental` changes the answers. The same
file is streamed both ways in this process (as fast as it decodes, every window scored) and the
report gives, over the windows, the label agreement, the mean L1 distance between the fused
probabilities, and the relative L2 distance between a window's audio features in the two modes
(its blocks' frames concatenated against the frames of the window encoded whole, each block frame
against the whole-window frame nearest its time; on every 4th window). With random weights the
labels mean little (an untrained head's argmax can sit on a near tie or stay fixed whatever the
input): the L1 and the feature distance are the evidence, label agreement only weak evidence.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
from predict_speed import AUDIO, VISUAL  # noqa: E402


def write_media(path: Path, seconds: float, fps: int = 25, width: int = 640, height: int = 360) -> Path:
    """A long synthetic clip written frame by frame (bounded memory)."""
    import av
    from PIL import Image
    from skimage.data import astronaut

    head = np.asarray(Image.fromarray(astronaut()[10:210, 140:310]).resize((128, 150), Image.BILINEAR))
    rate = 48000
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "28"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="stereo")
        frame = np.empty((height, width, 3), np.uint8)
        n = int(seconds * fps)
        per_frame = rate // fps
        for i in range(n):
            frame[:] = (70, 80, 100)
            phase = (i % (20 * fps)) / (20 * fps)                 # back and forth every 20 s
            x = 100 + int(300 * (1 - abs(2 * phase - 1)))
            frame[100:250, x:x + 128] = head
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
            t = (np.arange(per_frame) + i * per_frame) / rate
            voice = (0.3 * np.sin(2 * np.pi * (150 + 40 * np.sin(2 * np.pi * t / 7)) * t)
                     * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(np.stack([voice, voice]), format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts = rate, i * per_frame
            for packet in audio.encode(chunk):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def build_model(folder: Path) -> Path:
    import vavl

    model = vavl.create_model("auxformer", audio_encoder=AUDIO, visual_encoder=VISUAL, num_labels=6,
                              pretrained_encoders=False)   # untrained: same cost, no download
    model.save_pretrained(folder)
    return folder


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values, q):
    return round(float(np.percentile(values, q)), 3) if values else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="length of the synthetic media")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window", type=float, default=2.0)
    p.add_argument("--hop", type=float, default=0.5)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--precision", default="fp32", help="the encoders' precision (vavl stream --precision)")
    p.add_argument("--incremental", action="store_true", help="vavl stream --incremental")
    p.add_argument("--compare", action="store_true",
                   help="no realtime run: stream the file both ways in this process and compare the answers")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--out", default=str(HERE / "results" / "stream_realtime.json"))
    p.add_argument("--raw", help="also write the lines (with their arrival times) and the samples to this JSON file")
    p.add_argument("--from-raw", metavar="RAW", help="no run: compute the report from a --raw file of an earlier run")
    args = p.parse_args()

    seconds = args.minutes * 60
    if args.from_raw:
        raw = json.loads(Path(args.from_raw).read_text())
        return summarize(args, raw["lines"], raw["rss"], raw["cpu"], raw["loads"], raw["code"], raw["stderr"],
                      raw.get("load_before"), raw.get("wall"), raw.get("load_after"))
    load_before = [round(x, 2) for x in os.getloadavg()]
    if args.compare:
        return compare(args, load_before)
    with tempfile.TemporaryDirectory(prefix="vavl-stream-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        media = write_media(tmp / "media.mp4", seconds)
        build_model(tmp / "model")
        print(f"media and model ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        argv = ["nice", "-n", str(args.nice), sys.executable, "-m", "vavl.cli", "stream", str(media), "--model",
                str(tmp / "model"), "--realtime", "--window", str(args.window), "--hop", str(args.hop),
                "--precision", args.precision] + (["--incremental"] if args.incremental else [])
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        start = time.monotonic()
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        samples, loads, cpu, done = [], [], [], threading.Event()

        def sample():
            while not done.is_set():
                rss, used = rss_mb(child.pid), cpu_seconds(child.pid)
                if rss is not None:
                    samples.append((time.monotonic(), rss))
                if used is not None:
                    cpu.append((time.monotonic(), used))
                loads.append(round(os.getloadavg()[0], 2))
                done.wait(args.sample_every)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        lines = []
        for text in child.stdout:
            lines.append((time.monotonic(), json.loads(text)))
        err = child.stderr.read()
        code = child.wait()
        done.set()
        sampler.join()
    wall = time.monotonic() - start
    if args.raw:
        Path(args.raw).write_text(json.dumps({"lines": lines, "rss": samples, "cpu": cpu, "loads": loads, "code": code,
                                              "stderr": err[-5000:], "load_before": load_before, "wall": wall,
                                              "load_after": [round(x, 2) for x in os.getloadavg()]}))
    return summarize(args, lines, samples, cpu, loads, code, err, load_before, wall, None)


def summarize(args, lines, samples, cpu, loads, code, err, load_before, wall, load_after=None) -> int:
    seconds = args.minutes * 60
    command = ["vavl", "stream", "media.mp4", "--model", "DIR", "--realtime", "--window", f"{args.window:g}",
               "--hop", f"{args.hop:g}", "--precision", args.precision] + (["--incremental"] if args.incremental else [])
    if wall is None and lines and samples:
        wall = lines[-1][0] - samples[0][0]
    windows = [(t, w) for t, w in lines if "event" not in w]
    event = lines[-1][1] if lines and "event" in lines[-1][1] else None
    if code != 0 or not windows:
        print(f"vavl stream exited {code}: {err.strip()[-2000:]}", file=sys.stderr)
        return 1
    latency = [w["latency"] for _, w in windows]
    media_played = windows[-1][1]["end"]
    lag = [t - w["end"] for t, w in windows]
    behind = [x - min(lag) for x in lag]
    clock0 = min(lag) - min(latency)   # monotonic time of media time 0: the quickest line's arrival less its scoring
    at = 0.2 * media_played   # minute 2 of 10

    def rss_near(media_t, span=10.0):
        picked = [r for t, r in samples if abs((t - clock0) - media_t) <= span]
        return round(statistics.median(picked), 1) if picked else None

    rss_early, rss_end = rss_near(at), rss_near(media_played - 10.0)
    # CPU seconds per scored window while playing (after the model loaded), times the windows the media
    # holds, over threads x media seconds: the real-time factor an idle machine would give (the measured
    # one waits for the CPU under load, and windows skipped then cost nothing)
    playing = [c for t, c in cpu if t >= clock0]
    expected = int(np.floor((seconds - args.window) / args.hop)) + 1
    cpu_rtf = (round((playing[-1] - playing[0]) / len(windows) * expected / (args.threads * seconds), 3)
               if len(playing) > 1 else None)
    scored = [w for _, w in windows if w.get("timings")]
    names = ("decode", "faces", "audio_encoder", "visual_encoder", "fusion")
    stages = {k: round(statistics.median(w["timings"].get(k, 0.0) for w in scored), 3) if scored else None for k in names}
    # scoring seconds per window (its stages' wall time), times the windows the media holds, over the media seconds
    busy = [sum(w["timings"].get(k, 0.0) for k in names) for w in scored]
    rtf = round(statistics.mean(busy) * expected / seconds, 3) if busy else None
    report = {
        "benchmark": "stream_realtime",
        "command": " ".join(command) + f"  (nice -n {args.nice}, OMP_NUM_THREADS={args.threads}; this script: "
                   f"python recipes/benchmarks/stream_realtime.py --minutes {args.minutes:g})",
        "model": f"auxformer + {AUDIO} (12 layers) + {VISUAL}, random weights",
        "media": f"{args.minutes:g} min synthetic 640x360 25 fps H.264 + 48 kHz AAC, one moving face",
        "window": args.window, "hop": args.hop, "threads": args.threads, "precision": args.precision,
        "incremental": bool(args.incremental),
        "media_seconds": round(media_played, 1), "wall_seconds": round(wall, 1) if wall else None,
        "windows": len(windows), "windows_the_media_holds": expected, "windows_scored": len(scored),
        "windows_by_modalities": {"+".join(m) or "none": sum(1 for w in scored + [x for _, x in windows if not x.get("timings")]
                                                              if (w.get("modalities") or []) == list(m))
                                  for m in (("audio", "visual"), ("audio",), ("visual",), ())},
        "dropped_chunks": max([w.get("dropped_chunks", 0) for _, w in windows] + [0]),
        "real_time_factor": rtf,
        "scoring_s_per_window": {"median": pct(busy, 50), "p95": pct(busy, 95)} if busy else None,
        "skipped_windows": max([w.get("skipped_windows", 0) for _, w in windows] + [0]),
        "reuse_per_window_median": {k: pct([w["reuse"].get(k, 0) for w in scored if w.get("reuse")], 50)
                                    for k in ("blocks_encoded", "blocks_reused", "frames_detected", "detections_reused",
                                              "frames_encoded", "features_reused")},
        "cpu_real_time_factor": cpu_rtf,
        "latency_s": {"median": pct(latency, 50), "p95": pct(latency, 95), "max": pct(latency, 100)},
        "behind_media_s": {"median": pct(behind, 50), "p95": pct(behind, 95), "last": round(behind[-1], 3)},
        "stage_median_s": stages,
        "rss_mb": {"at_20pct": rss_early, "at_end": rss_end, "at_20pct_media_s": round(at, 1),
                   "change_pct": round(100 * (rss_end - rss_early) / rss_early, 2) if rss_early and rss_end else None,
                   "min": round(min(r for _, r in samples), 1), "max": round(max(r for _, r in samples), 1),
                   "samples": [[round(t - clock0, 1), round(r, 1)] for t, r in samples]},
        "end_event": event,
        "targets": {"real_time_factor<=0.5": None, "latency_p95<=1.5": None, "rss_flat_5pct": None},
        "machine": {"cpu_count": os.cpu_count(), **cpu_info(), "platform": platform.platform(),
                    "load_average_before": load_before, "load_average_after": load_after or [round(x, 2) for x in os.getloadavg()],
                    "load_average_1min_during": {"median": pct(loads, 50), "max": pct(loads, 100)}},
    }
    t = report["targets"]
    t["real_time_factor<=0.5"] = rtf is not None and rtf <= 0.5
    t["latency_p95<=1.5"] = report["latency_s"]["p95"] <= 1.5
    t["rss_flat_5pct"] = report["rss_mb"]["change_pct"] is not None and abs(report["rss_mb"]["change_pct"]) <= 5
    write_json(Path(args.out), report)
    shown = {k: v for k, v in report.items() if k != "rss_mb"}
    shown["rss_mb"] = {k: v for k, v in report["rss_mb"].items() if k != "samples"}
    print(json.dumps(shown, indent=2))
    return 0


def compare(args, load_before) -> int:
    """Stream one synthetic file in the exact mode and with incremental=True, in this process; compare."""
    import torch

    from vavl.inference.predict import prepare_model
    from vavl.inference.stream import stream_windows
    from vavl.media.live import av_events

    torch.set_num_threads(args.threads)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="vavl-stream-compare-") as tmp:
        tmp = Path(tmp)
        media = write_media(tmp / "media.mp4", seconds)
        model = prepare_model(str(build_model(tmp / "model")), "cpu", args.precision)
        p = model.processor
        runs, took = {}, {}
        for incremental in (False, True):
            events = av_events(str(media), fps=p.fps, sample_rate=p.sample_rate, max_side=p.max_side, realtime=False)
            t0 = time.perf_counter()
            lines = list(stream_windows(events, model, window=args.window, hop=args.hop, live=False, stall=60,
                                        incremental=incremental))
            took[incremental] = time.perf_counter() - t0
            runs[incremental] = [w for w in lines if "event" not in w and not w.get("partial")]
        exact, inc = runs[False], runs[True]
        if [(w["start"], w["end"]) for w in exact] != [(w["start"], w["end"]) for w in inc] or not exact:
            print("the two modes scored different windows", file=sys.stderr)
            return 1

        def fused(w):
            return np.asarray(list((w["heads"].get("fused") or w["scores"]).values()))

        l1 = [float(np.abs(fused(a) - fused(b)).sum()) for a, b in zip(exact, inc) if a["scores"] and b["scores"]]
        agree = [a["label"] == b["label"] for a, b in zip(exact, inc) if a["scores"] and b["scores"]]
        wave = p.decode(str(media), video=False).audio
        rel = audio_distance(model, wave, p.sample_rate, [w["start"] for w in exact][::4], args.window, args.hop)
        per_window = {k: round(statistics.mean(sum(w["timings"].values()) for w in r), 3) for k, r in runs.items()}
    report = {
        "benchmark": "stream_incremental_compare",
        "command": f"python recipes/benchmarks/stream_realtime.py --compare --minutes {args.minutes:g} "
                   f"--precision {args.precision} (OMP threads {args.threads})",
        "model": f"auxformer + {AUDIO} (12 layers) + {VISUAL}, random weights",
        "media": f"{args.minutes:g} min synthetic 640x360 25 fps H.264 + 48 kHz AAC, one moving face",
        "window": args.window, "hop": args.hop, "precision": args.precision, "windows": len(exact),
        "label_agreement": round(float(np.mean(agree)), 4) if agree else None,
        "label_agreement_note": "random weights: weak evidence (an untrained head's argmax may not depend on the input)",
        "fused_probability_l1": {"mean": round(float(np.mean(l1)), 5), "p95": pct(l1, 95), "max": pct(l1, 100)},
        "audio_feature_relative_l2": {"median": pct(rel, 50), "mean": round(float(np.mean(rel)), 4),
                                      "max": pct(rel, 100), "windows": len(rel)},
        "scoring_s_per_window_mean": {"exact": per_window[False], "incremental": per_window[True]},
        "stream_seconds": {"exact": round(took[False], 1), "incremental": round(took[True], 1)},
        "machine": {"cpu_count": os.cpu_count(), "cpu": _cpu_name(), "load_average_before": load_before,
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
    }
    write_json(Path(args.out), report)
    print(json.dumps(report, indent=2))
    return 0


def audio_distance(model, wave, sr, starts, window, hop) -> list[float]:
    """Per window: relative L2 between its blocks' frames (each block of `hop` s encoded alone, as
    --incremental does) and the whole window's frames, each block frame against the window frame
    nearest its time."""
    import torch

    enc = model.audio_encoder
    out = []
    with torch.inference_mode():
        def encode(a, b):
            x = torch.from_numpy(np.ascontiguousarray(wave[int(round(a * sr)):int(round(b * sr))])).unsqueeze(0)
            f, m = enc(x, torch.ones_like(x, dtype=torch.bool))
            return f[0, m[0]].float()

        for start in starts:
            whole = encode(start, start + window)
            rate = enc.frame_rate or whole.shape[0] / window
            parts, times = [], []
            for k in range(int(round(window / hop))):
                f = encode(start + k * hop, start + (k + 1) * hop)
                parts.append(f)
                times.append(k * hop + (np.arange(f.shape[0]) + 0.5) / rate)
            blocks, times = torch.cat(parts), np.concatenate(times)
            idx = np.minimum(np.floor(times * rate).astype(int), whole.shape[0] - 1)
            ref = whole[torch.from_numpy(idx)]
            out.append(float((blocks - ref).norm() / ref.norm().clamp(min=1e-12)))
    return out


def write_json(out: Path, report: dict) -> None:
    """The report, written whole or not at all (tmp + os.replace)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".tmp")
    part.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(part, out)


def cpu_info() -> dict:
    """The CPU's model name and whether it has the instruction sets the precisions depend on."""
    return {"cpu": _cpu_name(), "cpu_flags": {f: _has_flag(f) for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _has_flag(flag: str) -> bool | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return any(flag in line.split() for line in text.splitlines() if line.startswith("flags"))


if __name__ == "__main__":
    sys.exit(main())

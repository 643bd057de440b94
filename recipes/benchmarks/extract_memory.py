"""Peak memory of `vavl extract` on one long file and on a 90-file folder.

    python recipes/benchmarks/extract_memory.py                 # a 2-hour file and the 90-file folder
    python recipes/benchmarks/extract_memory.py --hours 0.25    # a quicker look

Long file: a synthetic MP4 of --hours hours, 64x64 video at 1 fps (H.264) with mono 16 kHz AAC
audio (a slow tone plus noise), written here with PyAV a second at a time. Folder: the malformed
and unusual files of tests/malformed_media.py (the hostile-media battery of the test suite),
filled up to 90 files with 2 s 96x96 synthetic clips. Encoders: the classic `mfcc` and `face-grey`
presets (no weights; MTCNN still finds faces), so the run measures decoding, face finding and the
pipeline's own buffers rather than a large network. Each `vavl extract` runs as a child of a small
launcher process; its peak RSS is the launcher's `getrusage(RUSAGE_CHILDREN).ru_maxrss`, so
nothing the benchmark itself holds is counted. A --short-seconds file of the same kind is measured
first: the floor (imports, MTCNN), so the JSON shows how peak RSS grows with the duration. The target of issue 29: a 2-hour file under 2 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RATE = 16000
LAUNCHER = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
            "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
            "print(json.dumps({'rc': rc.returncode, 'wall_s': time.perf_counter() - t, "
            "'peak_rss_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
            "'stderr_tail': rc.stderr[-600:]}))")


def write_long_file(path: Path, seconds: int, size: int = 64) -> Path:
    """An MP4 of `seconds` seconds, written one second at a time (never held whole)."""
    import av

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=1)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=RATE, layout="mono")
        for s in range(seconds):
            image = ((xx * 3 + yy * 2 + s * 5) % 256).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.stack([image, image[::-1], image.T], -1), format="rgb24")
            frame.pts, frame.time_base = s, Fraction(1, 1)
            out.mux(video.encode(frame))
            t = np.arange(RATE) / RATE + s
            wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * np.sin(s / 30)) * t) + 0.02 * rng.standard_normal(RATE)
            chunk = av.AudioFrame.from_ndarray(wave.astype(np.float32)[None], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = RATE, s * RATE, Fraction(1, RATE)
            out.mux(audio.encode(chunk))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


def folder_records(folder: Path, n: int) -> list[dict]:
    """The hostile-media battery's files, then short synthetic clips up to `n` files."""
    sys.path.insert(0, str(ROOT / "tests"))
    from malformed_media import make_malformed_folder   # noqa: E402 (tests/ is not a package)

    from vavl.media import write_clip

    files = sorted(make_malformed_folder(folder).values())
    rng = np.random.default_rng(1)
    for i in range(max(0, n - len(files))):
        frames = rng.integers(0, 255, (20, 96, 96, 3), dtype=np.uint8)
        files.append(write_clip(folder / f"filler_{i:02d}.mp4", frames, fps=10,
                                audio=0.1 * rng.standard_normal(2 * RATE).astype(np.float32)))
    records = []
    for i, path in enumerate(files[:n]):
        audio_only = Path(path).suffix.lower() in (".wav", ".mp3")
        records.append({"id": f"f{i:02d}_{Path(path).name}", "audio": str(path),
                        "video": None if audio_only else str(path)})
    return records


def measure(manifest: Path, cache: Path, args) -> dict:
    command = [sys.executable, "-m", "vavl.cli", "extract", "--manifest", str(manifest), "--out", str(cache),
               "--audio-encoder", "mfcc", "--visual-encoder", "face-grey", "--fps", str(args.fps), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True, env=env,
                          cwd=ROOT, check=True)
    result = json.loads(done.stdout)
    result["command"] = "vavl " + " ".join(command[3:])
    index = cache / "index.jsonl"
    result["clips_cached"] = sum(1 for line in index.read_text().splitlines() if line.strip()) if index.exists() else 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=2.0, help="length of the long file")
    parser.add_argument("--short-seconds", type=int, default=60,
                        help="a short file of the same kind, measured first: the floor (imports, MTCNN) to compare with")
    parser.add_argument("--files", type=int, default=90, help="files in the folder run (0: skip it)")
    parser.add_argument("--fps", type=float, default=1.0, help="face frames per second for extract")
    parser.add_argument("--out", default=str(HERE / "results" / "extract_memory.json"))
    args = parser.parse_args()

    from vavl.data import write_manifest

    result = {"machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "load_average_start": os.getloadavg(), "target": "2-hour file under 2 GB peak RSS (issue 29)"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.short_seconds:
            write_long_file(tmp / "short.mp4", args.short_seconds)
            write_manifest([{"id": "short", "audio": str(tmp / "short.mp4"), "video": str(tmp / "short.mp4")}],
                           tmp / "short.jsonl")
            result["short_file"] = {"seconds": args.short_seconds, **measure(tmp / "short.jsonl", tmp / "cache_short", args)}
            print(json.dumps(result["short_file"], indent=1), flush=True)
        seconds = int(args.hours * 3600)
        t = time.perf_counter()
        long_file = write_long_file(tmp / "long.mp4", seconds)
        result["long_file"] = {"seconds": seconds, "video": "64x64 H.264 at 1 fps", "audio": "mono 16 kHz AAC",
                               "bytes": long_file.stat().st_size, "write_s": round(time.perf_counter() - t, 1)}
        write_manifest([{"id": "long", "audio": str(long_file), "video": str(long_file)}], tmp / "long.jsonl")
        result["long_file"].update(measure(tmp / "long.jsonl", tmp / "cache_long", args))
        print(json.dumps(result["long_file"], indent=1), flush=True)
        if args.files:
            records = folder_records(tmp / "media", args.files)
            write_manifest(records, tmp / "folder.jsonl")
            result["folder"] = {"files": len(records), "what": "tests/malformed_media.py battery + 2 s synthetic clips"}
            result["folder"].update(measure(tmp / "folder.jsonl", tmp / "cache_folder", args))
            print(json.dumps(result["folder"], indent=1), flush=True)
    if "short_file" in result:
        long, short = result["long_file"], result["short_file"]
        result["long_file"]["rss_growth_mib_per_media_hour"] = round(
            (long["peak_rss_mib"] - short["peak_rss_mib"]) / ((long["seconds"] - short["seconds"]) / 3600), 1)
    result["long_file"]["under_2_gb"] = result["long_file"]["peak_rss_mib"] < 2048
    result["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""`vavl predict`: emotion scores for media files and folders.

    vavl predict clip.mp4 folder/ --model runs/auxformer --json --csv out.csv --timeline out.png

Every file of a batch is accounted for: scored, reported with no prediction (and why), or listed as
failed with its reason; one bad file never stops the others, and unexpected errors leave their
traceback in a log file instead of on the console (exit codes in vavl/core/jobs.py).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..core.devices import PRECISIONS
from ..core.errors import DataError, MediaError
from ..core.files import atomic_path
from ..core.jobs import EXIT_CODES, ErrorLog, check_output_file, describe, exit_code
from ..media.decode import MEDIA_SUFFIXES, is_media_file
from .args import bounded


def expand_paths(paths: list[str]) -> list[str]:
    """Files as given; folders -> their media files (recursive, sorted), broken links included so
    that they are reported rather than skipped without a word."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(str(f) for f in Path(p).rglob("*")
                          if (f.is_file() or f.is_symlink() and not f.exists()) and is_media_file(f))
        else:
            out.append(p)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="media files or folders")
    parser.add_argument("--model", required=True, help="folder written by save_pretrained (or a zoo name with weights)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file per line on stdout")
    parser.add_argument("--csv", metavar="FILE", help="also write a table: one row per file (failed ones too)")
    parser.add_argument("--timeline", metavar="PNG", help="plot scores over time (several files: PNG_<name>.png)")
    parser.add_argument("--log", metavar="FILE", help="where tracebacks of unexpected errors go "
                        "(default: vavl-predict-<time>.log in the temporary folder, written only if needed)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--window", type=bounded(1, 3600, unit=" seconds"), default=30.0,
                        help="seconds decoded and encoded at a time (1 to 3600)")
    parser.add_argument("--step", type=bounded(0.1, 3600, unit=" seconds"), default=1.0,
                        help="seconds per timeline entry (0.1 to 3600)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU: all model stages; CPU: the speech encoder)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="the encoders' weights: fp32; bf16 (cast once, conv nets channels-last); int8 (dynamic "
                             "quantisation of Linear layers, CPU); auto (bf16 where the CPU has AMX / AVX-512 BF16, "
                             "else fp32; `vavl env` says which)")
    parser.epilog = EXIT_CODES.format(items="file")


def _summary(r: dict[str, Any]) -> str:
    if r["scores"] is None:
        what = "no prediction"
    elif r["label"] is None:
        what = " ".join(f"{k}={v:.3f}" for k, v in r["scores"].items())
    else:
        what = f"{r['label']} {r['scores'][r['label']]:.2f}"
    mods = "+".join(r["modalities"]) or "nothing"
    note = f"; {'; '.join(r['notes'])}" if r["notes"] else ""
    return f"{r['file']}: {what} ({mods}; face in {r['face_frames']}/{r['frames']} frames{note})"


def _timeline_paths(base: str, files: list[str]) -> dict[str, str]:
    """One PNG per file: `base` itself for one file, else base_<stem>.png (numbered where stems repeat)."""
    if len(files) == 1:
        return {files[0]: base}
    b, seen, out = Path(base), {}, {}
    for file in files:
        stem = Path(file).stem
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"
        out[file] = str(b.with_name(f"{b.stem}_{name}{b.suffix or '.png'}"))
    return out


def _write_csv(path: str, results: list[dict[str, Any]]) -> None:
    """One row per file; a failed file has its reason in `error` and empty scores."""
    names = []
    for r in results:
        for k in r.get("scores") or {}:
            if k not in names:
                names.append(k)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "modalities", "frames", "face_frames", "duration", "decoded", "notes", "error", *names])
        for r in results:
            s = r.get("scores") or {}
            w.writerow([r["file"], r.get("label") or "", "+".join(r.get("modalities", [])), r.get("frames", ""),
                        r.get("face_frames", ""), r.get("duration", ""), r.get("decoded", ""),
                        "; ".join(r.get("notes", [])), r.get("error", ""), *[s.get(n, "") for n in names]])


def _default_log() -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"vavl-predict-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.devices import check_device
    from ..inference.predict import predict, prepare_model

    for option, path in (("--csv", args.csv), ("--timeline", args.timeline), ("--log", args.log)):
        if path:
            check_output_file(path, option)   # before any work, not after it
    device = check_device(args.device)
    files = expand_paths(args.paths)
    if not files:
        raise MediaError(f"{' '.join(args.paths)}: no media files ({', '.join(MEDIA_SUFFIXES)})")
    model = prepare_model(args.model, device, args.precision, args.bf16)
    log = ErrorLog(args.log or _default_log(), exclusive=not args.log)
    pngs = _timeline_paths(args.timeline, files) if args.timeline else {}
    rows, failures, unscored, plot_failures = [], [], 0, []
    for file in tqdm(files, desc="predict", unit="file", disable=len(files) == 1, file=sys.stderr):
        try:
            r = predict(file, model, device=device, window=args.window, step=args.step, bf16=args.bf16)
            if args.timeline and r["scores"] is not None:
                _plot(r, pngs[file], plot_failures)
            line = json.dumps(r, allow_nan=False) if args.json else _summary(r)
        except Exception as e:   # one bad file never stops the batch
            msg = log.record(file, *describe(file, e))
            failures.append(file)
            rows.append({"file": file, "error": msg})
            tqdm.write(f"vavl predict: error: {msg}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": file, "error": msg}), flush=True)
            continue
        unscored += r["scores"] is None
        rows.append(r)
        print(line, flush=True)
    table_error = None
    if args.csv:
        try:
            _write_csv(args.csv, rows)
        except DataError as e:   # a full disk: the scores are on stdout above; say so in one line
            table_error = f"{e}; the scores are in the lines printed above"
    if plot_failures and len(files) == 1:
        print(f"vavl predict: warning: {plot_failures[0]} (the scores above are not affected)", file=sys.stderr)
    if len(files) > 1:
        scored = len(files) - len(failures) - unscored
        parts = [f"{len(files)} files: {scored} scored, {unscored} with no prediction, {len(failures)} failed"]
        if failures:
            parts.append(", ".join(failures[:10]) + (f" and {len(failures) - 10} more" if len(failures) > 10 else ""))
        if log.count:
            parts.append(f"tracebacks of {log.count} unexpected errors in {log.path}")
        if plot_failures:
            parts.append(f"{len(plot_failures)} timelines not written (e.g. {plot_failures[0]})")
        if args.csv and not table_error:
            parts.append(f"table: {args.csv}")
        print(f"vavl predict: {'; '.join(parts)}", file=sys.stderr)
    if table_error:
        raise DataError(table_error)
    return exit_code(len(files) - len(failures), len(failures))


def _plot(r: dict[str, Any], png: str, failures: list[str]) -> None:
    """The file's timeline PNG; a plot that cannot be written is a note on the file (its scores stand)."""
    from ..evaluation.plots import plot_timeline

    try:
        plot_timeline(r, png)
    except Exception as e:   # a full disk, a plotting problem: the output, not the input, failed
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        note = f"timeline {png} not written ({type(e).__name__}: {reason})"
        r["notes"] = [*r.get("notes", []), note]
        failures.append(note)

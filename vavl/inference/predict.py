"""From a media file to emotion scores: `vavl.predict(path, model=...)` and `vavl predict`.

    result = vavl.predict("clip.mp4", model="runs/auxformer")   # a save_pretrained folder or an AudioVisualModel
    result["label"], result["scores"], result["modalities"], result["timeline"]

    vavl predict clip.mp4 folder/ --model runs/auxformer --json --csv out.csv --timeline out.png

Every file of a batch is accounted for: scored, reported with no prediction (and why), or listed as
failed with its reason; one bad file never stops the others, and unexpected errors leave their
traceback in a log file instead of on the console (exit codes in vavl/batch.py).

The clip is decoded in windows of at most `window` seconds (bounded memory on long files); each
window goes through the processor (faces) and the encoders once. The clip score comes from the
fusion model on the whole window (duration-weighted average over windows for long clips); the
timeline runs the fusion model again on `step`-second slices of the same features.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .batch import EXIT_CODES, ErrorLog, check_output_file, describe, exit_code, positive_float
from .data.collate import pad_frames
from .errors import ConfigError, MediaError, VavlError
from .loading import load_model
from .media.arrays import ArrayClip
from .media.decode import MEDIA_SUFFIXES, decode_notes, is_media_file, probe


# ---- prediction ------------------------------------------------------------------------------
class _StageClock:
    """Wall and process-CPU seconds per stage (CPU time / threads estimates the wall time of an idle machine)."""

    STAGES = ("decode", "faces", "audio_encoder", "visual_encoder", "fusion")

    def __init__(self):
        self._wall = dict.fromkeys(self.STAGES, 0.0)
        self._cpu = dict.fromkeys(self.STAGES, 0.0)

    @contextmanager
    def __call__(self, stage: str):
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._wall[stage] += time.perf_counter() - w
            self._cpu[stage] += time.process_time() - c

    def wall(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self._wall.items()}

    def cpu(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self._cpu.items()}


def _scores(model, out) -> torch.Tensor:
    """Model output -> (b, c): class probabilities, or attribute values for regression."""
    logits = out.logits.float()
    return logits if model.fusion.config.task == "regression" else logits.softmax(-1)


def _fuse(model, feats: dict[str, Any]):
    return model.fusion(**{k: v for k, v in feats.items() if v is not None})


def _window_features(feats: dict, times: dict, spans: list[tuple[float, float]]) -> dict[str, Any]:
    """Slices of (1, t, d) features whose frame times fall in each span -> a padded batch."""
    batch = {}
    for m in ("audio", "visual"):
        x, mask = feats[f"{m}_features"], feats[f"{m}_mask"]
        if x is None:
            batch[f"{m}_features"] = batch[f"{m}_mask"] = None
            continue
        rows = []
        for j, (a, b) in enumerate(spans):
            b = np.inf if j == len(spans) - 1 else b   # frames placed past the end (a clip shorter than one frame)
            sel = torch.from_numpy((times[m] >= a) & (times[m] < b))
            sel = sel & mask[0].cpu()
            rows.append(x[0, sel.to(x.device)] if sel.any() else None)
        padded, pmask = pad_frames(rows)
        batch[f"{m}_features"] = padded.to(x.device) if padded is not None else None
        batch[f"{m}_mask"] = pmask.to(x.device) if pmask is not None else None
    return batch


def _spans(start: float, end: float, step: float) -> list[tuple[float, float]]:
    """[start, end) cut into `step`-second pieces; a last piece shorter than step / 2 joins the one before."""
    edges = list(np.arange(start, end, step)) + [end]
    if len(edges) > 2 and edges[-1] - edges[-2] < step / 2:
        del edges[-2]
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def _entry(model, scores: torch.Tensor, modalities: list[str]) -> dict[str, Any]:
    names = model.label_names
    values = {n: round(float(s), 6) for n, s in zip(names, scores.tolist())}
    label = None if model.fusion.config.task == "regression" else names[int(scores.argmax())]
    return {"label": label, "scores": values, "modalities": modalities}


@torch.inference_mode()
def predict(path, model, device: str = "cpu", window: float = 30.0, step: float = 1.0, bf16: bool = False) -> dict[str, Any]:
    """Emotion scores for one media file (or an `ArrayClip` of waveform / frames). Returns a dict
    with file, label (None for regression), scores (class -> probability, or attribute -> value),
    modalities (used), head, frames, face_frames, duration, timeline (per `step` seconds), notes
    and per-stage timings. bf16: bfloat16 autocast (GPU: encoders and fusion; CPU: the speech
    encoder only, where it is faster). Raises MediaError for unreadable files."""
    if not (window > 0 and step > 0):
        raise ConfigError(f"window={window}, step={step}: both must be > 0 seconds")
    model = load_model(model, device, media=True)
    return predict_clip(path, model, device, window, step, bf16)


class _Source:
    """What the window loop reads: a file through the processor's decoder, or arrays resampled
    the same way (vavl.media.arrays)."""

    def __init__(self, clip, processor):
        self.clip, self.processor = clip, processor
        self.arrays = isinstance(clip, ArrayClip)
        self.name = clip.name if self.arrays else str(clip)
        self.info = clip.info if self.arrays else probe(self.name)

    def window(self, start: float, end: float | None, audio: bool, video: bool):
        p = self.processor
        if self.arrays:
            return self.clip.window(start, end, p.fps, p.sample_rate, p.max_side, audio=audio, video=video)
        return p.decode(self.name, start=start, end=end, audio=audio, video=video)


def predict_clip(clip, model, device: str = "cpu", window: float = 30.0, step: float = 1.0, bf16: bool = False) -> dict[str, Any]:
    """`predict` for a loaded AudioVisualModel in eval mode on `device` (no checks of the arguments):
    what `vavl predict` and the transformers pipeline both run."""
    kind = torch.device(device).type

    def amp(stage: str):
        """bf16 where it pays: every model stage on GPUs; on CPUs only the speech transformer (timm's
        depthwise convolutions and the small fusion model were slower in bf16 on AVX512-BF16 cores)."""
        return torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16 and (kind != "cpu" or stage == "audio_encoder"))

    source = _Source(clip, model.processor)
    path, info = source.name, source.info
    clock = _StageClock()
    want_audio = model.audio_encoder is not None and info.has_audio
    want_video = model.visual_encoder is not None and info.has_video
    if not (want_audio or want_video):
        have = [m for m, h in (("audio", info.has_audio), ("video", info.has_video)) if h]
        raise MediaError(f"{path}: has {' and '.join(have) or 'no streams'} but the model takes "
                         f"{'audio' if model.audio_encoder is not None else 'video'}")
    starts = np.arange(0.0, max(info.duration, 1e-3), window) if info.duration > window else [0.0]
    clip_scores, weights, timeline, used = [], [], [], set()
    frames = face_frames = samples = nonfinite = 0
    duration = decoded = peak = 0.0
    silent = True
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        with clock("decode"):
            try:
                clip = source.window(float(start), end, audio=want_audio, video=want_video)
            except MediaError:
                if i == 0:
                    raise
                break   # the rest of the file does not decode: the "decoded x of y s" note says so
        with clock("faces"):
            inputs = model.processor(clip, audio=want_audio, video=want_video)
        frames += inputs["frames"]
        face_frames += inputs["face_frames"]
        duration += clip.duration
        decoded += clip.decoded
        samples += len(clip.audio) if clip.audio is not None else 0
        nonfinite, peak = nonfinite + clip.nonfinite, max(peak, clip.peak)
        if inputs["input_values"] is not None and float(inputs["input_values"].abs().max()) > 1e-4:
            silent = False
        feats, times = {"audio_features": None, "audio_mask": None, "visual_features": None, "visual_mask": None}, {}
        if inputs["input_values"] is not None:
            with clock("audio_encoder"), amp("audio_encoder"):
                a, am = model.audio_encoder(inputs["input_values"].to(device), inputs["attention_mask"].to(device))
            rate = getattr(model.audio_encoder, "frame_rate", None) or a.shape[1] / max(clip.duration, 1e-3)
            feats.update(audio_features=a.float(), audio_mask=am)
            times["audio"] = clip.start + (np.arange(a.shape[1]) + 0.5) / rate
        if inputs["pixel_values"] is not None:
            with clock("visual_encoder"), amp("visual_encoder"):
                v, vm = model.visual_encoder(inputs["pixel_values"].to(device), inputs["pixel_mask"].to(device))
            feats.update(visual_features=v.float(), visual_mask=vm)
            times["visual"] = np.asarray(model.visual_encoder.output_times(   # window-rate encoders: window times
                np.asarray(inputs["frame_times"], dtype=np.float64), inputs["pixel_mask"][0]), dtype=np.float64)
        if feats["audio_features"] is None and feats["visual_features"] is None:
            continue  # nothing usable in this window (e.g. video only, no face)
        with clock("fusion"), amp("fusion"):
            out = _fuse(model, feats)
            clip_scores.append(_finite(_scores(model, out)[0].cpu(), path))
            spans = _spans(clip.start, clip.start + max(clip.duration, 1e-3), step)
            wout = _fuse(model, _window_features(feats, times, spans))
        weights.append(max(clip.duration, 1e-3))
        used.update(out.modalities_used()[0])
        wscores = _finite(_scores(model, wout).cpu(), path)
        for (a, b), s, mods in zip(spans, wscores, wout.modalities_used()):
            entry = _entry(model, s, mods) if mods else {"label": None, "scores": None, "modalities": []}
            timeline.append({"start": round(a, 3), "end": round(b, 3), **entry})
    duration = max(duration, info.duration)
    notes = decode_notes(decoded, duration, nonfinite, samples, peak)
    if model.audio_encoder is not None and not info.has_audio:
        notes.append("no audio stream: audio modality missing")
    elif want_audio and samples == 0:
        notes.append("the audio stream decoded to no samples: audio modality missing")
    elif want_audio and silent:
        notes.append("audio is silent")
    if model.visual_encoder is not None and not info.has_video:
        notes.append("no video stream: visual modality missing")
    elif want_video and face_frames == 0:
        notes.append(f"no face found in {frames} frames: visual modality missing")
    notes += _untrained_notes(model)
    result: dict[str, Any] = {"file": path}
    if not clip_scores:
        result.update(label=None, scores=None, modalities=[], head="none")
        notes.append("no usable audio or face in the clip: no prediction")
    else:
        w = torch.tensor(weights)
        scores = (torch.stack(clip_scores) * w[:, None]).sum(0) / w.sum()
        mods = [m for m in ("audio", "visual") if m in used]
        result.update(_entry(model, scores, mods))
        result["head"] = "fused" if len(mods) == 2 else mods[0]
    result.update(task=model.fusion.config.task, frames=frames, face_frames=face_frames,
                  duration=round(duration, 3), decoded=round(decoded, 3), timeline=timeline, notes=notes,
                  timings=clock.wall(), cpu_timings=clock.cpu())
    return result


def _finite(scores: torch.Tensor, path: str) -> torch.Tensor:
    if not torch.isfinite(scores).all():
        raise VavlError(f"{path}: the model gave non-finite scores (NaN / inf); its weights may hold NaN or inf")
    return scores


def _untrained_notes(model) -> list[str]:
    """Encoders that full-model configs record as untrained (built with pretrained_encoders=False)."""
    notes = []
    for m in ("audio", "visual"):
        spec = getattr(model.config, f"{m}_encoder", None) or {}
        if spec.get("weights") == "random-init":
            notes.append(f"the {m} encoder has untrained (random) weights: these scores carry no meaning")
    return notes


# ---- command line ----------------------------------------------------------------------------
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
    parser.add_argument("--window", type=positive_float, default=30.0, help="seconds decoded and encoded at a time")
    parser.add_argument("--step", type=positive_float, default=1.0, help="seconds per timeline entry")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU: all model stages; CPU: the speech encoder)")
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
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "modalities", "frames", "face_frames", "duration", "decoded", "notes", "error", *names])
        for r in results:
            s = r.get("scores") or {}
            w.writerow([r["file"], r.get("label") or "", "+".join(r.get("modalities", [])), r.get("frames", ""),
                        r.get("face_frames", ""), r.get("duration", ""), r.get("decoded", ""),
                        "; ".join(r.get("notes", [])), r.get("error", ""), *[s.get(n, "") for n in names]])
    os.replace(tmp, path)


def _default_log() -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"vavl-predict-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .devices import check_device
    for option, path in (("--csv", args.csv), ("--timeline", args.timeline), ("--log", args.log)):
        if path:
            check_output_file(path, option)   # before any work, not after it
    device = check_device(args.device)
    files = expand_paths(args.paths)
    if not files:
        raise MediaError(f"{' '.join(args.paths)}: no media files ({', '.join(MEDIA_SUFFIXES)})")
    model = load_model(args.model, device, media=True)
    log = ErrorLog(args.log or _default_log())
    pngs = _timeline_paths(args.timeline, files) if args.timeline else {}
    rows, failures, unscored = [], [], 0
    for file in tqdm(files, desc="predict", unit="file", disable=len(files) == 1, file=sys.stderr):
        try:
            r = predict(file, model, device=device, window=args.window, step=args.step, bf16=args.bf16)
            line = json.dumps(r, allow_nan=False) if args.json else _summary(r)
            if args.timeline and r["scores"] is not None:
                from .timeline import plot_timeline

                plot_timeline(r, pngs[file])
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
    if args.csv:
        _write_csv(args.csv, rows)
    if len(files) > 1:
        scored = len(files) - len(failures) - unscored
        parts = [f"{len(files)} files: {scored} scored, {unscored} with no prediction, {len(failures)} failed"]
        if failures:
            parts.append(", ".join(failures[:10]) + (f" and {len(failures) - 10} more" if len(failures) > 10 else ""))
        if log.count:
            parts.append(f"tracebacks of {log.count} unexpected errors in {log.path}")
        if args.csv:
            parts.append(f"table: {args.csv}")
        print(f"vavl predict: {'; '.join(parts)}", file=sys.stderr)
    return exit_code(len(files) - len(failures), len(failures))

"""From a media file to emotion scores: `vavl.predict(path, model=...)` (the command is vavl/cli/predict.py).

    result = vavl.predict("clip.mp4", model="runs/auxformer")   # a save_pretrained folder or an AudioVisualModel
    result["label"], result["scores"], result["modalities"], result["timeline"]

The clip is decoded in windows of at most `window` seconds (bounded memory on long files); each
window goes through the processor (faces) and the encoders once. The clip score comes from the
fusion model on the whole window (duration-weighted average over windows for long clips); the
timeline runs the fusion model again on `step`-second slices of the same features.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..core.errors import ConfigError, MediaError
from ..data.collate import pad_frames
from ..media.arrays import ArrayClip
from ..media.decode import decode_notes, probe
from ..media.extent import content_windows
from ..models.loading import load_model
from .scores import StageClock, check_finite, class_scores, score_entry, untrained_notes


# ---- prediction ------------------------------------------------------------------------------
def _fuse(model, feats: dict[str, Any]):
    return model(**{k: v for k, v in feats.items() if v is not None})


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


MIN_WINDOW, MIN_STEP = 1.0, 0.1   # seconds


@torch.inference_mode()
def predict(path, model, device: str = "cpu", window: float = 30.0, step: float = 1.0, bf16: bool = False,
            precision: str | None = None) -> dict[str, Any]:
    """Emotion scores for one media file (or an `ArrayClip` of waveform / frames). Returns a dict
    with file, label (None for regression), scores (class -> probability, or attribute -> value),
    modalities (used), head, frames, face_frames, duration, timeline (per `step` seconds), notes
    and per-stage timings. bf16: bfloat16 autocast (GPU: encoders and fusion; CPU: the speech
    encoder only, where it is faster). precision: the encoders' weights on the CPU, fp32 | bf16 |
    int8 | auto (vavl.encoders.precision; a model object passed in is copied, not converted: for
    many files convert once with `prepare_model` and pass its result; None: as the model is, fp32
    for a folder).
    Raises MediaError for unreadable files."""
    if not (MIN_WINDOW <= window and MIN_STEP <= step):   # below these a file is re-decoded thousands of times
        raise ConfigError(f"window={window}, step={step}: the window must be >= {MIN_WINDOW} s and the step >= {MIN_STEP} s")
    model = prepare_model(model, device, precision, bf16)
    return predict_clip(path, model, device, window, step, bf16)


def prepare_model(model, device: str = "cpu", precision: str | None = "fp32", bf16: bool = False):
    """load_model(media=True), then the encoders converted to `precision` (resolved: auto -> bf16 or
    fp32; None: leave the model as it is); the resolved name is `model.precision`. A model object is
    copied before converting."""
    import copy

    from ..encoders.precision import apply_model_precision, resolve_precision

    if precision is None:
        return load_model(model, device, media=True)
    resolved = resolve_precision(precision, device)
    if bf16 and resolved != "fp32":
        raise ConfigError(f"--bf16 autocasts fp32 weights; it does not go with --precision {precision} ({resolved})")
    given = model
    model = load_model(model, device, media=True)
    if resolved != getattr(model, "precision", "fp32"):
        if model is given:
            model = copy.deepcopy(model)
        apply_model_precision(model, resolved)
        model.precision = resolved
    return model


def _window_starts(source, info, window: float, audio: bool, video: bool) -> tuple[list[float], int]:
    """The windows to decode, and how many of those the header's duration declares were left out.
    A file longer than one window is decoded only where its packets are (vavl.media.extent): a
    header or a timestamp that claims hours cannot make empty windows, or minutes of work."""
    if info.duration <= window:
        return [0.0], 0
    declared = math.ceil(info.duration / window - 1e-6)
    if source.arrays:
        return [k * window for k in range(declared)], 0
    starts = content_windows(source.name, window, audio=audio, video=video) or [0.0]
    return starts, max(declared - len(starts), 0)


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


def predict_clip(clip, model, device: str = "cpu", window: float = 30.0, step: float = 1.0, bf16: bool = False,
                 extras: dict | None = None, reuse=None, with_timeline: bool = True) -> dict[str, Any]:
    """`predict` for a loaded AudioVisualModel in eval mode on `device` (no checks of the arguments):
    what `vavl predict`, `vavl stream` and the transformers pipeline run. `extras`, a dict, gets per
    window the model's clip-level output ("outputs") and the face boxes of its frames ("face_boxes").
    `reuse` (vavl.inference.stream_cache.WindowReuse): the faces and visual-encoder stages through
    it, which keeps what overlapping windows share. with_timeline=False: no timeline (an empty list),
    one fusion call per window instead of two."""
    if getattr(model, "takes_views", False):   # HiCMAE: fixed-size test views, scores merged over them
        from .predict_views import predict_views

        return predict_views(clip, model, device, window, bf16, extras)
    kind = torch.device(device).type

    def amp(stage: str):
        """bf16 where it pays: every model stage on GPUs; on CPUs only the speech transformer (timm's
        depthwise convolutions and the small fusion model were slower in bf16 on AVX512-BF16 cores)."""
        return torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16 and (kind != "cpu" or stage == "audio_encoder"))

    source = _Source(clip, model.processor)
    path, info = source.name, source.info
    clock = StageClock()
    want_audio = model.audio_encoder is not None and info.has_audio
    want_video = model.visual_encoder is not None and info.has_video
    if not (want_audio or want_video):
        have = [m for m, h in (("audio", info.has_audio), ("video", info.has_video)) if h]
        raise MediaError(f"{path}: has {' and '.join(have) or 'no streams'} but the model takes "
                         f"{'audio' if model.audio_encoder is not None else 'video'}")
    starts, skipped = _window_starts(source, info, window, want_audio, want_video)
    clip_scores, weights, timeline, used = [], [], [], set()
    frames = face_frames = samples = nonfinite = 0
    duration = decoded = peak = gaps = 0.0
    silent = True
    for i, start in enumerate(starts):
        end = start + window if i + 1 < len(starts) else None
        with clock("decode"):
            try:
                clip = source.window(float(start), end, audio=want_audio, video=want_video)
            except MediaError:
                if i == 0:
                    raise
                break   # the rest of the file does not decode: the "decoded x of y s" note says so
        with clock("faces"):
            inputs = (reuse.inputs(model.processor, clip, want_audio, want_video) if reuse is not None
                      else model.processor(clip, audio=want_audio, video=want_video))
        frames += inputs["frames"]
        face_frames += inputs["face_frames"]
        if extras is not None:
            extras.setdefault("face_boxes", []).append(inputs.get("face_boxes"))
        duration += clip.duration
        decoded += clip.decoded
        samples += len(clip.audio) if clip.audio is not None else 0
        nonfinite, peak = nonfinite + clip.nonfinite, max(peak, clip.peak)
        gaps += getattr(clip, "gaps", 0.0)
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
                v, vm = (reuse.visual(model.visual_encoder, inputs, device) if reuse is not None else
                         model.visual_encoder(inputs["pixel_values"].to(device), inputs["pixel_mask"].to(device)))
            feats.update(visual_features=v.float(), visual_mask=vm)
            times["visual"] = np.asarray(model.visual_encoder.output_times(   # window-rate encoders: window times
                np.asarray(inputs["frame_times"], dtype=np.float64), inputs["pixel_mask"][0]), dtype=np.float64)
        if feats["audio_features"] is None and feats["visual_features"] is None:
            continue  # nothing usable in this window (e.g. video only, no face)
        with clock("fusion"), amp("fusion"):
            out = _fuse(model, feats)
            if extras is not None:
                extras.setdefault("outputs", []).append(out)
            clip_scores.append(check_finite(class_scores(model, out)[0].cpu(), path))
            if with_timeline:
                spans = _spans(clip.start, clip.start + max(clip.duration, 1e-3), step)
                wout = _fuse(model, _window_features(feats, times, spans))
        weights.append(max(clip.duration, 1e-3))
        used.update(out.modalities_used()[0])
        if with_timeline:
            wscores = check_finite(class_scores(model, wout).cpu(), path)
            for (a, b), s, mods in zip(spans, wscores, wout.modalities_used()):
                entry = score_entry(model, s, mods) if mods else {"label": None, "scores": None, "modalities": []}
                timeline.append({"start": round(a, 3), "end": round(b, 3), **entry})
    duration = max(duration, info.duration)
    notes = decode_notes(decoded, duration, nonfinite, samples, peak, gaps)
    if skipped:
        notes.append(f"{skipped} of the {skipped + len(starts)} windows of {window:g} s that the declared "
                     f"{info.duration:.0f} s span hold no packets: only the {len(starts)} with content were decoded")
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
    notes += untrained_notes(model)
    result: dict[str, Any] = {"file": path}
    if not clip_scores:
        result.update(label=None, scores=None, modalities=[], head="none")
        notes.append("no usable audio or face in the clip: no prediction")
    else:
        w = torch.tensor(weights)
        scores = (torch.stack(clip_scores) * w[:, None]).sum(0) / w.sum()
        mods = [m for m in ("audio", "visual") if m in used]
        result.update(score_entry(model, scores, mods))
        result["head"] = "fused" if len(mods) == 2 else mods[0]
    result.update(task=model.task, precision=getattr(model, "precision", "fp32"), frames=frames, face_frames=face_frames,
                  duration=round(duration, 3), decoded=round(decoded, 3), timeline=timeline, notes=notes,
                  timings=clock.wall(), cpu_timings=clock.cpu())
    return result

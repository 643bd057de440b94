"""`predict` for models that score a clip by test views (HiCMAE): the processor cuts the clip into
the model's fixed-size views (frames + fbank), the model scores each, and the clip's scores are the
mean of the views' softmax, as the official test merges them. Called by vavl.inference.predict for
models with `takes_views`; returns the same dict as `predict`. The timeline has one entry per view.

Only the first `window` seconds are decoded (HiCMAE's views sit at the start and the end of what is
decoded; its clips are a few seconds long); a note says when a file is longer.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..core.errors import MediaError
from ..media.decode import decode_notes


def _view_times(inputs: dict, processor) -> list[tuple[float, float]]:
    """(start, end) seconds each view covers: its face frames' times, or the audio span."""
    spans = []
    n = len(inputs["frame_indices"]) if inputs["frame_indices"] is not None else len(inputs["audio_spans"])
    for k in range(n):
        if inputs["frame_indices"] is not None and len(inputs["frame_times"]):
            idx = inputs["frame_indices"][k]
            times = inputs["frame_times"]
            last = min(int(idx[-1]) + processor.frame_step, len(times) - 1)
            spans.append((float(times[int(idx[0])]), float(times[last])))
        else:
            a, b = inputs["audio_spans"][k]
            spans.append((a / processor.sample_rate, b / processor.sample_rate))
    return [(round(a, 3), round(max(a, b), 3)) for a, b in spans]


def predict_views(clip, model, device: str = "cpu", window: float = 30.0, bf16: bool = False,
                  extras: dict | None = None) -> dict[str, Any]:
    from .predict import _Source
    from .scores import StageClock, check_finite, untrained_notes

    kind = torch.device(device).type
    processor = model.processor
    source = _Source(clip, processor)
    path, info = source.name, source.info
    if not (info.has_audio or info.has_video):
        raise MediaError(f"{path}: has no audio or video stream")
    clock = StageClock()
    end = window if info.duration > window else None
    with clock("decode"):
        decoded = source.window(0.0, end, audio=info.has_audio, video=info.has_video)
    with clock("faces"):
        inputs = processor(decoded, audio=info.has_audio, video=info.has_video)
    if extras is not None:   # as predict_clip: the face boxes of the decoded frames (vavl stream's face track)
        extras.setdefault("face_boxes", []).append(inputs.get("face_boxes"))
    notes = decode_notes(decoded.decoded if decoded.decoded is not None else decoded.duration, decoded.duration,
                         decoded.nonfinite, len(decoded.audio) if decoded.audio is not None else 0, decoded.peak)
    if end is not None:
        notes.append(f"only the first {window:g} s of {info.duration:.2f} s were scored (HiCMAE's views); "
                     "pass --window to change it")
    if not info.has_audio:
        notes.append("no audio stream: audio modality missing")
    elif inputs["input_features"] is None:
        notes.append("the audio stream decoded to no samples: audio modality missing")
    elif decoded.audio is not None and float(np.abs(decoded.audio).max(initial=0.0)) <= 1e-4:
        notes.append("audio is silent")
    if not info.has_video:
        notes.append("no video stream: visual modality missing")
    elif inputs["face_frames"] == 0:
        notes.append(f"no face found in {inputs['frames']} frames: visual modality missing")
    notes += untrained_notes(model)
    result: dict[str, Any] = {"file": path}
    timeline: list[dict[str, Any]] = []
    if inputs["pixel_values"] is None and inputs["input_features"] is None:
        result.update(label=None, scores=None, modalities=[], head="none")
        notes.append("no usable audio or face in the clip: no prediction")
    else:
        feed = {k: inputs[k].to(device) for k in ("pixel_values", "input_features") if inputs[k] is not None}
        with clock("fusion"), torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16 and kind != "cpu"):
            out = model(**feed)
        views = check_finite(out.logits.float().softmax(-1).cpu(), path)
        scores = views.mean(0)
        names = model.label_names
        mods = [m for m in ("audio", "visual") if m in out.modalities_used()[0]]
        result.update(label=names[int(scores.argmax())], scores={n: round(float(s), 6) for n, s in zip(names, scores)},
                      modalities=mods, head="fused" if len(mods) == 2 else mods[0])
        for (a, b), s in zip(_view_times(inputs, processor), views):
            timeline.append({"start": a, "end": b, "label": names[int(s.argmax())],
                             "scores": {n: round(float(x), 6) for n, x in zip(names, s)}, "modalities": mods})
    result.update(task=model.task, frames=inputs["frames"], face_frames=inputs["face_frames"],
                  duration=round(max(info.duration, decoded.duration), 3),
                  decoded=round(decoded.decoded if decoded.decoded is not None else decoded.duration, 3),
                  timeline=timeline, notes=notes, timings=clock.wall(), cpu_timings=clock.cpu())
    return result

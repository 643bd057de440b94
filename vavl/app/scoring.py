"""What the app shows for a clip, computed without Gradio.

    model = load(model_dir, precision="fp32")
    answer = score(model, "clip.mp4", workdir, drop=None)   # drop: None, "audio" or "video"
    answer["result"]   # exactly what `vavl predict --json` prints for the clip
    answer["heads"]    # {"fused" | "audio" | "visual": {class: probability}}: the heads the clip allows
    answer["crops"]    # up to 8 of the face crops the visual encoder saw, (size, size, 3) uint8
    answer["timeline"] # the PNG of `vavl predict --timeline`

The answer is `predict_clip`, the function behind `vavl predict`, with its default window and step.
Dropping a modality copies the clip's packets without that stream (no re-encoding) into a new file,
which `predict_clip` then scores as it scores any clip that lacks the stream: the model gets no
features for it and applies its own missing-modality rule.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..core.errors import MediaError

WINDOW, STEP = 30.0, 1.0   # `vavl predict`'s defaults
MAX_CROPS = 8


def load(model, device: str = "cpu", precision: str = "fp32"):
    """The model as `vavl predict --precision` loads it (folder or zoo name -> AudioVisualModel in eval mode)."""
    from ..inference.predict import prepare_model

    return prepare_model(model, device, precision)


def without_stream(path: str | os.PathLike, drop: str, out: str | os.PathLike) -> str | None:
    """Copy `path` into `out` (Matroska) without its `drop` ("audio" or "video") streams; packets are
    copied as they are. None when nothing else is left (an audio file without its audio)."""
    if drop not in ("audio", "video"):
        raise ValueError(f"drop={drop!r}: give 'audio' or 'video'")
    try:
        src = av.open(str(path))
    except Exception as e:
        raise MediaError(f"{path}: cannot open ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    with src:
        keep = [s for s in src.streams if s.type in ("audio", "video") and s.type != drop]
        if not keep:
            return None
        with av.open(str(out), "w", format="matroska") as dst:
            streams = {s.index: dst.add_stream_from_template(s) for s in keep}
            for packet in src.demux(keep):
                if packet.dts is None:   # the demuxer's flush packets
                    continue
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    return str(out)


def heads(model, outputs: list) -> dict[str, dict[str, float]]:
    """Probabilities (values, for regression) of the fused, audio and visual heads, each where the
    clip has what it needs (the fused head: both modalities), averaged over predict's windows (one
    window for clips up to 30 s)."""
    import torch

    sums: dict[str, list] = {}
    for out in outputs:
        audio, visual = bool(out.audio_present[0]), bool(out.visual_present[0])
        for head, logits, ok in (("fused", out.fused_logits, audio and visual), ("audio", out.audio_logits, audio),
                                 ("visual", out.visual_logits, visual)):
            if ok and logits is not None:
                s = logits[0].float().cpu()
                sums.setdefault(head, []).append(s if model.task == "regression" else torch.softmax(s, -1))
    return {head: {n: round(float(x), 6) for n, x in zip(model.label_names, torch.stack(v).mean(0).tolist())}
            for head, v in sums.items()}


def face_crops(model, path: str, boxes) -> list[np.ndarray]:
    """Up to MAX_CROPS of the crops the visual encoder got from the first window: the frames decoded
    as predict decodes them, cut where the face track's boxes are (FaceCropper.squares / crop)."""
    if boxes is None or model.visual_encoder is None:
        return []
    valid = np.flatnonzero(~np.isnan(boxes).any(1))
    if not len(valid):
        return []
    clip = model.processor.decode(path, start=0.0, end=WINDOW, audio=False, video=True)
    if clip.frames is None or len(clip.frames) != len(boxes):
        return []
    cropper = model.processor.cropper
    pick = valid[np.linspace(0, len(valid) - 1, min(MAX_CROPS, len(valid))).round().astype(int)]
    crops = cropper.crop(np.asarray(clip.frames)[pick], cropper.squares(boxes)[pick])
    return [np.asarray(c) for c in crops]


def score(model, path: str | os.PathLike, workdir: str | os.PathLike, drop: str | None = None,
          device: str = "cpu") -> dict[str, Any]:
    """The app's answer for one clip (see the module docstring); with `drop`, for the clip without
    that modality. Raises MediaError for a file that does not decode."""
    import torch

    from ..evaluation.plots import plot_timeline
    from ..inference.predict import predict_clip

    path, workdir = str(path), Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stem = Path(path).stem + (f"-no-{drop}" if drop else "")
    source = path
    if drop:
        source = without_stream(path, drop, workdir / f"{stem}.mkv")
        if source is None:
            return {"result": None, "heads": {}, "crops": [], "timeline": None, "drop": drop,
                    "message": f"the clip has nothing but {drop}: without it, there is nothing to score"}
    extras: dict[str, Any] = {}
    with torch.inference_mode():
        result = predict_clip(source, model, device, WINDOW, STEP, extras=extras)
    result["file"] = path if not drop else f"{path} (without {drop})"
    png = None
    if result["scores"] is not None and result["timeline"]:
        png = plot_timeline(result, workdir / f"{stem}-timeline.png")
    boxes = (extras.get("face_boxes") or [None])[0]
    return {"result": result, "heads": heads(model, extras.get("outputs") or []),
            "crops": face_crops(model, source, boxes), "timeline": png, "drop": drop, "message": None}

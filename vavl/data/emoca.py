"""The authors' released AuxFormer EMOCA video features -> a vavl feature cache.

    vavl convert emoca-features EMOCA_DIR --manifest data/crema_d/perceived.jsonl \\
        --audio-cache data/crema_d/features --out data/crema_d/features_emoca

The AuxFormer README ("Features & Partitions") links the authors' 50-d EMOCA features. Their loader
(AuxFormer utils/extractor.py VidExtractor, train.py) reads one folder per clip, named as the clip's
audio file without `.wav`, holding one `.npy` vector per video frame, and stacks the frames into a
(frames, 50) array. Here each manifest clip's folder is read the same way (`np.load` with pickles
refused), frames in sorted file-name order (the official loader takes `os.listdir` order, which the
file system decides; sorted names give the frame order where the names are frame numbers of equal
width), and written as the clip's visual features, with the audio features of the same clip copied
from `audio_cache` (a `vavl extract` cache) when given; a clip without an EMOCA folder keeps its audio
and has no video (reported in the summary).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError
from .cache import FeatureCache
from .manifest import read_manifest

SOURCE = "EMOCA features released by the AuxFormer authors (AuxFormer README, Features & Partitions)"


def read_clip(folder: Path) -> torch.Tensor:
    """(frames, d) float32 from a clip folder of per-frame .npy vectors."""
    frames = sorted(p for p in folder.iterdir() if p.suffix == ".npy")
    if not frames:
        raise DataError(f"{folder}: no .npy frame files; expected the authors' EMOCA layout (one .npy per frame)")
    rows = []
    for p in frames:
        try:
            x = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{p}: not a numeric .npy array ({str(e).splitlines()[0][:120]})") from None
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if rows and x.shape != rows[0].shape:
            raise DataError(f"{p}: {x.shape[0]} values, the clip's first frame has {rows[0].shape[0]}")
        rows.append(x)
    out = torch.from_numpy(np.stack(rows))
    if not torch.isfinite(out).all():
        raise DataError(f"{folder}: the features hold NaN or infinite values")
    return out


def import_emoca(manifest: str | os.PathLike, emoca_dir: str | os.PathLike, out: str | os.PathLike,
                 audio_cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write every manifest clip that has an EMOCA folder into the cache `out` (see module
    docstring). Returns {"written", "without_features", "visual_dim"}."""
    emoca_dir = Path(emoca_dir)
    if not emoca_dir.is_dir():
        raise DataError(f"{emoca_dir}: not a folder; give the folder holding one EMOCA folder per clip")
    audio = FeatureCache(audio_cache) if audio_cache is not None else None
    if audio is not None and not audio.settings:
        raise DataError(f"{audio_cache}: not a feature cache (no cache.json); run `vavl extract` first")
    written, absent, dim = 0, [], None
    cache = FeatureCache(out)
    records = read_manifest(manifest)
    for record in records:
        folder = emoca_dir / record["id"]
        if not folder.is_dir():
            absent.append(record["id"])
            continue
        visual = read_clip(folder)
        if dim is None:
            dim = visual.shape[1]
            settings = {"visual_encoder": SOURCE, "visual_dim": dim, "visual_source": str(emoca_dir.resolve()),
                        "audio_encoder": None, "audio_dim": None}
            if audio is not None:
                a = audio.settings
                settings.update(audio_encoder=a.get("audio_encoder"), audio_dim=a.get("audio_dim"),
                                audio_weights=a.get("audio_weights"), audio_cache=str(Path(audio_cache).resolve()))
            cache.init(settings)
        elif visual.shape[1] != dim:
            raise DataError(f"{folder}: {visual.shape[1]}-d frames, the other clips have {dim}")
        a = audio.read(record["id"])["audio_features"] if audio is not None and audio.has(record["id"]) else None
        cache.write(record["id"], a, visual, {"visual_frames": int(visual.shape[0])})
        written += 1
    if not written:
        raise DataError(f"{emoca_dir}: no folder named as a manifest clip id (e.g. {emoca_dir / 'CLIP_ID'}); "
                        "check the manifest against the EMOCA folder")
    for clip in absent:   # no EMOCA features: the clip keeps its audio, its video is missing (an all-false mask)
        if audio is not None and audio.has(clip):
            cache.write(clip, audio.read(clip)["audio_features"], None, {"visual_frames": 0})
    cache.rebuild_index()
    return {"written": written, "without_features": absent, "visual_dim": dim}

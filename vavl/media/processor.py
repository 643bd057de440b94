"""AudioVisualProcessor: a media file -> the raw inputs of a full model (waveform, face crops).

    processor = AudioVisualProcessor(face_size=260, fps=4)
    inputs = processor("clip.mp4")   # input_values (1, n), pixel_values (1, t, 3, S, S), masks, counts
    processor.save_pretrained(dir); AudioVisualProcessor.from_pretrained(dir)   # preprocessor_config.json

Everything that turns pixels and samples into tensors lives here and is saved with the model, so
the settings a model was trained with are the ones it is used with.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..core.errors import ConfigError
from ..core.files import atomic_write_text
from .decode import DecodedClip, decode

CONFIG_NAME = "preprocessor_config.json"


def save_settings(processor, directory: str | os.PathLike) -> None:
    """A processor dataclass's `to_dict()` as `directory`/preprocessor_config.json, written atomically."""
    os.makedirs(directory, exist_ok=True)
    atomic_write_text(os.path.join(directory, CONFIG_NAME), json.dumps(processor.to_dict(), indent=2))


def load_settings(cls, directory: str | os.PathLike, overrides: dict[str, Any]):
    """The processor dataclass `cls` from `directory`/preprocessor_config.json; keys it lacks are ignored."""
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.exists(path):
        raise ConfigError(f"{directory}: no {CONFIG_NAME}; save the processor with processor.save_pretrained(dir)")
    with open(path) as f:
        data = json.load(f)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in {**data, **overrides}.items() if k in names})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AudioVisualProcessor:
    """sample_rate: audio rate the audio encoder takes. fps: face frames per second fed to the
    visual encoder. face_size / mean / std: crop side and normalisation of the visual encoder.
    max_side: frames are decoded with the longer side at most this (faces are cut from these).
    face: FaceCropper settings (detect_every, detect_side, margin, threshold, ...)."""

    sample_rate: int = 16000
    fps: float = 4.0
    face_size: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    max_side: int | None = 640
    face: dict[str, Any] = field(default_factory=lambda: {"detect_every": 2, "detect_side": 256})
    device: str = field(default="cpu", repr=False)

    def __post_init__(self):
        self.mean, self.std = tuple(float(x) for x in self.mean), tuple(float(x) for x in self.std)
        if self.fps <= 0 or self.sample_rate <= 0 or self.face_size <= 0:
            raise ConfigError(f"processor: fps={self.fps}, sample_rate={self.sample_rate}, face_size={self.face_size} must be > 0")
        self._cropper = None

    @classmethod
    def for_encoders(cls, audio_encoder=None, visual_encoder=None, **kwargs) -> "AudioVisualProcessor":
        """Settings read off the encoders (sample rate, crop size, mean/std)."""
        if audio_encoder is not None:
            kwargs.setdefault("sample_rate", getattr(audio_encoder, "sample_rate", 16000))
        if visual_encoder is not None:
            kwargs.setdefault("face_size", visual_encoder.image_size)
            kwargs.setdefault("mean", visual_encoder.mean)
            kwargs.setdefault("std", visual_encoder.std)
        return cls(**kwargs)

    # ---- processing ------------------------------------------------------------------------
    @property
    def cropper(self):
        if self._cropper is None:
            from .faces import FaceCropper

            self._cropper = FaceCropper(size=self.face_size, device=self.device, **self.face)
        return self._cropper

    def decode(self, path, start: float = 0.0, end: float | None = None, audio: bool = True, video: bool = True) -> DecodedClip:
        return decode(path, fps=self.fps, sample_rate=self.sample_rate, max_side=self.max_side, start=start, end=end,
                      audio=audio, video=video)

    def __call__(self, clip: str | os.PathLike | DecodedClip, audio: bool = True, video: bool = True,
                 detections: dict | None = None, keys=None) -> dict[str, Any]:
        """A path or DecodedClip -> {"input_values": (1, n) float32 or None, "attention_mask": (1, n)
        bool or None, "pixel_values": (1, t, 3, S, S) float32 or None, "pixel_mask": (1, t) bool or
        None, "frame_times": (t,), "face_frames": int, "frames": int, "duration": float, "timings": {...}}.
        pixel_values is None when there is no video stream or no face in any frame. `detections`
        with `keys` (one per frame): face detections kept across calls (FaceCropper.tracks' cache)."""
        timings = {}
        if not isinstance(clip, DecodedClip):
            t0 = time.perf_counter()
            clip = self.decode(clip, audio=audio, video=video)
            timings["decode"] = time.perf_counter() - t0
        out = self.batch([clip], audio, video, detections=detections, keys=None if keys is None else [keys])[0]
        out["timings"] = {**timings, **out["timings"]}
        return out

    def batch(self, clips: list[DecodedClip], audio: bool = True, video: bool = True, on_device: bool = False,
              detections: dict | None = None, keys: list | None = None) -> list[dict[str, Any]]:
        """Several decoded clips -> each one's inputs, as `__call__` gives them. Their faces are found
        together (FaceCropper.tracks: shared MTCNN batches, each clip tracked on its own); "faces"
        in each clip's timings is its share of that time. `on_device`: pixel_values stay on the
        processor's device (cut and normalised there). `detections` / `keys` (per clip, one key per
        frame): see FaceCropper.tracks."""
        outs = []
        for clip in clips:
            out: dict[str, Any] = {"input_values": None, "attention_mask": None, "pixel_values": None, "pixel_mask": None,
                                   "frame_times": np.zeros(0), "face_frames": 0, "frames": 0, "duration": clip.duration,
                                   "start": clip.start, "face_boxes": None, "timings": {}}
            if audio and clip.audio is not None and len(clip.audio):
                wave = torch.from_numpy(np.ascontiguousarray(clip.audio, dtype=np.float32)).unsqueeze(0)
                out["input_values"], out["attention_mask"] = wave, torch.ones_like(wave, dtype=torch.bool)
            outs.append(out)
        seen = [i for i, clip in enumerate(clips) if video and clip.frames is not None and len(clip.frames)]
        if not seen:
            return outs
        t0 = time.perf_counter()
        tracks = self.cropper.tracks([clips[i].frames for i in seen], on_device=on_device, cache=detections,
                                     keys=None if keys is None else [keys[i] for i in seen])
        share = (time.perf_counter() - t0) / len(seen)
        for i, track in zip(seen, tracks):
            clip, out = clips[i], outs[i]
            out["timings"]["faces"] = share
            out.update(frames=len(clip.frames), frame_times=clip.frame_times, face_frames=track.face_frames,
                       face_boxes=track.boxes)
            if track.face_frames:
                out["pixel_values"] = self.normalize(track.crops).unsqueeze(0)
                out["pixel_mask"] = torch.from_numpy(track.mask).unsqueeze(0)
        return outs

    def normalize(self, crops) -> torch.Tensor:
        """(t, S, S, 3) uint8 (numpy, or a tensor on any device) -> (t, 3, S, S) float32 normalised
        with mean/std, where the crops are."""
        crops = torch.from_numpy(np.ascontiguousarray(crops)) if isinstance(crops, np.ndarray) else crops
        x = crops.permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    # ---- saving ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("device")
        d["processor_class"] = type(self).__name__
        return d

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        save_settings(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides) -> "AudioVisualProcessor":
        return load_settings(cls, directory, overrides)

"""Finding one face track in a clip with MTCNN and cutting square crops from it.

    track = FaceCropper(size=224)(frames)      # frames (t, h, w, 3) uint8
    track.crops (t, 224, 224, 3), track.mask (t,), track.boxes (t, 4)
    tracks = FaceCropper(size=224, device="cuda").tracks([frames_a, frames_b])   # several clips at once

`tracks` is the one implementation (`__call__(frames)` is `tracks([frames])[0]`): the frames chosen
for detection in all the clips go through MTCNN together, frames of the same size in shared
batches; then each clip is tracked and cropped on its own, so a clip's track does not depend on
the clips it came with. Frames may be numpy arrays or uint8 tensors (pinned CPU memory travels
to the device without blocking).

MTCNN (facenet-pytorch, weights in the wheel) runs on every `detect_every`-th frame, scaled so
the longer side is `detect_side` pixels. Detections are linked into tracks by nearness (within one
face width, similar size). A track is a speaker's face only when it is found in at least
`min_presence` of the frames checked and its median side is at least
`min_face_fraction` of the frame's shorter side: a passer-by seen a few times, or a small face in
the background, is not. Of those, the track with the largest sum of confidence x face size is the
speaker's face. Its boxes are interpolated between detections, smoothed, and cut as squares from
the full frames. Frames the track does not reach are masked; no track means the visual modality
is missing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class FaceTrack:
    crops: np.ndarray    # (t, size, size, 3) uint8 RGB square face crops (zeros where no face); a tensor
                         # on the cropper's device when `tracks(..., on_device=True)` asked for it
    mask: np.ndarray     # (t,) bool, True where a face was found/interpolated
    boxes: np.ndarray    # (t, 4) float x1, y1, x2, y2 in frame pixels (nan where none)

    @property
    def face_frames(self) -> int:
        return int(self.mask.sum())


class DetectionCache(dict):
    """Detections (boxes, probs) by frame key, kept by a caller that shows the same frames again
    (`FaceCropper.tracks(..., cache=, keys=)`); `detected` / `reused` count the frames of each kind."""

    detected = reused = 0

    def forget_before(self, t: float) -> None:
        """Drop the frames whose key (a tuple that starts with the frame's media time) is before `t`."""
        for key in [k for k in self if k[0] < t]:
            del self[key]


@lru_cache(maxsize=4)
def _mtcnn(device: str, min_face_size: int):
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, min_face_size=min_face_size, device=device, post_process=False)


def _as_frames(frames) -> torch.Tensor:
    """(t, h, w, 3) uint8 frames, numpy or tensor -> a tensor (numpy shares its memory when it can)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[-1] == 3 and x.dtype == torch.uint8):
        raise ValueError(f"frames must be (t, h, w, 3) uint8, got {getattr(frames, 'shape', None)} {getattr(frames, 'dtype', type(frames))}")
    return x


def _match_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 4) track boxes, (m, 4) detections -> (n, m) centre distance in units of the track's
    face size; inf where the sizes differ by more than 1.6x (a different face)."""
    ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    sa, sb = (a[:, 2:] - a[:, :2]).max(1), (b[:, 2:] - b[:, :2]).max(1)
    cost = np.linalg.norm(ca[:, None] - cb[None], axis=-1) / np.maximum(sa[:, None], 1e-6)
    ratio = np.maximum(sa[:, None], sb[None]) / np.maximum(np.minimum(sa[:, None], sb[None]), 1e-6)
    return np.where(ratio <= 1.6, cost, np.inf)


def _smooth(x: np.ndarray, valid: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of (t, k) values over valid frames only (nan elsewhere)."""
    if width <= 1 or not valid.any():
        return x
    kernel, t, lo = np.ones(width), len(x), width // 2

    def conv(v):  # centred, same length as v (also when v is shorter than the kernel)
        return np.convolve(v, kernel, mode="full")[lo:lo + t]

    filled = np.where(valid[:, None], x, 0.0)
    num = np.stack([conv(filled[:, j]) for j in range(x.shape[1])], 1)
    den = conv(valid.astype(float))[:, None]
    return np.where(valid[:, None], num / np.maximum(den, 1e-9), np.nan)


class FaceCropper:
    """frames (t, h, w, 3) uint8 -> FaceTrack of one face (see module docstring).

    size: crop side in pixels (the visual encoder's input size).
    detect_every: run MTCNN on every n-th frame (and the last); the rest are interpolated.
    detect_side: longer side, in pixels, of the frames MTCNN sees.
    min_face_size: smallest face, in pixels of the detection frames.
    threshold: minimum MTCNN confidence.
    margin: the square crop is the box's longer side x (1 + margin), centred on the box.
    max_gap: longest run of frames (between two detections) that is interpolated.
    smooth: moving-average width (frames) applied to box centres and sizes.
    min_presence: share of the frames checked in which a track must be found to count as a face.
    min_face_fraction: a track's median box side, relative to the frame's shorter side, must reach this.
    """

    def __init__(self, size: int = 224, device: str = "cpu", detect_every: int = 2, detect_side: int = 320,
                 min_face_size: int = 20, threshold: float = 0.9, margin: float = 0.1, max_gap: int = 12,
                 smooth: int = 3, batch_size: int = 16, min_presence: float = 0.25, min_face_fraction: float = 0.06):
        self.size, self.device, self.detect_every, self.detect_side = size, device, max(1, detect_every), detect_side
        self.min_face_size, self.threshold, self.margin = min_face_size, threshold, margin
        self.max_gap, self.smooth, self.batch_size = max_gap, smooth, batch_size
        self.min_presence, self.min_face_fraction = min_presence, min_face_fraction

    # ---- detection -------------------------------------------------------------------------
    def detect(self, frames) -> list[tuple[np.ndarray, np.ndarray]]:
        """(n, h, w, 3) uint8 frames (numpy or tensor) -> per frame (boxes (k, 4) in frame pixels, probs (k,))."""
        frames = _as_frames(frames)
        h, w = frames.shape[1:3]
        scale = min(1.0, self.detect_side / max(h, w))
        if min(h, w) * scale < self.min_face_size:   # smaller than the smallest face MTCNN looks for
            return [(np.zeros((0, 4)), np.zeros(0)) for _ in range(len(frames))]
        mtcnn = _mtcnn(self.device, self.min_face_size)
        out = []
        for i in range(0, len(frames), self.batch_size):
            batch = frames[i:i + self.batch_size].to(self.device, non_blocking=True)
            with torch.inference_mode(), torch.autocast(torch.device(self.device).type, enabled=False):
                if scale < 1.0:  # (n, h, w, 3) -> smaller, antialiased
                    small = F.interpolate(batch.permute(0, 3, 1, 2).float(), size=(round(h * scale), round(w * scale)),
                                          mode="bilinear", antialias=True, align_corners=False)
                    batch = small.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8)
                boxes, probs = mtcnn.detect(batch.contiguous())
            for b, p in zip(boxes, probs):
                if b is None or len(b) == 0:
                    out.append((np.zeros((0, 4)), np.zeros(0)))
                    continue
                b = np.asarray(b, dtype=np.float64).reshape(-1, 4) / scale
                p = np.asarray(p, dtype=np.float64).reshape(-1)
                keep = p >= self.threshold
                out.append((b[keep], p[keep]))
        return out

    def detect_clips(self, clips: list[torch.Tensor], chosen: list[list[int]]) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """The chosen frames of several clips -> their detections, per clip. Frames of the same
        size (h, w) share MTCNN batches, whichever clip they come from."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for k, frames in enumerate(clips):
            if chosen[k]:
                by_size.setdefault(tuple(frames.shape[1:3]), []).append(k)
        found: list[list] = [[] for _ in clips]
        for members in by_size.values():
            picked = [clips[k][chosen[k]] for k in members]
            flat = iter(self.detect(torch.cat(picked) if len(picked) > 1 else picked[0]))
            for k in members:
                found[k] = [next(flat) for _ in chosen[k]]
        return found

    def _cached(self, clips: list, chosen: list[list[int]], cache: DetectionCache, keys: list) -> list[list]:
        """detect_clips for the chosen frames whose key is not in `cache`; every chosen frame's
        detection from the cache, which counts the frames of each kind."""
        missing = [[i for i in idx if keys[k][i] not in cache] for k, idx in enumerate(chosen)]
        for k, (idx, found) in enumerate(zip(missing, self.detect_clips(clips, missing))):
            cache.update({keys[k][i]: d for i, d in zip(idx, found)})
        new = sum(len(m) for m in missing)
        cache.detected, cache.reused = cache.detected + new, cache.reused + sum(len(c) for c in chosen) - new
        return [[cache[keys[k][i]] for i in idx] for k, idx in enumerate(chosen)]

    # ---- tracking --------------------------------------------------------------------------
    def track(self, t: int, detected: dict[int, tuple[np.ndarray, np.ndarray]], frame_side: float | None = None) -> np.ndarray:
        """Detections at some frame indices -> (t, 4) boxes of the chosen track, nan elsewhere.
        frame_side: the frames' shorter side in pixels (for min_face_fraction; None: no size check)."""
        tracks: list[dict] = []  # {"idx": [...], "boxes": [...], "score": float}
        for i in sorted(detected):
            boxes, probs = detected[i]
            live = [k for k, tr in enumerate(tracks) if i - tr["idx"][-1] <= self.max_gap + self.detect_every]
            if live and len(boxes):
                cost = _match_cost(np.stack([tracks[k]["boxes"][-1] for k in live]), boxes)
            taken = set()
            for j in np.argsort(-probs) if len(boxes) else []:
                best = None
                if live:  # the nearest live track within one face width, not yet matched in this frame
                    order = [k for k in np.argsort(cost[:, j]) if cost[k, j] < 1.0 and live[k] not in taken]
                    best = live[order[0]] if order else None
                if best is None:
                    tracks.append({"idx": [], "boxes": [], "score": 0.0})
                    best = len(tracks) - 1
                taken.add(best)
                tr = tracks[best]
                tr["idx"].append(i)
                tr["boxes"].append(boxes[j])
                side = np.sqrt(max((boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]), 0.0))
                tr["score"] += float(probs[j]) * side
        out = np.full((t, 4), np.nan)
        tracks = [tr for tr in tracks if self._is_face(tr, len(detected), frame_side)]
        if not tracks:
            return out
        best = max(tracks, key=lambda tr: tr["score"])
        idx, boxes = np.asarray(best["idx"]), np.stack(best["boxes"])
        out[idx] = boxes
        for (a, b), (ba, bb) in zip(zip(idx[:-1], idx[1:]), zip(boxes[:-1], boxes[1:])):
            if 1 < b - a <= self.max_gap:
                w = (np.arange(a + 1, b) - a)[:, None] / (b - a)
                out[a + 1:b] = (1 - w) * ba + w * bb
        # frames before the first / after the last detection: hold the box for up to one step
        reach = self.detect_every - 1
        out[max(idx[0] - reach, 0):idx[0]] = boxes[0]
        out[idx[-1] + 1:idx[-1] + 1 + reach] = boxes[-1]
        return out

    def _is_face(self, track: dict, checked: int, frame_side: float | None) -> bool:
        """Found often enough across the clip, and large enough for a speaker's face."""
        need = max(1, math.ceil(self.min_presence * checked - 1e-9))
        if len(track["idx"]) < need:
            return False
        if frame_side:
            sides = [max(b[2] - b[0], b[3] - b[1]) for b in track["boxes"]]
            return float(np.median(sides)) >= self.min_face_fraction * frame_side
        return True

    # ---- cropping --------------------------------------------------------------------------
    def squares(self, boxes: np.ndarray) -> np.ndarray:
        """(t, 4) boxes -> (t, 4) smoothed square crop windows (nan where no box)."""
        valid = ~np.isnan(boxes).any(1)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        side = (boxes[:, 2:] - boxes[:, :2]).max(1, keepdims=True) * (1 + self.margin)
        cs = _smooth(np.concatenate([centre, side], 1), valid, self.smooth)
        half = cs[:, 2:] / 2
        return np.concatenate([cs[:, :2] - half, cs[:, :2] + half], 1)

    def crop(self, frames, windows: np.ndarray, on_device: bool = False):
        """Cut (t, 4) windows from (t, h, w, 3) uint8 frames (zero padding outside the frame) and
        resize to size x size -> (t, size, size, 3) uint8: numpy, or with `on_device` a tensor
        where the frames are."""
        frames = _as_frames(frames)
        t, h, w = frames.shape[:3]
        crops = torch.zeros((t, self.size, self.size, 3), dtype=torch.uint8, device=frames.device)
        valid = np.flatnonzero(~np.isnan(windows).any(1))
        if len(valid):
            # one batched bilinear resample: a normalised affine grid per frame
            win = torch.as_tensor(windows[valid], dtype=torch.float32)
            sx, sy = (win[:, 2] - win[:, 0]) / w, (win[:, 3] - win[:, 1]) / h
            cx, cy = (win[:, 0] + win[:, 2]) / w - 1, (win[:, 1] + win[:, 3]) / h - 1
            theta = torch.zeros(len(valid), 2, 3)
            theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
            theta = theta.to(frames.device)
            for i in range(0, len(valid), 32):
                sel = torch.as_tensor(valid[i:i + 32], device=frames.device)
                src = frames[sel].permute(0, 3, 1, 2).float()  # (n, 3, h, w)
                grid = F.affine_grid(theta[i:i + 32], [len(sel), 3, self.size, self.size], align_corners=False)
                if (win[i:i + 32, 2] - win[i:i + 32, 0]).min() > 2 * self.size:  # much larger than the crop: pre-shrink
                    src = F.avg_pool2d(src, 2)
                out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
                crops[sel] = out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return crops if on_device else crops.cpu().numpy()

    def tracks(self, clips: list, on_device: bool = False, cache: DetectionCache | None = None,
               keys: list | None = None) -> list[FaceTrack]:
        """Frames of several clips, each (t, h, w, 3) uint8 (numpy or tensor) -> one FaceTrack per
        clip. Detection is shared (`detect_clips`); tracking and cropping are per clip. With
        `on_device` the crops stay tensors on the cropper's device (for an encoder there).
        `cache` (a DetectionCache kept by the caller) with `keys` (per clip, one key per frame: a
        tuple that starts with its media time): the detections of frames chosen before are taken from it, the others are
        detected and stored in it (vavl stream's overlapping windows). The frames chosen for
        detection are the same either way, so the tracks are too."""
        clips = [_as_frames(f).to(self.device, non_blocking=True) for f in clips]
        chosen = [sorted(set(range(0, len(f), self.detect_every)) | {len(f) - 1}) if len(f) else [] for f in clips]
        found = self.detect_clips(clips, chosen) if cache is None else self._cached(clips, chosen, cache, keys)
        out = []
        for frames, idx, detections in zip(clips, chosen, found):
            t = len(frames)
            boxes = self.track(t, dict(zip(idx, detections)), frame_side=min(frames.shape[1:3])) if t else np.zeros((0, 4))
            windows = self.squares(boxes)
            mask = ~np.isnan(windows).any(1)
            with torch.inference_mode():
                crops = self.crop(frames, windows, on_device)
            out.append(FaceTrack(crops=crops, mask=mask, boxes=np.where(mask[:, None], boxes, np.nan)))
        return out

    def __call__(self, frames) -> FaceTrack:
        return self.tracks([frames])[0]

"""What overlapping stream windows share, kept so that each frame is worked on once, with the same result.

    reuse = WindowReuse()
    reuse.window(keys)                             # before each window: (media time, id) of each of its frames
    predict_clip(clip, model, reuse=reuse, ...)    # its faces and visual-encoder stages go through `reuse`
    reuse.counts()                                 # frames detected / reused, encoded / reused in that window
    reuse.forget_before(t)                         # with the frames the stream's buffer drops

At `--window 2 --hop 0.5` each frame is in four windows. Scoring each window alone (as `vavl predict`
does a clip) repeats the face detection and the visual encoder on the same frames; here they are kept
by the frame (its media time and the buffer's array of it), and the window's result stays the one
scoring it alone gives:

- Face detection (MTCNN): a window picks the frames to detect by the same rule as ever (every
  `detect_every`-th frame of the window and its last); a frame detected in an earlier window is not
  detected again (`FaceCropper.tracks(cache=)`). Tracking, interpolation, smoothing and cropping are
  per window, as before: they are cheap, and a frame's crop depends on its window (smoothing at the
  edges), so that is what the feature cache checks.
- Visual encoder: an encoder whose rows are each a function of their own frame (`per_frame`, e.g.
  timm backbones in eval mode) gets only the face frames whose crop is not the one it encoded for
  that frame before (the crop's pixels compared exactly), in one batch; the others' features are
  taken from before. Encoders that mix frames (VideoMAE's windows, frame differences) run on the
  whole window, as before.
- The audio encoder is not reused: speech encoders normalise the whole window and attend across it
  (`--incremental`, vavl.inference.stream_blocks, encodes hop-second blocks once each instead, and
  its answers differ from scoring each window alone).

Memory stays bounded: only the frames still in the stream's buffer are kept (`forget_before`).
"""
from __future__ import annotations

from typing import Any

import torch

from ..media.faces import DetectionCache


class WindowReuse:
    def __init__(self):
        self.detections = DetectionCache()
        self.features: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}   # frame key -> (crop pixels, features)
        self.keys: list[tuple] | None = None
        self._counts: dict[str, int] = {}
        self._detected = (0, 0)

    def window(self, keys) -> None:
        """The next window's frames: one key per frame of the clip it scores, a tuple that starts with
        the frame's media time (vavl.inference.stream's buffer gives (time, id of the frame array)).
        Keys that repeat within the window: nothing of it is kept or reused."""
        self.keys = [tuple(k) for k in keys]
        if len(set(self.keys)) < len(self.keys):
            self.keys = None
        self._detected = (self.detections.detected, self.detections.reused)
        self._counts = {"frames_encoded": 0, "features_reused": 0}

    def counts(self) -> dict[str, int]:
        """The last window's frames: detected and detections reused, encoded and features reused."""
        return {"frames_detected": self.detections.detected - self._detected[0],
                "detections_reused": self.detections.reused - self._detected[1], **self._counts}

    def forget_before(self, t: float) -> None:
        self.detections.forget_before(t)
        for key in [k for k in self.features if k[0] < t]:
            del self.features[key]

    def inputs(self, processor, clip, audio: bool, video: bool) -> dict[str, Any]:
        """The processor on the window, its face detections through the cache."""
        frames = getattr(clip, "frames", None)
        if self.keys is None or frames is None or len(frames) != len(self.keys):
            self.keys = None   # not the frames announced: nothing of this window is kept or reused
            return processor(clip, audio=audio, video=video)
        return processor(clip, audio=audio, video=video, detections=self.detections, keys=self.keys)

    def visual(self, encoder, inputs: dict[str, Any], device: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The visual encoder on the window's crops: per-frame encoders on the face frames not seen
        with the same crop before, the rest from before."""
        x, mask = inputs["pixel_values"], inputs["pixel_mask"]
        rows = mask[0].nonzero().squeeze(1).tolist() if x.shape[0] == 1 else []
        if self.keys is None or not getattr(encoder, "per_frame", False) or encoder.training or not rows:
            self._counts["frames_encoded"] += int(mask.sum())
            return encoder(x.to(device), mask.to(device))
        keys = self.keys
        seen = self.features
        missing = [i for i in rows if not (keys[i] in seen and torch.equal(seen[keys[i]][0], x[0, i]))]
        if missing:
            feats, _ = encoder(x[:, missing].to(device), mask[:, missing].to(device))
            for j, i in enumerate(missing):
                self.features[keys[i]] = (x[0, i].clone(), feats[0, j].clone())
        self._counts["frames_encoded"] += len(missing)
        self._counts["features_reused"] += len(rows) - len(missing)
        first = self.features[keys[rows[0]]][1]
        out = first.new_zeros(1, x.shape[1], first.shape[-1])
        for i in rows:
            out[0, i] = self.features[keys[i]][1]
        return out, mask.to(device=first.device, dtype=torch.bool)

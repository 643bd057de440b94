"""`vavl stream --incremental`: each piece of media worked on once, windows assembled from the pieces.

    blocks = StreamBlocks(model, hop=0.5, device="cpu")    # checks the encoders (IncrementalError if one cannot)
    r = blocks.score(buf, start, end)                       # one window: label, scores, heads, modalities, notes, ...
    blocks.forget_before(t)                                 # with the media the stream's buffer drops

The default stream scores every window as `vavl predict` scores a clip alone, so at `--window 2
--hop 0.5` each second of media goes through the speech encoder four times. Here:

- Audio in blocks: the sound is cut into blocks of `hop` seconds on the hop grid (block k covers
  [k hop, (k + 1) hop) of media time, so a window is a whole number of blocks); each block goes
  through the audio encoder once, as soon as it is complete (`audio_arrived`), or, when a live
  stream has fallen behind (its chunks waited in the queue more than a hop), only once a window
  scored needs it, so that windows passed over to catch up cost nothing (and the last, partial block
  of a source that ended, when its window is scored); a window's audio features are its blocks'
  frames, concatenated in time order. A block without samples (a gap, a source without sound) has no
  frames: it is missing for that block, and a window whose blocks are all missing has no audio, as a
  window without sound has in the exact mode. The speech encoder sees `hop` seconds without the rest of
  the window as context (its normalisation and attention are per block), and a block gives a little
  fewer frames than its share of a whole window (wav2vec2 at 0.5 s: 24 frames a block, 96 a 2 s
  window, against 99 for the window whole; the fusion models take any number of frames, masked).
  Encoders that cannot work on short blocks are refused with one line (IncrementalError): AST (fixed
  windows of fbank frames, one feature row per window) and Whisper (a fixed 30 s input it pads to).
- Faces once per frame: frames are chosen for detection on the stream's grid (every
  `detect_every`-th frame of the stream, counted from media time 0 at the processor's fps), each
  chosen frame is detected once; the first window that holds a frame tracks it, with the detections
  of that window's frames (FaceCropper.track: linking, interpolation, holding a box one step past the
  last detection, smoothing), and its box and crop are fixed from then on. A per-frame visual encoder
  (`per_frame`, e.g. EfficientNet) encodes each fixed crop once; a window's visual features are its
  frames' rows. An encoder that mixes frames (VideoMAE's windows) keeps the per-window path of the
  exact mode (faces cropped per window, with the detections kept; the encoder on the whole window).
- Fusion once per window on the assembled features, as in the exact mode.

So a window's answer differs from scoring that window alone: the speech encoder did not see the
whole window, and face boxes come from tracking along the stream instead of within the window.
`recipes/benchmarks/stream_realtime.py --compare` measures how much on a synthetic file.
Memory stays bounded: blocks and frames before the window's start are forgotten (`forget_before`).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..core.errors import ConfigError
from ..media.faces import DetectionCache
from .scores import StageClock, check_finite, class_scores, head_scores, score_entry, untrained_notes


class IncrementalError(ConfigError):
    """A model whose encoders cannot be run incrementally (the message says which and why)."""


def check_incremental(model) -> None:
    """IncrementalError unless both encoders can be run on blocks / frames (module docstring)."""
    if getattr(model, "takes_views", False):
        raise IncrementalError("--incremental: this model (HiCMAE) scores fixed test views of each window; "
                               "stream it without --incremental")
    kind = getattr(model.audio_encoder, "kind", None)
    if kind in ("ast", "whisper"):
        why = ("AST encodes fixed windows of fbank frames (one row per window)" if kind == "ast" else
               "Whisper's encoder takes a fixed 30 s input and pads shorter audio to it")
        raise IncrementalError(f"--incremental: the audio encoder ({kind}) cannot encode {kind!r} blocks of one hop: "
                               f"{why}; stream it without --incremental")


class StreamBlocks:
    """The audio blocks and the frames (detections, boxes, crops, features) of the windows scored so far."""

    def __init__(self, model, hop: float, device: str = "cpu"):
        check_incremental(model)
        self.model, self.hop, self.device = model, float(hop), device
        p = model.processor
        self.fps, self.sr = float(p.fps), int(p.sample_rate)
        self.blocks: dict[int, tuple[torch.Tensor, bool] | None] = {}   # block index -> (frames (t, d), silent) or None
        self.detections = DetectionCache()
        self.frames: dict[tuple, dict[str, Any]] = {}   # frame key -> {"box", "crop", "features"}
        self.per_frame = bool(getattr(model.visual_encoder, "per_frame", False))
        self.calls = {"audio": 0, "visual": 0}   # encoder calls (the tests count them)
        self.fresh: set[int] = set()   # blocks encoded as they completed, since the last window scored
        self.pending = 0.0             # their encoder seconds (counted in the next window's timings)

    # ---- memory ------------------------------------------------------------------------------
    def forget_before(self, t: float) -> None:
        """Forget the blocks that start before `t` and the frames before `t`."""
        first = int(np.floor(t / self.hop + 1e-6))
        for k in [k for k in self.blocks if k < first]:
            del self.blocks[k]
        self.fresh = {k for k in self.fresh if k >= first}
        self.detections.forget_before(t)
        for key in [k for k in self.frames if k[0] < t]:
            del self.frames[key]

    # ---- audio -------------------------------------------------------------------------------
    def _block_samples(self, buf, k: int) -> np.ndarray | None:
        if buf.audio_start is None:
            return None
        a = max(int(round((k * self.hop - buf.audio_start) * self.sr)), 0)
        b = max(int(round(((k + 1) * self.hop - buf.audio_start) * self.sr)), 0)
        wave = buf.audio[a:b]
        return wave if len(wave) else None

    def _encode_block(self, buf, k: int) -> None:
        wave = self._block_samples(buf, k)
        if wave is None:
            self.blocks[k] = None
            return
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0)
        a, m = self.model.audio_encoder(x.to(self.device), torch.ones_like(x, dtype=torch.bool).to(self.device))
        self.calls["audio"] += 1
        self.blocks[k] = (a[0, m[0].bool()].float(), float(np.abs(wave).max()) <= 1e-4)

    @torch.inference_mode()
    def audio_arrived(self, buf, start: float) -> None:
        """Encode the blocks the buffer's audio now holds whole (from the block of `start`, the next
        window's start, on) and has not encoded: each block once, as soon as it is complete (before a
        gap makes the buffer start its audio anew)."""
        if self.model.audio_encoder is None or buf.audio_start is None or not len(buf.audio):
            return
        end = buf.audio_start + len(buf.audio) / self.sr
        first = max(int(np.ceil(buf.audio_start / self.hop - 1e-6)), round(start / self.hop))
        for k in range(first, int(np.floor(end / self.hop + 1e-6))):
            if k not in self.blocks:
                t0 = time.perf_counter()
                self._encode_block(buf, k)
                self.pending += time.perf_counter() - t0
                self.fresh.add(k)

    def _audio(self, buf, start: float, end: float, counts: dict) -> tuple:
        """The window's blocks -> (1, t, d) features, (1, t) mask, times, blocks with sound, silent."""
        encoder = self.model.audio_encoder
        first, last = round(start / self.hop), int(np.ceil(end / self.hop - 1e-6))
        rows, times, present, silent = [], [], 0, True
        for k in range(first, last):
            if k in self.blocks and k not in self.fresh:
                counts["blocks_reused"] += 1
            else:   # encoded since the last window (as it completed), or now (the last, partial block of a source)
                if k not in self.blocks:
                    self._encode_block(buf, k)
                counts["blocks_encoded"] += 1
            block = self.blocks[k]
            if block is None:
                continue
            feats, quiet = block
            present, silent = present + 1, silent and quiet
            rate = getattr(encoder, "frame_rate", None) or feats.shape[0] / self.hop
            rows.append(feats)
            times.append(k * self.hop + (np.arange(feats.shape[0]) + 0.5) / rate)
        self.fresh -= set(range(first, last))
        if not rows:
            return None, None, np.zeros(0), 0, last - first, True
        x = torch.cat(rows).unsqueeze(0)
        return x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device), np.concatenate(times), present, \
            last - first, silent

    # ---- faces -------------------------------------------------------------------------------
    def _track(self, frames: list, keys: list, counts: dict) -> None:
        """Detect the window's grid frames not detected before, track the window, fix the new frames' boxes and crops."""
        cropper = self.model.processor.cropper
        every = cropper.detect_every
        chosen = [i for i, (t, _) in enumerate(keys) if round(t * self.fps) % every == 0]
        missing = [i for i in chosen if keys[i] not in self.detections]
        if missing:
            found = cropper.detect(np.stack([frames[i] for i in missing]))
            self.detections.update({keys[i]: d for i, d in zip(missing, found)})
        counts["frames_detected"] += len(missing)
        counts["detections_reused"] += len(chosen) - len(missing)
        self.detections.detected += len(missing)
        self.detections.reused += len(chosen) - len(missing)
        new = [i for i, k in enumerate(keys) if k not in self.frames]
        if not new:
            return
        boxes = cropper.track(len(frames), {i: self.detections[keys[i]] for i in chosen},
                              frame_side=min(frames[0].shape[:2]))
        for i, k in enumerate(keys):   # frames fixed before keep their boxes: the new ones are smoothed with them
            if k in self.frames:
                boxes[i] = self.frames[k]["box"]
        windows = cropper.squares(boxes)
        valid = ~np.isnan(windows).any(1)
        faces = [i for i in new if valid[i]]
        crops = cropper.crop(np.stack([frames[i] for i in faces]), windows[faces]) if faces else None
        for i in new:
            self.frames[keys[i]] = {"box": boxes[i] if valid[i] else np.full(4, np.nan), "crop": None, "features": None}
        for j, i in enumerate(faces):
            self.frames[keys[i]]["crop"] = crops[j]

    def _visual(self, frames: list, keys: list, counts: dict):
        """The window's frames -> (1, t, d) features, (1, t) mask, times (None, None when no face)."""
        encoder = self.model.visual_encoder
        todo = [k for k in keys if self.frames[k]["crop"] is not None and self.frames[k]["features"] is None]
        if todo:
            x = self.model.processor.normalize(np.stack([self.frames[k]["crop"] for k in todo])).unsqueeze(0)
            v, _ = encoder(x.to(self.device), torch.ones(1, len(todo), dtype=torch.bool, device=self.device))
            self.calls["visual"] += 1
            for j, k in enumerate(todo):
                self.frames[k]["features"] = v[0, j].float()
        faces = [i for i, k in enumerate(keys) if self.frames[k]["crop"] is not None]
        counts["frames_encoded"] += len(todo)
        counts["features_reused"] += len(faces) - len(todo)
        if not faces:
            return None, None
        first = self.frames[keys[faces[0]]]["features"]
        out = first.new_zeros(1, len(keys), first.shape[-1])
        mask = torch.zeros(1, len(keys), dtype=torch.bool, device=first.device)
        for i in faces:
            out[0, i], mask[0, i] = self.frames[keys[i]]["features"], True
        return out, mask

    def _visual_window(self, frames: list, keys: list, start: float, end: float, counts: dict, clock):
        """An encoder that mixes frames: faces cropped in the window (detections kept), the encoder on the window."""
        from ..media.decode import DecodedClip

        times = np.asarray([k[0] for k in keys], dtype=np.float64)
        clip = DecodedClip(f"window {start:.2f}-{end:.2f} s", None, self.sr, np.stack(frames), times, self.fps,
                           duration=end - start, start=start, decoded=end - start)
        before = (self.detections.detected, self.detections.reused)
        with clock("faces"):
            inputs = self.model.processor(clip, audio=False, video=True, detections=self.detections, keys=keys)
        counts["frames_detected"] += self.detections.detected - before[0]
        counts["detections_reused"] += self.detections.reused - before[1]
        if inputs["pixel_values"] is None:
            return None, None, inputs.get("face_boxes"), 0
        with clock("visual_encoder"):
            v, vm = self.model.visual_encoder(inputs["pixel_values"].to(self.device),
                                              inputs["pixel_mask"].to(self.device))
        self.calls["visual"] += 1
        counts["frames_encoded"] += int(inputs["pixel_mask"].sum())
        return v.float(), vm.bool(), inputs.get("face_boxes"), int(inputs["face_frames"])

    # ---- a window ----------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, buf, start: float, end: float) -> dict[str, Any]:
        """One window of the stream's buffer: what stream._heads gives for the exact mode (label,
        scores, heads, modalities, frames, face_frames, face_boxes, notes, timings) plus `reuse`."""
        model, clock = self.model, StageClock()
        counts = dict.fromkeys(("blocks_encoded", "blocks_reused", "frames_detected", "detections_reused",
                                "frames_encoded", "features_reused"), 0)
        notes: list[str] = []
        feats: dict[str, Any] = {"audio_features": None, "audio_mask": None, "visual_features": None, "visual_mask": None}
        if model.audio_encoder is not None:
            with clock("audio_encoder"):
                a, am, _, present, total, silent = self._audio(buf, start, end, counts)
            if a is None:
                notes.append("no audio stream: audio modality missing")
            else:
                feats.update(audio_features=a, audio_mask=am)
                if present < total:
                    notes.append(f"no sound in {total - present} of the window's {total} blocks of {self.hop:g} s")
                if silent:
                    notes.append("audio is silent")
        held = [(t, f) for t, f in buf.frames if start <= t < end]
        frames, keys = [f for _, f in held], [(t, id(f)) for t, f in held]
        face_frames, boxes = 0, None
        if model.visual_encoder is not None:
            if not frames:
                notes.append("no video stream: visual modality missing")
            elif self.per_frame:
                with clock("faces"):
                    self._track(frames, keys, counts)
                with clock("visual_encoder"):
                    v, vm = self._visual(frames, keys, counts)
                boxes = np.stack([self.frames[k]["box"] for k in keys])
                face_frames = int(vm.sum()) if vm is not None else 0
            else:   # an encoder that mixes frames: the exact mode's per-window path
                v, vm, boxes, face_frames = self._visual_window(frames, keys, start, end, counts, clock)
            if frames:
                if v is None:
                    notes.append(f"no face found in {len(frames)} frames: visual modality missing")
                else:
                    feats.update(visual_features=v, visual_mask=vm)
        notes += untrained_notes(model)
        r: dict[str, Any] = {"label": None, "scores": None, "heads": {}, "modalities": [], "frames": len(frames),
                             "face_frames": face_frames, "face_boxes": boxes, "reuse": counts}
        if feats["audio_features"] is None and feats["visual_features"] is None:
            notes.append("no usable audio or face in the clip: no prediction")
        else:
            with clock("fusion"):
                out = model(**{k: x for k, x in feats.items() if x is not None})
                scores = check_finite(class_scores(model, out)[0].cpu(), f"window {start:.2f}-{end:.2f} s")
            mods = out.modalities_used()[0]
            r.update(score_entry(model, scores, [m for m in ("audio", "visual") if m in mods]))
            r["heads"] = head_scores(model, out)
        timings = clock.wall()
        timings["audio_encoder"] = round(timings["audio_encoder"] + self.pending, 4)   # blocks encoded as they came
        self.pending = 0.0
        r.update(notes=notes, timings=timings)
        return r

"""`vavl extract`: run frozen encoders over a manifest's clips into a feature cache.

    vavl extract --manifest crema_d.jsonl --audio-encoder wav2vec2-large-robust \\
        --visual-encoder efficientnet_b2 --out cache/crema_d [--fps 5] [--batch-size 4]
    accelerate launch --num_processes 2 -m vavl.cli extract ...     # disjoint shards, one cache

A named encoder means its pretrained weights (hub or local Hugging Face cache; `--random-init`
asks for an untrained network, seeded so that a resumed run builds the same one). cache.json
records each encoder's weights (where from, and a sha256 of their values), so a cache is never
extended with features of other weights. The cache also gets the processor's
preprocessor_config.json (crop size, fps, normalisation).

Per clip: decode (PyAV) -> faces (MTCNN) -> processor (crops, normalisation) -> encoders ->
one safetensors file in the cache, written atomically.

On a GPU (`--device cuda`): worker processes decode (`--workers`) into pinned memory; faces run
on the face device (`--face-device`, default the extraction device) in this process, MTCNN on the
frames of several clips at once; a few loader batches are taken together and sorted by length,
so each encoder forward pads little (an encoder whose features would depend on padding,
`batch_invariant=False`, only meets clips of its own length); `--bf16` runs the encoders under
bfloat16 autocast (weights stay fp32); a background thread writes the cache, so the device never
waits on disk. With faces on the CPU they run in the workers. Either way a clip's features are
its own: the same as extracted alone. Clips already in the cache are skipped,
so a killed run resumes where it stopped without recomputing anything. A clip that fails, for
whatever reason, is listed with its reason in errors.jsonl (unexpected errors: with their
traceback in errors.log) and skipped; the next run retries it; the others go on. Visual
features keep only the frames where a face was found; no face at all -> no visual features
(the modality is missing for that clip). What was left out or repaired (a truncated file, NaN
samples) is in the clip's meta "notes". Rank r of n takes the manifest's clips r, r + n, ... (what
is not cached yet of them) and writes its own files; rank 0 then rebuilds index.jsonl from the files.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from ..core.jobs import describe
from ..core.errors import DataError
from ..core.files import atomic_write_text, check_output_dir
from .cache import CacheLock, FeatureCache
from .extract_batches import encode_sorted, find_faces
from .extract_encoders import PRECISIONS, build_encoders, encoder_name
from .extract_errors import gather_errors, write_jsonl
from .extract_long import WINDOW_SECONDS, LongClip, is_long, reaches, unbounded_duration
from .manifest import read_manifest

SETTINGS_VERSION = 2   # 2: the encoders' weights are part of the settings
LOOKAHEAD = 4          # loader batches sorted by length together
GPU_FACE_BATCH = 64    # MTCNN frames per forward on a GPU
BF16_TOLERANCE = ("features within 2%% of fp32 (relative L2 per clip and modality; measured on CPU with tiny random "
                  "encoders: 0.8%% at most)")


def _dist(device: str):
    """(rank, world size, barrier) from Accelerate when launched with several processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        state = PartialState(cpu=not str(device).startswith("cuda"))   # CPU ranks talk over gloo
        return state.process_index, state.num_processes, state.wait_for_everyone
    return 0, 1, lambda: None


class ClipLoader(torch.utils.data.Dataset):
    """Manifest record -> processor outputs (decoding and face finding happen here, in workers).
    faces=False: decoding only; the item carries the clip and its frames (a uint8 tensor, which
    the loader can pin) for the faces to be found in the main process."""

    def __init__(self, records, processor, want_audio: bool, want_video: bool, max_seconds: float | None,
                 faces: bool = True, window: float | None = None):
        self.records, self.processor = records, processor
        self.want_audio, self.want_video, self.max_seconds, self.faces = want_audio, want_video, max_seconds, faces
        self.window = None if max_seconds else window   # files longer than this: extracted in windows (extract_long)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        if not (self.want_audio and rec.get("audio")) and not (self.want_video and rec.get("video")):
            return {"record": rec, "inputs": {}, "notes": [], "error": None}   # nothing to encode: cached as missing
        try:
            if is_long(rec, self.processor, self.want_audio, self.want_video, self.window):
                return {"record": rec, "long": True, "inputs": None, "notes": [], "error": None}
            clip, notes = self.decode(rec)
            if clip is None:   # the content reached the window although the header said less
                return {"record": rec, "long": True, "inputs": None, "notes": [], "error": None}
            if not self.faces:
                frames = None if clip.frames is None else torch.from_numpy(clip.frames)
                return {"record": rec, "clip": dataclasses.replace(clip, frames=None), "frames": frames, "notes": notes,
                        "error": None}
            return {"record": rec, "inputs": self.processor(clip), "notes": notes, "error": None}
        except Exception as e:   # one bad clip must not end the run: report it and go on
            line, trace = describe(rec["id"], e)
            return {"record": rec, "inputs": None, "error": line, "trace": trace}

    def decode(self, rec):
        """The record's audio and video files (one file or two) -> one DecodedClip, and notes on
        what was repaired or left out; (None, []) when the content reaches the window (a long file)."""
        from ..media.decode import DecodedClip, decode_notes

        a_path = rec.get("audio") if self.want_audio else None
        v_path = rec.get("video") if self.want_video else None
        decode, end = self.processor.decode, self.max_seconds or self.window
        parts = [decode(a_path, end=end)] if a_path and a_path == v_path else [
            decode(a_path, video=False, end=end) if a_path else None,
            decode(v_path, audio=False, end=end) if v_path else None]
        if reaches(parts, self.window):
            return None, []
        if self.window and not self.max_seconds:   # decoded up to the window only to bound it: the file's own length
            parts = [c if c is None else unbounded_duration(c, self.window) for c in parts]
        notes = [n for c in parts if c is not None for n in decode_notes(
            c.decoded, c.duration, c.nonfinite, len(c.audio) if c.audio is not None else 0, c.peak, c.gaps)]
        if len(parts) == 1:
            return parts[0], notes
        a, v = parts
        return DecodedClip(path=v_path or a_path, audio=a.audio if a else None, sample_rate=self.processor.sample_rate,
                           frames=v.frames if v else None, frame_times=v.frame_times if v else None,
                           fps=v.fps if v else None, duration=max(c.duration for c in parts if c is not None),
                           decoded=max(c.decoded for c in parts if c is not None)), notes


def _unwrap(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


@torch.inference_mode()
def encode_batch(items: list[dict[str, Any]], audio_encoder, visual_encoder, device: str, dtype: torch.dtype,
                 autocast: bool = False):
    """Processor outputs of several clips -> per clip (audio (ta, da) or None, visual (tv, dv) or None).
    autocast: the encoders run under bfloat16 autocast (dtype then is float32)."""
    from .collate import pad_frames

    out = [[None, None] for _ in items]
    amp = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast)
    if audio_encoder is not None:
        idx = [i for i, it in enumerate(items) if it["inputs"].get("input_values") is not None]
        if idx:
            waves = [torch.as_tensor(items[i]["inputs"]["input_values"])[0].float() for i in idx]   # (n,) each
            x, mask = pad_frames([w[:, None] for w in waves])                       # (b, n, 1), (b, n)
            with amp:
                feats, fmask = audio_encoder(x[..., 0].to(device, dtype, non_blocking=True), mask.to(device))
            for j, i in enumerate(idx):
                out[i][0] = feats[j][fmask[j]].float().cpu()
    if visual_encoder is not None:
        crops = []
        for it in items:
            pv, pm = it["inputs"].get("pixel_values"), it["inputs"].get("pixel_mask")
            if pv is not None and pm is not None and bool(torch.as_tensor(pm).any()):
                crops.append(pv[0][torch.as_tensor(pm)[0].to(pv.device).bool()].float())   # (t_face, 3, H, W)
            else:
                crops.append(None)
        idx = [i for i, c in enumerate(crops) if c is not None]
        if idx:
            t = max(crops[i].shape[0] for i in idx)
            x = crops[idx[0]].new_zeros(len(idx), t, *crops[idx[0]].shape[1:])   # (b, t, 3, H, W), where the crops are
            mask = torch.zeros(len(idx), t, dtype=torch.bool)
            for j, i in enumerate(idx):
                x[j, : crops[i].shape[0]], mask[j, : crops[i].shape[0]] = crops[i], True
            with amp:
                feats, fmask = visual_encoder(x.to(device, dtype, non_blocking=True), mask.to(device))
            for j, i in enumerate(idx):
                out[i][1] = feats[j][fmask[j]].float().cpu()   # the encoder's rows: frames, or windows
    return out


def extract(manifest: str | os.PathLike, out: str | os.PathLike, audio_encoder: str | None = None,
            visual_encoder: str | None = None, fps: float = 5.0, batch_size: int = 4, device: str = "cpu",
            workers: int = 0, max_seconds: float | None = None, max_side: int | None = 640,
            precision: str = "fp32", progress: bool = True, log=None, random_init: bool = False,
            face_device: str | None = None, faces_in_main: bool | None = None, face_batch: int | None = None,
            window: float | None = WINDOW_SECONDS) -> dict[str, Any]:
    """Fill the cache at `out` for every clip of `manifest` not in it yet. Encoders are names
    (presets and timm names: their pretrained weights, or untrained ones with `random_init`),
    folders, or Encoder modules. precision: fp32 | bf16 | fp16 (weights cast; bf16 also puts conv
    nets in channels-last) | bf16-autocast (fp32 weights under bfloat16 autocast) | int8 (CPU: dynamic
    quantisation of the Linear layers) | auto (bf16 on a CPU with AMX / AVX-512 BF16, else fp32);
    cache.json records the resolved precision, so one cache never mixes features of two. face_device: where MTCNN runs (default: `device`);
    faces_in_main: find faces in this process, batched across clips (default: when the face
    device is not the CPU; the workers then only decode); face_batch: frames per MTCNN forward
    (default 16 on the CPU, 64 on a GPU; 1 makes every frame's detections bit-identical however
    clips are grouped: in shared batches MTCNN's dense layers differ by ~1e-7, which moves a box
    by ~1e-5 px and now and then a crop pixel by one grey level). Returns a summary.
    One `vavl extract` at a time writes a cache (a lock; a second one refuses in one line).
    window: a file longer than this many seconds is decoded, face-processed and encoded a window at
    a time (vavl.data.extract_long; None: every file whole); recorded in cache.json."""
    log = log or sys.stderr
    if not audio_encoder and not visual_encoder:
        raise DataError("give --audio-encoder, --visual-encoder or both")
    if precision not in PRECISIONS:
        raise DataError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    face_device = face_device or device
    faces_in_main = torch.device(face_device).type != "cpu" if faces_in_main is None else faces_in_main
    if not faces_in_main and torch.device(face_device).type != "cpu":
        raise DataError(f"faces on {face_device} run in the main process (worker processes do not use the GPU)")
    if precision in ("auto", "int8"):
        from ..core.devices import resolve_precision

        precision = resolve_precision(precision, device)
    rank, world, barrier = _dist(device)
    records = read_manifest(manifest)
    lock = CacheLock(out)
    if rank == 0:   # before any encoder is built: a folder that cannot be written, or another writer, stops here
        check_output_dir(out, "--out cache folder", create=False)
        if Path(out).is_dir():
            lock.acquire()
    try:
        return _extract(records, out, audio_encoder, visual_encoder, fps, batch_size, device, workers, max_seconds,
                        max_side, precision, progress, log, random_init, face_device, faces_in_main, face_batch,
                        rank, world, barrier, lock, window)
    finally:
        lock.release()


def _extract(records, out, audio_encoder, visual_encoder, fps, batch_size, device, workers, max_seconds, max_side,
             precision, progress, log, random_init, face_device, faces_in_main, face_batch, rank, world, barrier, lock,
             window=None):
    from ..media.processor import AudioVisualProcessor
    from .cache import BackgroundWriter

    dtype, autocast = PRECISIONS[precision], precision == "bf16-autocast"
    encoders, weights = build_encoders(audio_encoder, visual_encoder, device, precision, random_init)
    a_enc, v_enc = encoders.get("audio"), encoders.get("visual")
    processor = AudioVisualProcessor.for_encoders(a_enc, v_enc, fps=fps, max_side=max_side, device=face_device)
    if face_batch or torch.device(face_device).type == "cuda":   # a run-time setting, not one of the cache's
        processor.cropper.batch_size = face_batch or GPU_FACE_BATCH
    settings = {
        "version": SETTINGS_VERSION, "max_seconds": max_seconds, "precision": precision,
        "audio_encoder": encoder_name(audio_encoder), "visual_encoder": encoder_name(visual_encoder),
        "audio_weights": weights.get("audio"), "visual_weights": weights.get("visual"),
        "audio_dim": a_enc.output_dim if a_enc else None, "visual_dim": v_enc.output_dim if v_enc else None,
        "processor": processor.to_dict(),
    }
    window = None if max_seconds else window
    settings["window"] = window
    if FeatureCache(out).settings and "window" not in FeatureCache(out).settings:
        settings.pop("window")   # a cache made before windowed extraction: its files stay whole, never mixed
        window = None
    if getattr(a_enc, "wave_stats", None) is not None:   # the official global waveform z-scoring (vavl convert wav2vec2-official)
        settings["audio_wave_stats"] = a_enc.wave_stats
    cache = FeatureCache(out)
    if rank == 0:
        if lock.fd is None:   # the folder did not exist when the run started
            check_output_dir(out, "--out cache folder")
            lock.acquire()
        cache.init(settings)
        cache.remove_temp_files()   # under the lock: only a killed writer's
        for stale in Path(out).glob(".errors.rank*"):   # left by a killed run
            stale.unlink()
        removed = cache.remove_invalid()   # every file read whole: checksum, finite values, the id it holds
        if removed:
            print(f"vavl extract: {len(removed)} clip files in {out} were unreadable or damaged (truncated, a checksum "
                  f"mismatch, NaN / inf values) and were removed, to be extracted again: "
                  f"{', '.join(name for name, _ in removed[:5])} (first: {removed[0][1]})", file=log)
        processor.save_pretrained(out)   # the settings a model trained on this cache should be used with
    barrier()
    cache.init(settings)
    mine = records[rank::world]   # fixed by the manifest alone: another rank's new files never move a clip
    shard = [r for r in mine if not cache.has(r["id"])]
    skipped = len(mine) - len(shard)   # of this rank's clips
    loader = torch.utils.data.DataLoader(
        ClipLoader(shard, processor, a_enc is not None, v_enc is not None, max_seconds, faces=not faces_in_main,
                   window=window),
        batch_size=batch_size, num_workers=workers, collate_fn=_unwrap, pin_memory=torch.device(device).type == "cuda",
        prefetch_factor=4 if workers else None)   # each worker keeps 4 batches ready
    errors, traces, lock, t0 = [], [], threading.Lock(), time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(shard), unit="clip", desc=f"extract [rank {rank}]" if world > 1 else "extract",
               disable=not progress, position=rank, file=log, dynamic_ncols=True)

    def fail(clip_id: str, line: str, trace: str | None) -> None:   # from this thread or the writer's
        with lock:
            if trace:
                traces.append(f"==== {clip_id}\n{trace.rstrip()}\n\n")
                line = f"{line}; traceback in {Path(out) / 'errors.log'}"
            errors.append({"id": clip_id, "error": line})

    def encode(group, audio, visual):   # encode_batch looked up at each call: a test may replace it
        return encode_batch(group, audio, visual, device, dtype, autocast)

    def encode_long(it: dict[str, Any]) -> None:   # a window at a time, here (vavl.data.extract_long)
        clip_id = it["record"]["id"]
        try:
            long = LongClip(it["record"], processor, a_enc is not None, v_enc is not None, window)
            a, v, meta = long.encode(lambda inputs: encode([{"inputs": inputs}], a_enc, v_enc)[0],
                                     getattr(a_enc, "frame_rate", None))
            for m, x in (("audio", a), ("visual", v)):
                if x is not None and not torch.isfinite(x).all():
                    raise DataError(f"{clip_id}: the {m} encoder gave non-finite features (NaN / inf)")
            writer.write(clip_id, a, v, {**meta, "rank": rank})
        except Exception as e:   # whatever it is, this clip only
            fail(clip_id, *describe(clip_id, e))

    def encode_window(items: list[dict[str, Any]]) -> None:
        good = []
        for it in items:
            if it["error"] is not None:
                fail(it["record"]["id"], it["error"], it.get("trace"))
            elif it.get("long"):
                encode_long(it)
            else:
                good.append(it)
        if faces_in_main:
            good = find_faces(good, processor, fail)
        for it, got in encode_sorted(good, a_enc, v_enc, encode, batch_size):
            clip_id, inp = it["record"]["id"], it["inputs"]
            try:
                if isinstance(got, Exception):
                    raise got
                for m, x in zip(("audio", "visual"), got):
                    if x is not None and not torch.isfinite(x).all():
                        raise DataError(f"{clip_id}: the {m} encoder gave non-finite features (NaN / inf)")
                writer.write(clip_id, *got, {
                    "duration": float(inp.get("duration") or 0.0), "frames": int(inp.get("frames") or 0),
                    "face_frames": int(inp.get("face_frames") or 0), "notes": it["notes"], "rank": rank})
            except Exception as e:   # whatever it is, this clip only
                fail(clip_id, *describe(clip_id, e))
        bar.update(len(items))

    writer = BackgroundWriter(cache, lambda clip_id, e: fail(clip_id, *describe(clip_id, e)))
    try:
        pending: list[dict[str, Any]] = []
        for items in loader:
            pending += items
            if len(pending) >= LOOKAHEAD * batch_size:
                encode_window(pending)
                pending = []
        if pending:
            encode_window(pending)
    finally:
        written = writer.close()   # every clip on disk (or failed) before the index is rebuilt
    bar.close()
    seconds = time.perf_counter() - t0
    problems = []   # files that could not be written (a full disk): one line at the end, after the summary
    if rank != 0:   # rank 0 keeps its own failures in memory
        try:
            if errors:
                write_jsonl(Path(out) / f".errors.rank{rank}.jsonl", errors)
            if traces:
                atomic_write_text(Path(out) / f".errors.rank{rank}.log", "".join(traces))
        except DataError as e:
            problems.append(str(e))
    barrier()
    summary = {"clips": len(records), "skipped": skipped, "written": written, "failed": len(errors),
               "seconds": seconds, "rank": rank, "world": world}
    if rank == 0:
        cache.remove_temp_files(own=True)
        try:
            index = cache.rebuild_index()
        except DataError as e:   # index.jsonl not written: the clip files are there, the next run writes it
            problems.append(str(e))
            index = cache._index or {}
        summary.update(cached=len(index), **gather_errors(Path(out), index, log, errors, traces, problems))
        noted = [e for e in index.values() if e["meta"].get("notes")]
        if noted:
            print(f"vavl extract: {len(noted)} clips have notes (meta.notes in {out}/index.jsonl), e.g. "
                  f"{noted[0]['id']}: {noted[0]['meta']['notes'][0]}", file=log)
        share = f"rank 0 of {world}: " if world > 1 else ""   # skipped and written count rank 0's clips
        print(f"vavl extract: {len(index)} of {len(records)} clips cached in {out} ({summary['failed']} failed; "
              f"{share}{skipped} were already there, {written} written in {seconds:.1f} s)", file=log)
    if problems:
        raise DataError(f"{problems[0]} (the clips written are kept; run again once there is room: it resumes)")
    return summary

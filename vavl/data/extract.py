"""`vavl extract`: run frozen encoders over a manifest's clips into a feature cache.

    vavl extract --manifest crema_d.jsonl --audio-encoder wav2vec2-large-robust \\
        --visual-encoder efficientnet_b2 --out cache/crema_d [--fps 5] [--batch-size 4]
    accelerate launch --num_processes 2 -m vavl.cli extract ...     # disjoint shards, one cache

The cache also gets the processor's preprocessor_config.json (crop size, fps, normalisation).

Per clip: decode (PyAV) -> faces (MTCNN) -> processor (crops, normalisation) -> encoders ->
one safetensors file in the cache, written atomically. Clips already in the cache are skipped,
so a killed run resumes where it stopped without recomputing anything. A clip that cannot be
decoded is reported (errors.jsonl in the cache) and skipped; the next run retries it. Visual
features keep only the frames where a face was found; no face at all -> no visual features
(the modality is missing for that clip). Each rank writes its own files; rank 0 then rebuilds
index.jsonl from the files.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError
from .cache import FeatureCache
from .manifest import read_manifest

SETTINGS_VERSION = 1


def _dist(device: str):
    """(rank, world size, barrier) from Accelerate when launched with several processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        state = PartialState(cpu=not str(device).startswith("cuda"))   # CPU ranks talk over gloo
        return state.process_index, state.num_processes, state.wait_for_everyone
    return 0, 1, lambda: None


class ClipLoader(torch.utils.data.Dataset):
    """Manifest record -> processor outputs (decoding and face finding happen here, in workers)."""

    def __init__(self, records, processor, want_audio: bool, want_video: bool, max_seconds: float | None):
        self.records, self.processor = records, processor
        self.want_audio, self.want_video, self.max_seconds = want_audio, want_video, max_seconds

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        if not (self.want_audio and rec.get("audio")) and not (self.want_video and rec.get("video")):
            return {"record": rec, "inputs": {}, "error": None}   # nothing to encode: cached as missing
        try:
            return {"record": rec, "inputs": self.processor(self.decode(rec)), "error": None}
        except Exception as e:   # one bad clip must not end the run: report it and go on
            return {"record": rec, "inputs": None, "error": f"{type(e).__name__}: {e}"}

    def decode(self, rec):
        """The record's audio and video files (one file or two) -> one DecodedClip."""
        from ..media.decode import DecodedClip

        a_path = rec.get("audio") if self.want_audio else None
        v_path = rec.get("video") if self.want_video else None
        decode = self.processor.decode
        if a_path and a_path == v_path:
            return decode(a_path, end=self.max_seconds)
        a = decode(a_path, video=False, end=self.max_seconds) if a_path else None
        v = decode(v_path, audio=False, end=self.max_seconds) if v_path else None
        return DecodedClip(path=v_path or a_path, audio=a.audio if a else None, sample_rate=self.processor.sample_rate,
                           frames=v.frames if v else None, frame_times=v.frame_times if v else None,
                           fps=v.fps if v else None, duration=max(c.duration for c in (a, v) if c is not None))


def _unwrap(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


@torch.inference_mode()
def encode_batch(items: list[dict[str, Any]], audio_encoder, visual_encoder, device: str, dtype: torch.dtype):
    """Processor outputs of several clips -> per clip (audio (ta, da) or None, visual (tv, dv) or None)."""
    from .collate import pad_frames

    out = [[None, None] for _ in items]
    if audio_encoder is not None:
        idx = [i for i, it in enumerate(items) if it["inputs"].get("input_values") is not None]
        if idx:
            waves = [torch.as_tensor(items[i]["inputs"]["input_values"])[0].float() for i in idx]   # (n,) each
            x, mask = pad_frames([w[:, None] for w in waves])                       # (b, n, 1), (b, n)
            feats, fmask = audio_encoder(x[..., 0].to(device, dtype), mask.to(device))
            for j, i in enumerate(idx):
                out[i][0] = feats[j][fmask[j]].float().cpu()
    if visual_encoder is not None:
        crops = []
        for it in items:
            pv, pm = it["inputs"].get("pixel_values"), it["inputs"].get("pixel_mask")
            if pv is not None and pm is not None and bool(torch.as_tensor(pm).any()):
                crops.append(torch.as_tensor(pv)[0][torch.as_tensor(pm)[0].bool()].float())   # (t_face, 3, H, W)
            else:
                crops.append(None)
        idx = [i for i, c in enumerate(crops) if c is not None]
        if idx:
            t = max(crops[i].shape[0] for i in idx)
            x = torch.zeros(len(idx), t, *crops[idx[0]].shape[1:])                  # (b, t, 3, H, W)
            mask = torch.zeros(len(idx), t, dtype=torch.bool)
            for j, i in enumerate(idx):
                x[j, : crops[i].shape[0]], mask[j, : crops[i].shape[0]] = crops[i], True
            feats, fmask = visual_encoder(x.to(device, dtype), mask.to(device))
            for j, i in enumerate(idx):
                out[i][1] = feats[j][fmask[j]].float().cpu()   # the encoder's rows: frames, or windows
    return out


def extract(manifest: str | os.PathLike, out: str | os.PathLike, audio_encoder: str | None = None,
            visual_encoder: str | None = None, fps: float = 5.0, batch_size: int = 4, device: str = "cpu",
            workers: int = 0, max_seconds: float | None = None, max_side: int | None = 640,
            precision: str = "fp32", progress: bool = True, log=None) -> dict[str, Any]:
    """Fill the cache at `out` for every clip of `manifest` not in it yet. Encoders are names
    (presets, folders, timm names) or Encoder modules. Returns a summary."""
    from ..encoders import build_encoder
    from ..processing import AudioVisualProcessor

    log = log or sys.stderr
    if not audio_encoder and not visual_encoder:
        raise DataError("give --audio-encoder, --visual-encoder or both")
    rank, world, barrier = _dist(device)
    records = read_manifest(manifest)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    encoders = {}
    for modality, name in (("audio", audio_encoder), ("visual", visual_encoder)):
        if isinstance(name, torch.nn.Module):   # an encoder built by the caller
            encoders[modality] = name.to(device, dtype).eval()
        elif name:
            enc = build_encoder(name).to(device, dtype).eval()
            if enc.modality != modality:
                raise DataError(f"{name} is a {enc.modality} encoder; pass it as --{enc.modality}-encoder")
            encoders[modality] = enc
    a_enc, v_enc = encoders.get("audio"), encoders.get("visual")
    processor = AudioVisualProcessor.for_encoders(a_enc, v_enc, fps=fps, max_side=max_side, device=device)
    settings = {
        "version": SETTINGS_VERSION, "max_seconds": max_seconds, "precision": precision,
        "audio_encoder": _encoder_name(audio_encoder), "visual_encoder": _encoder_name(visual_encoder),
        "audio_dim": a_enc.output_dim if a_enc else None, "visual_dim": v_enc.output_dim if v_enc else None,
        "processor": processor.to_dict(),
    }
    cache = FeatureCache(out)
    if rank == 0:
        cache.init(settings)
        cache.remove_temp_files()
        for stale in Path(out).glob(".errors.rank*.jsonl"):   # left by a killed run
            stale.unlink()
        processor.save_pretrained(out)   # the settings a model trained on this cache should be used with
    barrier()
    cache.init(settings)
    todo = [r for r in records if not cache.has(r["id"])]
    shard = todo[rank::world]
    skipped = len(records) - len(todo)
    loader = torch.utils.data.DataLoader(
        ClipLoader(shard, processor, a_enc is not None, v_enc is not None, max_seconds),
        batch_size=batch_size, num_workers=workers, collate_fn=_unwrap)
    errors, written, t0 = [], 0, time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(shard), unit="clip", desc=f"extract [rank {rank}]" if world > 1 else "extract",
               disable=not progress, position=rank, file=log, dynamic_ncols=True)
    for items in loader:
        good = [it for it in items if it["error"] is None]
        for it in items:
            if it["error"] is not None:
                errors.append({"id": it["record"]["id"], "error": it["error"]})
        if good:
            feats = encode_batch(good, a_enc, v_enc, device, dtype)
            for it, (audio, visual) in zip(good, feats):
                inp = it["inputs"]
                cache.write(it["record"]["id"], audio, visual, {
                    "duration": float(inp.get("duration") or 0.0), "frames": int(inp.get("frames") or 0),
                    "face_frames": int(inp.get("face_frames") or 0), "rank": rank})
                written += 1
        bar.update(len(items))
    bar.close()
    seconds = time.perf_counter() - t0
    if errors:
        _write_jsonl(Path(out) / f".errors.rank{rank}.jsonl", errors)
    barrier()
    summary = {"clips": len(records), "skipped": skipped, "written": written, "failed": len(errors),
               "seconds": seconds, "rank": rank, "world": world}
    if rank == 0:
        cache.remove_temp_files()
        index = cache.rebuild_index()
        all_errors = []
        for part in sorted(Path(out).glob(".errors.rank*.jsonl")):
            all_errors += [json.loads(x) for x in part.read_text().splitlines() if x.strip()]
            part.unlink()
        all_errors = [e for e in all_errors if e["id"] not in index]
        _write_jsonl(Path(out) / "errors.jsonl", all_errors)
        summary.update(cached=len(index), failed=len(all_errors))
        if all_errors:
            shown = "; ".join(f"{e['id']}: {e['error']}" for e in all_errors[:3])
            print(f"vavl extract: {len(all_errors)} clips failed and were skipped (see {out}/errors.jsonl): {shown}",
                  file=log)
        print(f"vavl extract: {len(index)} of {len(records)} clips cached in {out} ({skipped} were already there, "
              f"{written} written by rank 0 in {seconds:.1f} s)", file=log)
    return summary


def _encoder_name(name) -> str | None:
    if isinstance(name, torch.nn.Module):
        return getattr(name, "name", None) or type(name).__name__
    if name and os.path.isdir(name):
        return str(Path(name).resolve())
    return name


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def add_arguments(parser) -> None:
    parser.add_argument("--manifest", required=True, help="manifest from `vavl prepare`")
    parser.add_argument("--out", required=True, help="cache folder (created; re-running resumes)")
    parser.add_argument("--audio-encoder", help="preset name, saved encoder folder, or transformers folder")
    parser.add_argument("--visual-encoder", help="preset name, timm model name, or saved encoder folder")
    parser.add_argument("--fps", type=float, default=5.0, help="video frames per second fed to the face encoder")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per encoder forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (under accelerate: each rank's own GPU)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="encoder precision")
    parser.add_argument("--workers", type=int, default=0, help="processes decoding clips and finding faces")
    parser.add_argument("--max-seconds", type=float, help="use at most this many seconds of each clip")
    parser.add_argument("--max-side", type=int, default=640, help="scale video so its longer side is at most this")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    device = args.device
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"--device {args.device}: no CUDA device here; use --device cpu")
    extract(args.manifest, args.out, args.audio_encoder, args.visual_encoder, fps=args.fps,
                      batch_size=args.batch_size, device=device, workers=args.workers, max_seconds=args.max_seconds,
                      max_side=args.max_side, precision=args.precision, progress=not args.no_progress)
    return 0

"""How fast can this CPU score one window of `vavl stream --incremental`? Each stage alone, no stream around it.

    python recipes/benchmarks/stream_floor.py                          # int8, 2 threads, --window 2 --hop 0.5
    python recipes/benchmarks/stream_floor.py --precision bf16 --out recipes/benchmarks/results/stream_floor_bf16.json

stream_realtime.py measures the stream as a whole. This script measures the least work one window of
the incremental mode needs (vavl/inference/stream_blocks.py), each stage timed alone, with the media
already decoded and in memory:

- audio: one new block of `hop` seconds through the speech encoder;
- faces: MTCNN on one frame (the grid picks one of the hop's frames at the model's fps and
  detect_every), the track through the new frames, and their face crops;
- visual: the new frames' crops (hop x fps of them) through the face encoder;
- fusion: the fusion model on a whole window's features (its audio frames and visual rows).

The model is stream_realtime.py's: AuxFormer on wav2vec2-large-robust (12 layers) + EfficientNet-B2,
random weights (the same cost as trained ones). Each stage runs `--runs` times after two warm-ups; the
median counts. The sum of the stage medians is the floor of the scoring seconds per window, and the sum
over the hop is the floor of the real-time factor: a stream cannot keep up better than that on this
machine, whatever the scheduling (it also decodes the media, which these numbers leave out).

Also measured: the same stages on one thread, and the audio block encoded on a second Python thread
while the faces and the visual encoder run (one torch thread each), then the fusion: how much running
the two encoders side by side would save. Writes results/stream_floor.json with the machine and its load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from predict_speed import AUDIO, VISUAL  # noqa: E402
from stream_realtime import build_model, cpu_info, write_json  # noqa: E402


def face_frame(width: int = 640, height: int = 360) -> np.ndarray:
    """stream_realtime.py's frame: the astronaut's face on a flat background."""
    from PIL import Image
    from skimage.data import astronaut

    head = np.asarray(Image.fromarray(astronaut()[10:210, 140:310]).resize((128, 150), Image.BILINEAR))
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = (70, 80, 100)
    frame[100:250, 250:378] = head
    return frame


def median_seconds(fn, runs: int) -> float:
    import torch

    with torch.inference_mode():
        fn()
        fn()
        took = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            took.append(time.perf_counter() - t0)
    return round(statistics.median(took), 4)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", default="int8", help="the encoders' precision (vavl stream --precision)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window", type=float, default=2.0)
    p.add_argument("--hop", type=float, default=0.5)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", default=str(HERE / "results" / "stream_floor.json"))
    args = p.parse_args()
    import torch

    from vavl.inference.predict import prepare_model

    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="vavl-stream-floor-") as tmp:
        model = prepare_model(str(build_model(Path(tmp) / "model")), "cpu", args.precision)
    proc, cropper = model.processor, model.processor.cropper
    per_hop = max(1, round(args.hop * proc.fps))                       # new frames a window brings
    t = np.arange(int(args.hop * proc.sample_rate)) / proc.sample_rate
    block = torch.from_numpy((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32))[None]
    frame = face_frame()
    frames = np.stack([frame] * per_hop)

    def faces():   # as stream_blocks does for a window's new frames: detect the grid's frame, track, crop
        found = cropper.detect(frame[None])[0]
        boxes = cropper.track(per_hop, {0: found}, frame_side=min(frame.shape[:2]))
        return cropper.crop(frames, cropper.squares(boxes)), len(found[0])

    cut, found = faces()
    if not found:
        print("MTCNN found no face in the benchmark frame", file=sys.stderr)
        return 1
    crops = proc.normalize(cut).unsqueeze(0)
    with torch.inference_mode():   # a whole window's features, for the fusion model
        wave = torch.from_numpy(np.tile(block.numpy(), (1, round(args.window / args.hop))))
        a, am = model.audio_encoder(wave, torch.ones_like(wave, dtype=torch.bool))
        rows = round(args.window * proc.fps)
        v, vm = model.visual_encoder(crops[:, :1].repeat(1, rows, 1, 1, 1), torch.ones(1, rows, dtype=torch.bool))

    stages = {
        "audio_encoder": lambda: model.audio_encoder(block, torch.ones_like(block, dtype=torch.bool)),
        "faces": faces,
        "visual_encoder": lambda: model.visual_encoder(crops, torch.ones(1, per_hop, dtype=torch.bool)),
        "fusion": lambda: model(audio_features=a, audio_mask=am, visual_features=v, visual_mask=vm),
    }

    def side_by_side() -> None:   # the audio block on a second thread while faces + visual run here
        worker = threading.Thread(target=torch.inference_mode()(stages["audio_encoder"]))
        worker.start()
        stages["faces"]()
        stages["visual_encoder"]()
        worker.join()
        stages["fusion"]()

    report = {"benchmark": "stream_floor",
              "command": f"python recipes/benchmarks/stream_floor.py --precision {args.precision} --threads "
                         f"{args.threads} --window {args.window:g} --hop {args.hop:g} --runs {args.runs}",
              "model": f"auxformer + {AUDIO} (12 layers) + {VISUAL}, random weights", "precision": args.precision,
              "window": args.window, "hop": args.hop, "new_frames_per_window": per_hop,
              "audio_frames_per_window": int(a.shape[1]), "runs": args.runs}
    for threads in (args.threads, 1):
        torch.set_num_threads(threads)
        timed = {k: median_seconds(fn, args.runs) for k, fn in stages.items()}
        total = round(sum(timed.values()), 4)
        report[f"threads_{threads}"] = {"stage_median_s": timed, "floor_s_per_window": total,
                                        "floor_real_time_factor": round(total / args.hop, 3)}
        print(f"{threads} thread(s): {timed} -> {total:.3f} s per window, real-time factor >= "
              f"{total / args.hop:.2f}", file=sys.stderr)
    torch.set_num_threads(1)
    side = median_seconds(side_by_side, args.runs)
    torch.set_num_threads(args.threads)
    report["side_by_side_one_thread_each"] = {"s_per_window": side, "real_time_factor": round(side / args.hop, 3)}
    report["machine"] = {**cpu_info(), "cpu_count": os.cpu_count(),
                         "torch": torch.__version__, "load_average_before": load_before,
                         "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    write_json(Path(args.out), report)
    print(f"side by side (1 + 1 threads): {side:.3f} s per window -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

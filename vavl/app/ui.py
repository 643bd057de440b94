"""The Gradio app of `vavl app` (needs the extra `vavl[app]`).

    demo = build_app("runs/auxformer", precision="fp32")   # gr.Blocks, not launched
    demo.launch(server_name="127.0.0.1")

Tab "Clip": upload or record (webcam + microphone) a clip, or give an audio file; the answer of
`vavl predict` (label, the clip's scores, the probabilities of the fused / audio / visual heads, the
modalities used, notes), the timeline chart of `vavl predict --timeline` and the face crops the
model saw; two boxes add the answer without the audio and without the video beside it
(vavl.app.scoring). Tab "Live": a clip played at its own pace through `vavl stream`'s windows
(vavl.inference.stream), one row per window as it is scored; and the browser's camera and microphone
streamed into the same windows (vavl.app.live).
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

import gradio as gr

from ..core.errors import VavlError
from . import scoring
from .live import LiveFeed

HEADS = ("fused", "audio", "visual")
TITLES = {None: "whole clip", "audio": "without the audio", "video": "without the video"}
ELEM = {None: "answer-full", "audio": "answer-no-audio", "video": "answer-no-video"}


def render(answer: dict[str, Any] | None, drop: str | None) -> str:
    """One answer as Markdown: label, modalities, a table (the clip's score, then each head), notes."""
    title = f"### {TITLES[drop]}\n\n"
    if answer is None:
        return title + "_tick the box above to see it_"
    if answer["message"]:
        return title + answer["message"]
    r = answer["result"]
    if r["scores"] is None:
        return title + "**no prediction**\n\n" + "\n".join(f"- {n}" for n in r["notes"])
    heads = [h for h in HEADS if h in answer["heads"]]
    label = r["label"] if r["label"] is not None else "(regression: values below)"
    lines = [f"**label: {label}**", "",
             f"modalities used: **{'+'.join(r['modalities'])}** (head: {r['head']}); "
             f"face in {r['face_frames']} of {r['frames']} frames; {r['duration']:g} s", "",
             "| class | score | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for name, value in r["scores"].items():
        lines.append(f"| {name} | {value:.6f} | " + " | ".join(f"{answer['heads'][h][name]:.6f}" for h in heads) + " |")
    lines += ["", "_score: what `vavl predict` gives for the clip; the other columns: each head of the model._"]
    if r["notes"]:
        lines += [""] + [f"- {n}" for n in r["notes"]]
    return title + "\n".join(lines)


def window_table(model, lines: list[dict[str, Any]]) -> str:
    """Window lines of vavl.inference.stream as a Markdown table."""
    names = model.label_names
    rows = ["| start | end | label | modalities | " + " | ".join(names) + " | latency (s) |",
            "|---|---|---|---|" + "---|" * (len(names) + 1)]
    for line in lines:
        scores = line["scores"] or {}
        values = " | ".join(f"{scores[n]:.6f}" if n in scores else "" for n in names)
        rows.append(f"| {line['start']:g} | {line['end']:g} | {line['label'] or ''} | "
                    f"{'+'.join(line['modalities']) or 'nothing'} | {values} | {line['latency']:.3f} |")
    return "\n".join(rows)


def build_app(model, device: str = "cpu", precision: str = "fp32", title: str | None = None) -> gr.Blocks:
    """The app's Blocks for `model` (a save_pretrained folder or a zoo name), loaded once now."""
    loaded = scoring.load(model, device, precision)
    workroot = tempfile.TemporaryDirectory(prefix="vavl-app-")
    name = title or os.path.basename(os.path.normpath(str(model)))
    labels = ", ".join(loaded.label_names)

    def clip_answers(video, audio, drop_audio, drop_video):
        path = video or audio
        if not path:
            raise gr.Error("Upload or record a clip first (a video, or an audio file below it).")
        work = tempfile.mkdtemp(dir=workroot.name)
        answers = {}
        try:
            for drop, wanted in ((None, True), ("audio", drop_audio), ("video", drop_video)):
                answers[drop] = scoring.score(loaded, path, work, drop, device) if wanted else None
        except VavlError as e:
            raise gr.Error(str(e)) from None
        full = answers[None]
        crops = [(c, f"crop {i + 1}") for i, c in enumerate(full["crops"])]
        return (render(full, None), render(answers["audio"], "audio"), render(answers["video"], "video"),
                full["timeline"], crops)

    def live_rows(path, window, hop):
        from ..inference.stream import stream_windows
        from ..media.live import av_events

        if not path:
            raise gr.Error("Upload a clip to play as a stream.")
        p = loaded.processor
        try:
            events = av_events(path, fps=p.fps, sample_rate=p.sample_rate, max_side=p.max_side, realtime=True)
            lines, status = [], "playing"
            yield window_table(loaded, lines), status
            # an uploaded file played at its pace: every window shown, as `vavl stream FILE` prints them
            for line in stream_windows(events, loaded, window=float(window), hop=float(hop), device=device,
                                       catch_up=False):
                if "event" in line:
                    status = f"{line['message']} after {line.get('after', 0):g} s ({line['windows']} windows)"
                else:
                    lines.append(line)
                yield window_table(loaded, lines), status
        except VavlError as e:
            raise gr.Error(str(e)) from None

    feeds: dict[str, LiveFeed] = {}   # one per browser session

    def feed_for(request: gr.Request) -> LiveFeed:
        key = getattr(request, "session_hash", None) or "default"
        feed = feeds.get(key)
        if feed is None or feed.closed:   # new, or stopped after a stall: start again
            feed = feeds[key] = LiveFeed(loaded, device)
        return feed

    def live_view(feed: LiveFeed):
        lines = feed.lines
        status = f"{len(lines)} windows scored"
        if lines:
            latest = lines[-1]
            status += f"; the latest: {latest['label'] or 'no prediction'}" + "".join(f"; {n}" for n in latest["notes"])
        return window_table(loaded, lines[-20:][::-1]), status

    def on_frame(image, request: gr.Request):
        feed = feed_for(request)
        feed.frame(image)
        return live_view(feed)

    def on_sound(chunk, request: gr.Request):   # the camera's events update the page
        feed = feed_for(request)
        if chunk is not None:
            feed.sound(*chunk)

    def on_leave(request: gr.Request):
        feed = feeds.pop(getattr(request, "session_hash", None) or "default", None)
        if feed is not None:
            feed.close()

    with gr.Blocks(title=f"vavl: {name}") as demo:
        demo.vavl_workroot = workroot   # the answers' files live as long as the app
        gr.Markdown(f"# {name}\n\nAudio-visual emotion recognition with vavl. Classes: {labels}. "
                    f"Precision of the encoders: {getattr(loaded, 'precision', 'fp32')}.")
        with gr.Tab("Clip"):
            with gr.Row():
                with gr.Column():
                    video = gr.Video(label="clip (upload, or record with the webcam and microphone)",
                                     sources=["upload", "webcam"], include_audio=True,
                                     webcam_options=gr.WebcamOptions(mirror=False), elem_id="clip")
                    audio = gr.Audio(label="or an audio-only clip", sources=["upload", "microphone"], type="filepath",
                                     elem_id="audio-clip")
                with gr.Column():
                    drop_audio = gr.Checkbox(label="also without the audio (the model's missing-modality answer)",
                                             elem_id="drop-audio")
                    drop_video = gr.Checkbox(label="also without the video", elem_id="drop-video")
                    button = gr.Button("Score", variant="primary", elem_id="score")
            with gr.Row():
                outs = []
                for d in (None, "audio", "video"):
                    with gr.Column(scale=2 if d is None else 1, min_width=240):
                        outs.append(gr.Markdown(render(None, d) if d else f"### {TITLES[None]}", elem_id=ELEM[d]))
            timeline = gr.Image(label="timeline (as `vavl predict --timeline` draws it)", type="filepath",
                                elem_id="timeline")
            crops = gr.Gallery(label="face crops the visual encoder saw (up to 8, first 30 s)", columns=8, height=170,
                               elem_id="crops")
            button.click(clip_answers, [video, audio, drop_audio, drop_video], [*outs, timeline, crops],
                         concurrency_limit=1)
        with gr.Tab("Live"):
            gr.Markdown("A clip played at its own pace as a stream: `vavl stream --realtime` windows, one row each.")
            with gr.Row():
                live_clip = gr.Video(label="clip to play as a stream", sources=["upload", "webcam"], include_audio=True,
                                     webcam_options=gr.WebcamOptions(mirror=False), elem_id="live-clip")
                with gr.Column():
                    window = gr.Number(2.0, label="window (s)", minimum=0.5)
                    hop = gr.Number(0.5, label="hop (s)", minimum=0.1)
                    start = gr.Button("Play", elem_id="live-play")
            status = gr.Markdown(elem_id="live-status")
            table = gr.Markdown(elem_id="live-windows")
            start.click(live_rows, [live_clip, window, hop], [table, status], concurrency_limit=1)
            gr.Markdown("Camera and microphone: 2 s windows every 0.5 s, the newest first (start the camera, "
                        "the microphone or both).")
            with gr.Row():
                camera = gr.Image(label="camera", sources=["webcam"], streaming=True, type="numpy",
                                  webcam_options=gr.WebcamOptions(mirror=False), elem_id="live-camera")
                microphone = gr.Audio(label="microphone", sources=["microphone"], streaming=True, type="numpy",
                                      elem_id="live-microphone")
            cam_status = gr.Markdown(elem_id="live-cam-status")
            cam_table = gr.Markdown(elem_id="live-cam-windows")
            camera.stream(on_frame, [camera], [cam_table, cam_status], stream_every=0.2, concurrency_limit=None)
            microphone.stream(on_sound, [microphone], None, stream_every=0.5, concurrency_limit=None)
        demo.unload(on_leave)
    return demo

"""`vavl stream`: emotion scores over sliding windows of a live source, one JSON line per window.

    vavl stream clip.mp4 --model runs/auxformer --realtime           # a file at its own pace
    vavl stream clip.mp4 --model runs/auxformer                      # a file as fast as it decodes
    vavl stream /dev/video0 --format v4l2 --audio-source default --audio-format pulse --model DIR
    vavl stream rtsp://camera/stream --option rtsp_transport=tcp --model DIR --out scores.jsonl
    vavl stream /dev/video0 --format v4l2 --model DIR --serve-ws 8765        # also on ws://127.0.0.1:8765
    ffmpeg -i in.mp4 -f nut - | vavl stream - --format nut --model DIR

Windows of --window seconds every --hop seconds, each scored as `vavl predict` scores a clip
(vavl/inference/stream.py), or with --incremental assembled from hop-second audio blocks and frames
each encoded once (faster; a window's answer then differs from scoring it alone: stream_blocks.py); a live source's windows are passed over when scoring falls behind.
The last line is an event: the source ended, stalled or broke off.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..core.devices import PRECISIONS
from ..core.errors import ConfigError
from .args import positive_float, positive_int

EPILOG = ("exit codes: 0 the source ended (its last partial window scored when it holds at least half a hop); "
          "2 bad arguments, or the source cannot be opened; 4 the source stalled (nothing for --stall seconds); "
          "5 the source broke off with a read error; 130 interrupted")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a media file, a URL (rtsp://, http(s)://, an HLS .m3u8), a device with --format "
                                       "(/dev/video0 with v4l2, default with pulse / alsa), or - for stdin")
    parser.add_argument("--model", required=True, help="folder written by save_pretrained (or a zoo name with weights)")
    parser.add_argument("--format", help="PyAV / FFmpeg input format: v4l2, alsa, pulse, avfoundation, dshow, nut, ...")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an FFmpeg input option (repeatable), e.g. rtsp_transport=tcp, video_size=640x480")
    parser.add_argument("--audio-source", help="a second input for the sound (a microphone beside a camera)")
    parser.add_argument("--audio-format", help="its input format (pulse, alsa, ...)")
    parser.add_argument("--realtime", action="store_true", help="play a file at its own pace (as a camera would deliver it)")
    parser.add_argument("--window", type=positive_float, default=2.0, help="seconds per window")
    parser.add_argument("--hop", type=positive_float, default=0.5,
                        help="seconds between window starts; when scoring falls behind a live source, it jumps to "
                             "the newest complete window (the windows passed over: skipped_windows in the lines)")
    parser.add_argument("--stall", type=positive_float, default=10.0, help="seconds without data before the source "
                                                                          "counts as stalled")
    parser.add_argument("--reconnect", type=positive_int, default=0, metavar="N",
                        help="when the source stalls or breaks off, open it again up to N times")
    parser.add_argument("--out", metavar="FILE", help="append the JSON lines to FILE instead of stdout")
    parser.add_argument("--serve-ws", metavar="[HOST:]PORT",
                        help="also send every line to the clients of a websocket server on HOST:PORT (host 127.0.0.1 "
                             "unless given; port 0: a free one, printed on stderr); needs vavl[stream]")
    parser.add_argument("--ws-wait", type=positive_int, default=0, metavar="N",
                        help="with --serve-ws: open the source only once N clients have connected")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="the encoders' weights (see `vavl predict --help`); auto: bf16 on CPUs with AMX / "
                             "AVX-512 BF16, else fp32")
    parser.add_argument("--incremental", action="store_true",
                        help="work on each piece of media once: the sound in blocks of --hop seconds through the audio "
                             "encoder once each, faces tracked along the stream and each frame's crop encoded once, "
                             "windows assembled from them (faster; lines say \"incremental\": true). A window's answer "
                             "then differs from scoring it alone: the speech encoder saw --hop-second blocks without the "
                             "rest of the window, face boxes come from tracking along the stream (docs/predict.md has "
                             "the measured difference). Not for AST / Whisper audio encoders or HiCMAE; VideoMAE keeps "
                             "its per-window visual path")
    parser.epilog = EPILOG


def _options(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: give KEY=VALUE, e.g. rtsp_transport=tcp")
        out[key] = value
    return out


def open_events(args, processor):
    """The source (and the audio source) opened as events (vavl.media.live); MediaError when one cannot be."""
    from ..media.live import av_events, merge_events

    common = dict(fps=processor.fps, sample_rate=processor.sample_rate, max_side=processor.max_side,
                  realtime=args.realtime, open_timeout=max(args.stall, 10.0))
    source = "pipe:0" if args.source == "-" else args.source   # FFmpeg reads the pipe itself, as bytes arrive
    main = av_events(source, format=args.format, options=_options(args.option),
                     audio=args.audio_source is None, **common)
    if args.audio_source is None:
        return main
    sound = av_events(args.audio_source, format=args.audio_format, video=False, **common)
    return merge_events(main, sound)


def run(args: argparse.Namespace) -> int:
    from ..core.devices import check_device
    from ..inference.predict import prepare_model

    if args.hop > args.window:
        raise ConfigError(f"--hop {args.hop:g} is longer than --window {args.window:g}: windows would leave gaps")
    device = check_device(args.device)
    _options(args.option)   # before any work
    if args.ws_wait and not args.serve_ws:
        raise ConfigError("--ws-wait waits for websocket clients: give --serve-ws [HOST:]PORT too")
    server = _serve(args.serve_ws) if args.serve_ws else None
    try:
        model = prepare_model(args.model, device, args.precision)
        if args.incremental:
            from ..inference.stream_blocks import check_incremental

            check_incremental(model)   # one line before the source is opened
        if server and args.ws_wait:
            print(f"vavl stream: waiting for {args.ws_wait} websocket client(s) on {server.url}", file=sys.stderr)
            server.wait_for_clients(args.ws_wait)
        return _loop(args, model, device, server)
    finally:
        if server:
            server.close()
            for client, n in server.dropped.items():
                print(f"vavl stream: websocket client {client} read too slowly and missed {n} lines", file=sys.stderr)


def _serve(address: str):
    from ..inference.ws_lines import LineServer, parse_address

    host, port = parse_address(address)
    server = LineServer(host, port)
    print(f"vavl stream: serving the lines on {server.url}", file=sys.stderr, flush=True)
    return server


def _loop(args, model, device, server) -> int:
    from ..inference.stream import exit_code, stream_windows

    # a local file read as fast as possible waits for the model; anything live drops its oldest chunks instead
    live = args.realtime or not (args.source != "-" and os.path.isfile(args.source))
    out = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout
    code, attempt = 0, 0
    try:
        while True:
            events = open_events(args, model.processor)
            for line in stream_windows(events, model, window=args.window, hop=args.hop, device=device, live=live,
                                       stall=args.stall, incremental=args.incremental):
                if attempt:
                    line["connection"] = attempt
                text = json.dumps(line, allow_nan=False)
                out.write(text + "\n")
                out.flush()
                if server:
                    server.publish(text)
                if "event" in line:
                    code = exit_code(line)
                    print(f"vavl stream: {args.source}: {line['message']} after {line.get('after', 0):g} s of media "
                          f"({line['windows']} windows)", file=sys.stderr)
            if code == 0 or attempt >= args.reconnect:
                return code
            attempt += 1
            print(f"vavl stream: {args.source}: reconnecting ({attempt} of {args.reconnect})", file=sys.stderr)
    finally:
        if out is not sys.stdout:
            out.close()

"""`vavl app`: the model in a web page (Gradio, the extra `vavl[app]`).

    vavl app --model runs/auxformer                        # http://127.0.0.1:7860, this machine only
    vavl app --model runs/auxformer --port 8080 --precision int8
    vavl app --model runs/auxformer --export-space space/  # app.py + requirements.txt + card for a HF Space

The page: upload or record a clip, its label, scores per head, modalities, timeline and face crops,
the answers without the audio / the video beside it, and a live tab (vavl/app/ui.py).
"""
from __future__ import annotations

import argparse
import os

from ..core.devices import PRECISIONS
from ..core.errors import ConfigError
from .args import bounded

INSTALL = 'the app needs Gradio: pip install "vavl[app]"'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="folder written by save_pretrained (or a zoo name with weights)")
    parser.add_argument("--export-space", metavar="DIR", help="write a Hugging Face Space folder (app.py, "
                        "requirements.txt, README.md card, the model) to DIR instead of serving the app")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                            "only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=bounded(1, 65535, kind=int), default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also ask Gradio for a public share link (off by default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="the encoders' weights (see `vavl predict --help`)")


def run(args: argparse.Namespace) -> int:
    if args.export_space:
        from ..app.space import export_space

        out = export_space(args.export_space, args.model, args.precision)
        print(f"vavl app: Space written to {out} (push the folder to a Hugging Face Space; "
              "`python app.py` runs it here)")
        return 0
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # no calls home from a local app
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL) from None
    import importlib

    from ..app.ui import build_app
    from ..core.devices import check_device

    importlib.import_module("vavl.encoders.hf").quiet_hub()   # one line per problem: no loading bars

    demo = build_app(args.model, check_device(args.device), args.precision)
    print(f"vavl app: serving {args.model} on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    demo.queue().launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                        quiet=True)
    return 0

"""The `vavl` command. Each command is a module of this folder (vavl/cli/<command>.py) with
`add_arguments(parser)` and `run(args) -> int`; only the chosen one is imported. No module outside
this folder parses arguments."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import VavlError

COMMANDS = {   # command -> one line of help; the code is vavl/cli/<command>.py
    "demo": "prepare -> extract -> fine-tune -> evaluate -> predict on a synthetic corpus",
    "prepare": "index a corpus folder into a manifest (.jsonl)",
    "extract": "run encoders over a manifest into a feature cache",
    "run": "run a recipe (e.g. finetune) by path, with its config and key=value overrides",
    "predict": "emotion scores for media files",
    "evaluate": "score a model under missing/corrupted modality conditions",
    "analyze": "embedding plots, saliency over time, error summaries",
    "convert": "import official AuxFormer / VAVL / HSEmotion / audeering checkpoints",
    "zoo": "list the model zoo and its model cards",
    "export": "a trained model as ONNX (checked with onnxruntime)",
    "env": "versions, devices and caches, for bug reports (--json for machines)",
    "stream": "emotion scores over sliding windows of a camera, microphone, URL or file, one JSON line each",
    "app": "the model in a web page (Gradio): upload or record a clip; --export-space writes a Hugging Face Space",
}
QUIET_HUB = {"demo", "extract", "run", "predict", "evaluate", "analyze", "convert", "export", "stream"}   # they load transformers models


def command_module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vavl", description="Audio-visual emotion recognition model zoo.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            command_module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    try:
        if args.command in QUIET_HUB:   # one line per problem on stderr: no loading bars, notices or retry warnings
            importlib.import_module("vavl.encoders.hf").quiet_hub()
        return int(command_module(args.command).run(args) or 0)
    except VavlError as e:
        print(f"vavl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vavl {args.command}: interrupted", file=sys.stderr)
        return 130



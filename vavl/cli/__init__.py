"""`vavl` command line. Each subcommand lives in its own module with `add_arguments(parser)` and
`run(args) -> int`; only the chosen one is imported."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import VavlError

COMMANDS = {
    "demo": ("vavl.demo", "prepare -> extract -> fine-tune -> evaluate -> predict on a synthetic corpus"),
    "prepare": ("vavl.data.prepare", "index a corpus folder into a manifest (.jsonl)"),
    "extract": ("vavl.data.extract", "run encoders over a manifest into a feature cache"),
    "predict": ("vavl.pipeline", "emotion scores for media files"),
    "evaluate": ("vavl.evaluate_cli", "score a model under missing/corrupted modality conditions"),
    "analyze": ("vavl.analysis", "embedding plots, saliency over time, error summaries"),
    "convert": ("vavl.convert", "import official AuxFormer / VAVL / HSEmotion / audeering checkpoints"),
    "zoo": ("vavl.zoo", "list the model zoo and its model cards"),
    "export": ("vavl.export", "a trained model as ONNX (checked with onnxruntime)"),
    "env": ("vavl.environment", "versions, devices and caches, for bug reports (--json for machines)"),
}
QUIET_HUB = {"demo", "extract", "predict", "evaluate", "analyze", "convert", "export"}   # they load transformers models


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vavl", description="Audio-visual emotion recognition model zoo.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
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
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except VavlError as e:
        print(f"vavl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vavl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

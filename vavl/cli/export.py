"""`vavl export onnx`: a trained model as ONNX, checked with onnxruntime (vavl.inference.export).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    p = sub.add_parser("onnx", help="ONNX graph (dynamic batch and time axes), checked with onnxruntime")
    p.add_argument("--model", required=True, help="folder written by save_pretrained")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--no-optimize", action="store_true", help="skip onnxscript's graph optimisation (faster export)")


def run(args: argparse.Namespace) -> int:
    from ..inference.export import export_onnx

    worst = export_onnx(args.model, args.out, optimize=not args.no_optimize)
    print(f"wrote {args.out}; onnxruntime matches PyTorch within {worst:.1e}")
    return 0

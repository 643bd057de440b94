"""Missing-modality evaluation of a trained model: one table and one plot per run.

    python recipes/evaluate.py --model runs/auxformer --manifest data/crema_d.jsonl --protocol vavl-1 \
        --split test --cache cache/crema_d --conditions av,audio,video,drop-frames:0.5 --out reports/auxformer
    accelerate launch --multi_gpu --num_processes 2 recipes/evaluate.py ...   # sharded, each clip counted once

The same as `vavl evaluate` (vavl/evaluate_cli.py; the conditions are in vavl/data/conditions.py).
"""
import argparse
import sys

from vavl.errors import VavlError
from vavl.evaluate_cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args())
    except VavlError as e:
        print(f"recipes/evaluate.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

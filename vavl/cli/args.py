"""argparse types and options the commands share."""
from __future__ import annotations

import argparse


def positive_float(text: str) -> float:
    """argparse type: a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def bounded(low: float, high: float, kind=float, unit: str = ""):
    """argparse type: a number (an int when kind is int) in [low, high]; the bounds keep a typo
    (1e-4 for a window, 1e5 for an fps) from turning into hours of work or a huge allocation."""
    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not low <= value <= high:   # NaN fails too
            raise argparse.ArgumentTypeError(f"{text!r} is outside {low:g}..{high:g}{unit}")
        return value

    check.__name__ = kind.__name__   # argparse names the type in its messages
    return check

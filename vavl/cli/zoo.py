"""`vavl zoo list | show NAME | encoders`: the model zoo, from the registry (cards: zoo/*.md)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="zoo_command", metavar="{list,show,encoders}", required=True)
    sub.add_parser("list", help="registered models: name, status, corpus, task")
    sub.add_parser("encoders", help="encoder presets: what each is, rate, width, license of the weights")
    show = sub.add_parser("show", help="print one model card")
    show.add_argument("name")


def run(args: argparse.Namespace) -> int:
    from ..encoders.base import encoder_cards
    from ..models.registry import get_entry
    from ..models.cards import card_text, list_table

    if args.zoo_command == "list":
        print(list_table())
    elif args.zoo_command == "show":
        print(card_text(get_entry(args.name).name))
    else:
        print("\n".join(encoder_cards()))
    return 0

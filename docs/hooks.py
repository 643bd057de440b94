"""MkDocs hook: the command-line reference is generated from vavl's own argparse parsers, so it
cannot drift from the code. A page that holds the line `<!-- cli-reference -->` gets it."""
from __future__ import annotations

import argparse

MARK = "<!-- cli-reference -->"


def _parser_section(name: str, parser: argparse.ArgumentParser, depth: int) -> list[str]:
    parser.prog = f"vavl {name}"
    out = [f"{'#' * depth} `vavl {name}`", "", parser.description or "", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _parser_section(f"{name} {sub_name}", sub, depth + 1)
    return out


def cli_reference() -> str:
    from vavl.cli import COMMANDS, build_parser

    lines = []
    for name in COMMANDS:
        top = build_parser(name)
        sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        lines += _parser_section(name, sub, 2)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return markdown.replace(MARK, cli_reference()) if MARK in markdown else markdown

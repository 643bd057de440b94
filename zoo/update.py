"""Developer script: regenerate the zoo's cards (zoo/*.md) from the registry, or record a real run's
results for an entry's card. It writes into the source checkout, so it is not a `vavl` command.

    python zoo/update.py                      # rewrite zoo/README.md and one card per registry entry
    python zoo/update.py record NAME --metrics REPORT/metrics.json --data "CREMA-D, vavl-1 test, 1,116 clips" \
        --command "vavl evaluate ..."       # zoo/results/NAME.json, then rewrites the cards

tests/test_zoo_cards.py fails when a card is out of date.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import vavl
from vavl.models.cards import MARKER, zoo_files

ZOO_DIR = Path(__file__).resolve().parent


def recorded_results(directory: Path = ZOO_DIR) -> dict[str, dict]:
    """entry name -> its recorded run (zoo/results/<name>.json)."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((directory / "results").glob("*.json"))}


def write_cards(directory: Path = ZOO_DIR) -> tuple[list[str], list[str]]:
    """Write every card and the index; remove generated cards whose entry is gone. -> (written, removed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = zoo_files(recorded_results(directory))
    for fname, text in files.items():
        tmp = directory / f".{fname}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, directory / fname)
    removed = []
    for path in sorted(directory.glob("*.md")):
        if path.name not in files and path.read_text(encoding="utf-8").startswith(MARKER):
            path.unlink()
            removed.append(path.name)
    return sorted(files), removed


def record_results(name: str, metrics_path, data: str, command: str, directory: Path = ZOO_DIR) -> Path:
    """Attach a real run's metrics.json (of `vavl evaluate`) to an entry's card, with the data it ran on."""
    vavl.get_entry(name)
    if not data.strip():
        raise vavl.ConfigError("say what data the results come from (corpus, split, number of clips)")
    metrics = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
    out = Path(directory) / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data": data, "command": command, "metrics": metrics}, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action")
    rec = sub.add_parser("record", help="record a run's metrics.json for an entry")
    rec.add_argument("name")
    rec.add_argument("--metrics", required=True)
    rec.add_argument("--data", required=True, help="corpus, split and number of clips the run was scored on")
    rec.add_argument("--command", required=True, help="the command that produced metrics.json")
    args = parser.parse_args(argv)
    if args.action == "record":
        print(f"wrote {record_results(args.name, args.metrics, args.data, args.command)}")
    written, removed = write_cards()
    print(f"wrote {len(written)} files to {ZOO_DIR}" + (f"; removed stale cards {removed}" if removed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

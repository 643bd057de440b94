"""`vavl extract`'s failure record: each rank's failed clips -> errors.jsonl, their tracebacks -> errors.log."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import DataError
from ..core.files import atomic_write_text


def gather_errors(out: Path, index: dict[str, Any], log, errors: list[dict], traces: list[str],
                   problems: list[str]) -> dict[str, Any]:
    """Rank 0: its own failures (`errors`, `traces`) and the other ranks' -> errors.jsonl (and
    errors.log for tracebacks); a clip cached by now is no longer a failure. A file that cannot be
    written goes to `problems`; the failures are still counted and shown."""
    rows, traced = list(errors), "".join(traces)
    for part in sorted(out.glob(".errors.rank*.jsonl")):
        rows += [json.loads(x) for x in part.read_text().splitlines() if x.strip()]
        part.unlink()
    rows = [e for e in rows if e["id"] not in index]
    log_path = out / "errors.log"
    for t in sorted(out.glob(".errors.rank*.log")):
        traced += t.read_text(encoding="utf-8")
        t.unlink()
    try:
        if traced:
            atomic_write_text(log_path, traced)
        elif log_path.exists():
            log_path.unlink()   # tracebacks of an earlier run: no longer true
    except (DataError, OSError) as e:
        problems.append(str(e))
    try:
        write_jsonl(out / "errors.jsonl", rows)
    except DataError as e:
        problems.append(str(e))
    if rows:
        shown = "; ".join(e["error"] for e in rows[:3])
        where = f"; tracebacks of unexpected errors in {log_path}" if traced else ""
        print(f"vavl extract: {len(rows)} clips failed and were skipped (reasons in {out}/errors.jsonl{where}): {shown}",
              file=log)
    return {"failed": len(rows)}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))

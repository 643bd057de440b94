"""The README's quick start and CI stay the same commands."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_is_two_commands_and_ci_runs_the_test_one():
    install_and_demo, install_and_test = quick_start_commands()
    assert "vavl demo" in install_and_demo and "pytest" in install_and_test
    # CI runs the same commands in the same order (it may print versions between them)
    ci = [part for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")
          for part in line.split(" && ")]
    readme = install_and_test.split(" && ")
    positions = [ci.index(part) if part in ci else -1 for part in readme]
    assert -1 not in positions and positions == sorted(positions), (readme, ci)

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


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.+?)\n```", path.read_text(), flags=re.S)


def test_readme_python_snippets_run_when_pasted(tmp_path, monkeypatch):
    """Every ```python block of README.md, run as pasted, in a folder where the quick start ran
    (`vavl demo --out demo-out`): the demo's corpus clip and trained model folder are there. The
    model is a small stand-in trained by the recipe on the same layout (the demo itself is
    tests/test_packaging.py, from the installed wheel); the snippet's names must all be its own."""
    import shutil
    import subprocess
    import sys

    import yaml

    from vavl.data.extract import extract
    from vavl.data.prepare import prepare
    from vavl.data.synthetic import make_corpus

    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "README.md has no python snippet"
    demo = tmp_path / "demo-out"
    make_corpus("crema-d", demo / "corpus", n_speakers=5, clips_per_class=1, duration=0.8, size=(128, 96), fps=10.0)
    prepare("crema-d", demo / "corpus", demo / "manifest.jsonl", label="intended")
    extract(demo / "manifest.jsonl", demo / "features", audio_encoder="mfcc", visual_encoder="face-rgb", fps=5.0,
            max_side=160, progress=False)
    config = {"output_dir": str(demo / "finetune"),
              "model": {"name": "auxformer_w2v2l_effb2.crema_d", "config": {"hidden_size": 16, "num_layers": 1, "num_heads": 2}},
              "data": {"manifest": str(demo / "manifest.jsonl"), "cache": str(demo / "features"),
                       "protocol": "speaker-5fold", "fold": 0},
              "train": {"epochs": 1, "batch_size": 8}, "log": {"wandb": False, "progress": False},
              "evaluate": {"conditions": ["av"], "bootstrap": 0}}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(config))
    r = subprocess.run([sys.executable, "-m", "vavl.cli", "run", "finetune", "--config", str(tmp_path / "ft.yaml")],
                       capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    shutil.copytree(demo / "finetune", demo / "model", ignore=shutil.ignore_patterns("checkpoints"))
    for i, code in enumerate(blocks):
        script = tmp_path / f"readme_{i}.py"
        script.write_text(code)
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0, f"README python block {i} fails when pasted:\n{code}\n{r.stderr[-2000:]}"

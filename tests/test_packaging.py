"""What the wheel holds: every package folder of vavl/, the recipes as vavl.recipes with their
configs, and enough to run `vavl demo` from an install outside the repository."""
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vavl").rglob("*.py") if "__pycache__" not in p.parts}
    assert folders <= listed, f"add {sorted(folders - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "vavl.recipes" in listed and (ROOT / "recipes" / "__init__.py").is_file()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (the checkout itself is left alone)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so")   # the kernel is built afresh
    for name in ("vavl", "recipes"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
                        str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return next((tmp / "dist").glob("vavl-*.whl"))


def test_wheel_ships_the_recipes_and_their_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"vavl/recipes/__init__.py", "vavl/recipes/finetune.py", "vavl/recipes/finetune_config.py", "vavl/recipes/finetune_model.py",
            "vavl/recipes/configs/crema_d/auxformer.yaml", "vavl/data/partitions/CREMA-D/label_consensus_6class_M_1.csv"} <= names
    assert any(n.startswith("vavl/native/_attention") and n.endswith(".so") for n in names)   # built at install
    assert not any(n.endswith((".c", ".h")) for n in names)
    configs = {p.relative_to(ROOT / "recipes").as_posix() for p in (ROOT / "recipes" / "configs").glob("*/*.yaml")}
    assert {f"vavl/recipes/{c}" for c in configs} <= names


@pytest.mark.slow
def test_vavl_demo_runs_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where = ("import sys, vavl, vavl.recipes.finetune as recipe; print('FROM', vavl.__file__, recipe.__file__); "
             "from vavl.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", where, "demo", "--out", str(cwd / "demo"), "--size", "small", "--no-progress"],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    _, package, recipe = next(line for line in r.stdout.splitlines() if line.startswith("FROM ")).split()
    assert Path(package).is_relative_to(site) and Path(recipe).is_relative_to(site), (package, recipe)
    summary = json.loads((cwd / "demo" / "summary.json").read_text())
    assert summary["UA"]["av"] > summary["chance_UA"] + 0.2 and "predict" in r.stdout
    assert (cwd / "demo" / "finetune" / "results.json").is_file()

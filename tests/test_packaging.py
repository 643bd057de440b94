"""What the wheel holds (the package, the recipes and their configs as data, never a kernel it was not
asked for), that `vavl run` and `vavl demo` work from an install outside the repository (the demo's
end-to-end test: the files it promises, a model that beats chance), and that installing vavl leaves a
user's own supported torch alone."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# one worker runs the whole module, so the wheel is built once (not once on each worker)
pytestmark = pytest.mark.xdist_group("packaging")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (the checkout itself is left alone)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so")
    for name in ("vavl", "recipes"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
                        str(src)], capture_output=True, text=True, timeout=600, env={**os.environ, "VAVL_BUILD_KERNEL": "0"})
    assert r.returncode == 0, r.stderr[-3000:]
    return next((tmp / "dist").glob("vavl-*.whl"))


def test_wheel_ships_the_recipes_as_data_not_as_a_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"vavl/_recipes/finetune.py", "vavl/_recipes/finetune_config.py", "vavl/_recipes/finetune_model.py",
            "vavl/_recipes/finetune_outputs.py", "vavl/_recipes/finetune_steps.py", "vavl/_recipes/README.md",
            "vavl/_recipes/configs/crema_d/auxformer.yaml",
            "vavl/data/partitions/CREMA-D/label_consensus_6class_M_1.csv"} <= names
    configs = {p.relative_to(ROOT / "recipes").as_posix() for p in (ROOT / "recipes" / "configs").glob("*/*.yaml")}
    assert {f"vavl/_recipes/{c}" for c in configs} <= names
    assert not any(n.startswith(("vavl/recipes/", "recipes/")) for n in names)
    assert "vavl/_recipes/__init__.py" not in names   # files run by path, not a package
    packages = {str(Path(n).parent).replace("/", ".") for n in names if n.endswith("__init__.py")}
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vavl").rglob("__init__.py")}
    assert folders == packages, f"package folders missing from the wheel: {sorted(folders - packages)}"
    assert not any("_attention" in n for n in names)   # the kernel is built only when asked for
    assert not any(n.endswith((".c", ".h")) for n in names)


@pytest.mark.slow
def test_vavl_run_and_vavl_demo_work_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1"}

    def vavl(*args):
        code = "import sys, vavl; print('FROM', vavl.__file__); from vavl.cli import main; sys.exit(main(sys.argv[1:]))"
        done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        package = next(line for line in done.stdout.splitlines() if line.startswith("FROM ")).split()[1]
        assert Path(package).is_relative_to(site), package
        return done

    listed = vavl("run", "--list").stdout
    assert f"recipes ({site / 'vavl' / '_recipes'})" in listed and "finetune" in listed and "crema_d/auxformer.yaml" in listed
    demo = vavl("demo", "--out", str(cwd / "demo"), "--size", "small", "--no-progress")   # runs the recipe by path
    check_demo(cwd / "demo", demo.stdout, demo.stderr)
    again = cwd / "again"
    vavl("run", "finetune", "--config", str(cwd / "demo" / "finetune.yaml"), f"output_dir={again}", "train.epochs=1",
         "log.progress=false")
    assert (again / "results.json").is_file() and (again / "model.safetensors").is_file()


def check_demo(out: Path, stdout: str, stderr: str) -> None:
    """`vavl demo --size small`: the files it promises, a model clearly above chance, outputs that say synthetic."""
    assert "condition" in stdout and "predict" in stdout
    assert "Loading weights" not in stderr and "Writing model shards" not in stderr, stderr[-3000:]   # no library bars
    assert sum(1 for _ in open(out / "manifest.jsonl")) == 60
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert set(metrics["conditions"]) == {"av", "audio", "video"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["UA"]["av"] > summary["chance_UA"] + 0.2            # learnable data: clearly above 1/6
    for png in ("robustness.png", "confusion_av.png"):
        assert Image.open(out / "report" / png).size[0] > 100
    import vavl  # noqa: F401
    from transformers import AutoModel

    model = AutoModel.from_pretrained(out / "model")
    assert model.label_names == metrics["labels"]
    assert summary["prediction"]["predicted"] in metrics["labels"]
    # what the demo's outputs claim: synthetic data, named as such; no corpus, no corpus license
    card = (out / "model" / "README.md").read_text()
    header, body = card.split("\n---\n", 1)
    assert "datasets:" not in header and "odbl" not in header and "synthetic-data" in header
    assert "CREMA-D test" not in card and "synthetic clips" in body
    title = next(line for line in body.splitlines() if line.startswith("# "))
    assert "mfcc + face-rgb" in title and "synthetic" in title and "auxformer_w2v2l_effb2.crema_d" not in title
    assert "**synthetic clips**" in (out / "report" / "report.md").read_text()
    assert model.config.fusion["provenance"]["synthetic"] is True
    assert model.config.audio_encoder["identity"]["name"] == "mfcc"   # the demo's model is the recipe's folder, as it is


@pytest.mark.slow
def test_installing_vavl_keeps_the_users_own_supported_torch(tmp_path):
    """A venv that already holds torch 2.13 (in vavl's range, not the tested lock's 2.14.1): pip
    installs vavl and its other dependencies around it and leaves torch and torchvision as they were."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # --no-compile: pip does not byte-compile every file of torch and the rest, which says nothing about what it
    # installs; the modules `vavl env` imports are compiled as they are imported
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    theirs = ["torch==2.13.0", "torchvision==0.28.0"]
    r = subprocess.run([*pip, *theirs], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]

    def versions():
        code = "from importlib.metadata import version as v; print(v('torch'), v('torchvision'))"
        return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True).stdout.split()

    before = versions()
    assert before[0].startswith("2.13.0") and before[1].startswith("0.28.0"), before
    r = subprocess.run([*pip, str(ROOT)], capture_output=True, text=True, timeout=1200,
                       env={**os.environ, "VAVL_BUILD_KERNEL": "0"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert versions() == before, f"pip replaced the user's torch: {before} -> {versions()}"
    env = subprocess.run([str(venv / "bin" / "vavl"), "env", "--json"], capture_output=True, text=True, timeout=300)
    assert json.loads(env.stdout)["packages"]["torch"].startswith("2.13.0"), env.stdout[-2000:]

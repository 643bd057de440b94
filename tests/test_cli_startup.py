"""`import vavl` and `vavl --help` stay light (no torch), yet `AutoModel` finds vavl's classes
after `import vavl`, whatever is imported first; `vavl env` reports the installed stack."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import vavl
from vavl.cli.env import PACKAGES, version


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_vavl_and_help_do_not_import_torch():
    out = python("import sys, vavl, vavl.cli\n"
                 "rc = vavl.cli.main([])\n"
                 "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules)")
    assert out.splitlines()[-1] == "0 False False"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("auto") / "model"
    vavl.create_model("auxformer", num_labels=3, audio_dim=8, visual_dim=6, hidden_size=8, num_heads=2,
                      num_layers=1).save_pretrained(path)
    return path


@pytest.mark.parametrize("first", [
    "import vavl\nfrom transformers import AutoModel",              # the documented order
    "from transformers import AutoModel\nimport vavl",              # transformers already there
    "import vavl.models.outputs\nfrom transformers import AutoModel",       # a vavl module imported transformers first
    "import vavl\nimport transformers\nAutoModel = transformers.AutoModel",
])
def test_auto_model_finds_vavl_classes_after_import_vavl(saved_model, first):
    out = python(f"{first}\nprint(type(AutoModel.from_pretrained({str(saved_model)!r})).__name__)")
    assert out.splitlines()[-1] == "AuxFormerForEmotionRecognition"


def test_vavl_env_reports_the_installed_versions():
    done = subprocess.run([sys.executable, "-m", "vavl.cli", "env", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["packages"] == {name: version(name) for name in PACKAGES}
    assert info["python"] == sys.version.split()[0]
    assert info["torch"]["devices"][0].startswith("cpu")
    assert set(info["cpu_attention_kernel"]) == {"available", "reason", "auto_attention"}
    assert "huggingface_hub" in info["caches"]
    table = subprocess.run([sys.executable, "-m", "vavl.cli", "env"], capture_output=True, text=True, timeout=120).stdout
    assert "torchvision" in table and version("torchvision") in table and "FFmpeg" in table
    assert "torchaudio" not in info["packages"]  # vavl does not use it

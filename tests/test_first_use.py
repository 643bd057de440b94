"""First use, as a user meets it: for every encoder preset family a tiny full model is saved, and
`vavl predict` runs on a clip in a process where nothing the model needs was imported before
(tests/first_use.py forks one child per model), so import order can no longer hide a failure such
as a lazily imported module's constant created on the meta device while transformers builds a model
(AudioVisualModel.from_pretrained imports what its encoders need first: vavl.encoders.build.import_for_spec)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vavl
from media_utils import write_face_clip
from tiny_encoders import tiny_ast_dir, tiny_audeering_dir, tiny_speech_dir, tiny_videomae_dir, tiny_whisper_dir
from vavl.encoders.build import build_encoder
from vavl.models.with_encoders import AudioVisualModel

LABELS = {0: "angry", 1: "happy", 2: "neutral"}
HERE = Path(__file__).parent
# one worker runs the whole module, so the models are saved and the fresh processes run once (not on each worker)
pytestmark = pytest.mark.xdist_group("first_use")


def _families(root: Path) -> dict:
    """family -> (audio encoder, visual encoder); the other side is a cheap hand-crafted one."""
    mfcc, grey = (lambda: build_encoder("mfcc", n_mfcc=8, n_mels=16)), (lambda: build_encoder("face-grey", image_size=8))
    return {
        "wav2vec2": (lambda: build_encoder(tiny_speech_dir(root / "w2v2", "wav2vec2")), grey),
        "hubert": (lambda: build_encoder(tiny_speech_dir(root / "hubert", "hubert")), grey),
        "wavlm": (lambda: build_encoder(tiny_speech_dir(root / "wavlm", "wavlm")), grey),
        "whisper": (lambda: build_encoder(tiny_whisper_dir(root / "whisper")), grey),
        "ast": (lambda: build_encoder(tiny_ast_dir(root / "ast")), grey),
        "audeering": (lambda: build_encoder("audeering-dim", pretrained=True, source=tiny_audeering_dir(root / "aud")[0]), grey),
        "timm": (mfcc, lambda: build_encoder("test_efficientnet", pretrained=False)),
        "videomae": (mfcc, lambda: build_encoder(tiny_videomae_dir(root / "videomae"))),
        "classic": (mfcc, grey),
    }


@pytest.fixture(scope="module")
def first_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("first_use")
    clip = write_face_clip(root / "clip.mp4", seconds=1.0)
    runs = []
    for family, (audio, visual) in _families(root).items():
        torch.manual_seed(0)
        a, v = audio(), visual()
        fusion = vavl.create_model("auxformer", id2label=LABELS, hidden_size=16, num_heads=2, num_layers=1,
                                   audio_dim=a.output_dim, visual_dim=v.output_dim)
        AudioVisualModel.from_parts(fusion, a, v, processor={"face_size": 32}).save_pretrained(root / family)
        runs.append({"family": family, "model": str(root / family), "clip": str(clip)})
    (root / "runs.json").write_text(json.dumps(runs))
    done = subprocess.run([sys.executable, str(HERE / "first_use.py"), str(root / "runs.json")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {r["family"]: r for r in map(json.loads, done.stdout.splitlines())}


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm", "whisper", "ast", "audeering", "timm", "videomae",
                                    "classic"])
def test_vavl_predict_works_on_first_use_in_a_fresh_process(first_runs, family):
    run = first_runs[family]
    assert run["rc"] == 0, run["stderr"]
    # loading imports what the model needs before transformers builds it on the meta device
    assert run["meta_tensors"] == [] and run["imported_under_meta"] == [], run["imported_under_meta"]
    result = json.loads(run["stdout"].splitlines()[-1])
    assert result["modalities"] == ["audio", "visual"] and result["label"] in LABELS.values(), result
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-4)


def test_no_vavl_module_leaves_a_tensor_on_the_meta_device(first_runs):
    run = first_runs["meta"]
    assert run["rc"] == 0, run["stderr"]
    assert json.loads(run["stdout"].splitlines()[-1]) == []

"""recipes/finetune.py on inputs that do not fit: one line naming the key or folder, exit 2, no
traceback; and a checkpoint folder is read as data only (the trainer state is JSON, never a pickle)."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from test_finetune import ROOT, make_corpus, tiny_overrides

CONFIG = ROOT / "recipes/configs/crema_d/auxformer.yaml"
# one worker runs the module: the run both resume tests start from is made once
pytestmark = pytest.mark.xdist_group("finetune_inputs")


def recipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "finetune.py"), "--config", str(CONFIG), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    err = done.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err


def test_model_width_other_than_the_cache_and_encoders_with_a_cache(tmp_path):
    corpus = make_corpus(tmp_path / "c")
    base = tiny_overrides(CONFIG, corpus, tmp_path / "run") + ["train.max_steps=1"]
    one_line_error(recipe(*base, "model.config.audio_dim=512"), "audio features are 8-d", "audio_dim is 512")
    one_line_error(recipe(*base, "model.audio_encoder=wav2vec2-base"), "model.audio_encoder", "data.cache: null")


@pytest.fixture(scope="module")
def stopped_at_step_2(tmp_path_factory):
    """A tiny run stopped after 2 steps, made once for the two tests below (the first only fails to resume it;
    the second, last, goes on from it): (corpus, run folder, its overrides)."""
    root = tmp_path_factory.mktemp("stopped")
    corpus, run = make_corpus(root / "c"), root / "run"
    base = tiny_overrides(CONFIG, corpus, run)
    assert recipe(*base, "train.stop_after_steps=2").returncode == 0
    return corpus, run, base


def test_resume_after_the_cache_changed_width_is_one_line(stopped_at_step_2, tmp_path):
    corpus, run, base = stopped_at_step_2
    state = (run / "checkpoints" / "step_2" / "trainer_state.json").read_text()
    wider = make_corpus(tmp_path / "wide", width=12)     # same clips, 12-d audio features
    again = [o.replace(str(corpus / "cache"), str(wider / "cache")) for o in base]
    one_line_error(recipe(*again, "--resume"), "does not fit the run as configured now", "step_2")
    assert (run / "checkpoints" / "step_2" / "trainer_state.json").read_text() == state   # the refused resume left it as it was


def test_resume_never_unpickles_the_checkpoint_folder(stopped_at_step_2, tmp_path):
    _, run, base = stopped_at_step_2
    checkpoint = run / "checkpoints" / "step_2"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 2 and not list(checkpoint.glob("custom_checkpoint_*"))
    done = recipe(*base, "train.max_steps=3", "--resume")          # the JSON state is what resumes
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stdout + done.stderr and "step 2" in done.stdout + done.stderr
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload()))   # a planted pickle
    one_line_error(recipe(*base, "--resume=" + str(checkpoint)), "does not fit", "step_2")
    assert not marker.exists()                                    # refused, and nothing in it was executed
    (checkpoint / "custom_checkpoint_0.pkl").unlink()
    (checkpoint / "trainer_state.json").write_text("{not json")
    one_line_error(recipe(*base, "--resume=" + str(checkpoint)), "trainer_state.json")

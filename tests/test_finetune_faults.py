"""recipes/finetune.py under faults: a loss that becomes NaN stops the run in one line and nothing
is saved from its weights; a checkpoint cut short (a kill inside save_state, a full disk) is never
taken by --resume; a checkpoint or an output folder that cannot be written is one line."""
import errno
import json
from pathlib import Path

import pytest
import torch

from test_finetune import ROOT, finetune, make_corpus, tiny_overrides

CONFIG = ROOT / "recipes/configs/crema_d/auxformer.yaml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("faults"), n=24)


def run_cli(corpus, out, *extra):
    """The recipe's command line: (exit code)."""
    over = tiny_overrides(CONFIG, corpus, out)
    return finetune.cli(["--config", str(CONFIG), *over, *extra])


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_loss_that_becomes_nan_stops_the_run_and_nothing_is_saved_from_it(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    code = run_cli(corpus, out, "train.lr=1e30", "train.warmup_ratio=0", "train.epochs=3", "train.checkpoint_every=1")
    assert code == 2
    line = one_line(capsys)
    assert "train_loss = nan" in line and "(step " in line and "batch clips: c0" in line and "nothing was saved" in line
    step = int(line.split("(step ")[1].split(")")[0])
    assert step > 1                                                    # a few finite steps came first
    assert not (out / "model.safetensors").exists() and not (out / "results.json").exists()
    assert not (out / "README.md").exists()
    for ckpt in (out / "checkpoints").glob("step_*"):                  # only checkpoints from before, all finite
        from safetensors.torch import load_file

        assert int(ckpt.name[5:]) < step
        assert all(torch.isfinite(v).all() for v in load_file(str(ckpt / "model.safetensors")).values())


def test_resume_skips_a_checkpoint_cut_short_and_says_so(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train.epochs=2", "train.checkpoint_every=1", "train.checkpoints_to_keep=10", "evaluate.test=false"]
    assert run_cli(corpus, out, *common, "train.stop_after_steps=2") == 0
    # what a kill inside accelerator.save_state left before checkpoints were renamed into place
    cut = out / "checkpoints" / "step_3"
    cut.mkdir()
    (cut / "model.safetensors").write_bytes(b"\x00" * 10)
    capsys.readouterr()
    assert run_cli(corpus, out, *common, "resume=latest") == 0
    said = capsys.readouterr().out
    assert f"resume: skipping {cut} (incomplete: no trainer_state.json" in said
    assert f"resumed from {out / 'checkpoints' / 'step_2'}" in said
    state = json.loads((cut / "trainer_state.json").read_text())       # written again, whole, by the resumed run
    assert state["step"] == 3 and (out / "checkpoints" / "step_4").is_dir() and (out / "model.safetensors").is_file()


@pytest.mark.parametrize("fault", ["ENOSPC", "kill"])
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_step_folder(corpus, tmp_path, capsys,
                                                                                    monkeypatch, fault):
    from accelerate import Accelerator

    out = tmp_path / "run"
    real = Accelerator.save_state

    def save_state(self, output_dir=None, **kw):
        if Path(output_dir).name.startswith(".step_2"):
            real(self, output_dir, **kw)
            (Path(output_dir) / "model.safetensors").write_bytes(b"cut")   # half written
            if fault == "kill":
                raise KeyboardInterrupt
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, output_dir, **kw)

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    args = ["train.epochs=2", "train.checkpoint_every=1", "evaluate.test=false"]
    if fault == "kill":
        with pytest.raises(KeyboardInterrupt):
            run_cli(corpus, out, *args)
    else:
        assert run_cli(corpus, out, *args) == 2
        line = one_line(capsys)
        assert f"{out / 'checkpoints' / 'step_2'}: could not write (No space left on device); the disk is full" in line
        assert "resume with --resume" in line
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) in (["step_1"], [".step_2.partial", "step_1"])
    monkeypatch.setattr(Accelerator, "save_state", real)
    capsys.readouterr()
    assert run_cli(corpus, out, *args, "resume=latest") == 0
    assert f"resumed from {out / 'checkpoints' / 'step_1'}" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_output_dir_that_cannot_be_written_is_one_line_before_the_model_is_built(corpus, tmp_path, capsys,
                                                                                     monkeypatch, where):
    import finetune_model

    (tmp_path / "taken").write_text("x")
    out = tmp_path / "taken" if where == "a file" else tmp_path / "taken" / "run"

    def no_build(*a, **k):
        raise AssertionError("the model was built")

    monkeypatch.setattr(finetune, "build_model", no_build)
    assert finetune_model   # the recipe's modules are importable from the tests (sys.path set by the recipe)
    assert run_cli(corpus, out) == 2
    assert f"{out}: the output_dir" in one_line(capsys)


def test_resuming_never_writes_a_log_row_twice(corpus, tmp_path, capsys):
    """A run resumed from an earlier checkpoint drops the rows written after it, writes them again,
    and ends with the log of an uninterrupted run."""
    out = tmp_path / "run"
    common = ["train.epochs=2", "train.checkpoint_every=1", "train.checkpoints_to_keep=10", "log.every=1",
              "evaluate.test=false"]
    assert run_cli(corpus, out, *common) == 0
    def rows():
        return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in (out / "log.jsonl").read_text().splitlines()]

    whole = rows()
    assert len(whole) == 6                              # 4 steps + 2 dev evaluations
    capsys.readouterr()
    assert run_cli(corpus, out, *common, f"resume={out / 'checkpoints' / 'step_2'}") == 0
    assert "(4 rows of log.jsonl written after this checkpoint were dropped)" in capsys.readouterr().out
    assert rows() == whole


def test_an_unreadable_rng_state_is_a_warning(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train.epochs=2", "train.checkpoint_every=1", "evaluate.test=false"]
    assert run_cli(corpus, out, *common, "train.stop_after_steps=2") == 0
    (out / "checkpoints" / "step_2" / "random_states_0.pkl").write_bytes(b"damaged")
    capsys.readouterr()
    assert run_cli(corpus, out, *common, "resume=latest") == 0
    said = capsys.readouterr().out
    assert f"warning: {out / 'checkpoints' / 'step_2'}: random_states_0.pkl could not be read" in said


BAD_CONFIGS = {
    "train.epochs=${oc.env:HOME}": "train.epochs: While dereferencing interpolation",
    "train.epochs=${oc.env:VAVL_SURELY_UNSET}": "Environment variable 'VAVL_SURELY_UNSET' not found",
    "output_dir=${missing.key}": "output_dir: Interpolation key 'missing.key' not found",
    "log.every=0": "log.every=0 must be a positive integer",
    "train.lr=-1": "train.lr=-1.0 must be a positive learning rate",
    "train.warmup_ratio=5": "train.warmup_ratio=5.0 must be a fraction",
    "train.max_grad_norm=-1": "train.max_grad_norm=-1.0 must be 0 (no clipping) or a positive norm",
    "train.checkpoints_to_keep=-1": "train.checkpoints_to_keep=-1 must be a positive integer",
    "evaluate.bootstrap=-1": "evaluate.bootstrap=-1 must be 0",
    "data.labels=[]": "data.labels=[] names no class",
}


@pytest.mark.parametrize("override", list(BAD_CONFIGS))
def test_a_bad_config_value_is_one_line(corpus, tmp_path, capsys, override):
    assert run_cli(corpus, tmp_path / "run", override) == 2
    line = one_line(capsys)
    assert line.startswith("finetune.py: error: ") and BAD_CONFIGS[override] in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", [b"- a\n- b\n", bytes(range(128, 256)) * 2])
def test_a_config_file_that_is_not_a_mapping_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert finetune.cli(["--config", str(path), "data.manifest=x"]) == 2
    line = one_line(capsys)
    assert f"{path}: " in line and ("top level must be a mapping" in line or "not a text (UTF-8) YAML file" in line)

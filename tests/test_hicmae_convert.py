"""`vavl convert hicmae`: the released checkpoint format (args as an argparse.Namespace) read
weights-only, anything else refused in one line, the classes named, a full model folder written."""
from __future__ import annotations

import argparse
import fractions
from pathlib import Path

import pytest
import torch

from vavl.cli import main as cli
from vavl.convert.hicmae import read_checkpoint
from vavl.models.loading import load_model

FIXTURE = Path(__file__).parent / "fixtures" / "reference-parity" / "hicmae" / "checkpoint-best.pth"


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """The fixture checkpoint as the official save_model writes it: args an argparse.Namespace."""
    ckpt = torch.load(FIXTURE, weights_only=True)
    ckpt["args"] = argparse.Namespace(**ckpt["args"])
    path = tmp_path_factory.mktemp("hicmae") / "checkpoint-best.pth"
    torch.save(ckpt, path)
    return path


def test_namespace_args_are_read_and_nothing_else_is(official, tmp_path, capsys):
    ckpt = read_checkpoint(official)
    assert ckpt["args"]["input_size"] == 48 and ckpt["args"]["num_frames"] == 8
    with pytest.raises(Exception, match="Unsupported global"):   # plain weights-only loading refuses the Namespace
        torch.load(official, weights_only=True)
    bad = torch.load(FIXTURE, weights_only=True)
    bad["args"] = fractions.Fraction(1, 3)
    torch.save(bad, tmp_path / "bad.pth")
    assert cli(["convert", "hicmae", str(tmp_path / "bad.pth"), "--corpus", "crema-d", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused: it holds fractions.Fraction" in err
    assert not (tmp_path / "x").exists()


def test_convert_writes_a_full_model_folder(official, tmp_path, capsys):
    out = tmp_path / "fold1"
    assert cli(["convert", "hicmae", str(official), "--corpus", "crema-d", "--fold", "1", "--num-heads", "4",
                "--out", str(out)]) == 0
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {p.name for p in out.iterdir()}
    model = load_model(out)
    assert model.label_names == ["angry", "disgust", "fear", "happy", "neutral", "sad"]
    c = model.config
    assert (c.image_size, c.num_frames, c.hidden_size, c.num_hidden_layers, c.fusion_num_hidden_layers) == (48, 8, 64, 2, 2)
    assert (model.processor.num_frames, model.processor.frame_step, model.processor.num_segments) == (8, 4, 2)
    card = (out / "README.md").read_text()
    for text in ("Fold: 1 of 5", "hicmae-1", "UAR 86.66, WAR 86.67", "UAR 84.94, WAR 84.91", "license: mit", "ODbL",
                 "intended emotion"):
        assert text in card, text


def test_convert_says_what_is_missing(official, tmp_path, capsys):
    assert cli(["convert", "hicmae", str(official), "--out", str(tmp_path / "x")]) == 2
    assert "--corpus {crema-d,mafw}" in capsys.readouterr().err
    assert cli(["convert", "hicmae", str(official), "--labels", "a,b", "--out", str(tmp_path / "x")]) == 2
    assert "6 outputs but 2 class names" in capsys.readouterr().err
    assert cli(["convert", "hicmae", str(tmp_path / "none.pth"), "--corpus", "mafw", "--out", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err
    state = torch.load(FIXTURE, weights_only=True)
    del state["model"]["head.weight"]
    torch.save(state, tmp_path / "pretrain.pth")
    assert cli(["convert", "hicmae", str(tmp_path / "pretrain.pth"), "--labels", "a", "--out", str(tmp_path / "x")]) == 2
    assert "not a HiCMAE audio-visual classifier" in capsys.readouterr().err

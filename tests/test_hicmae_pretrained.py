"""`vavl convert hicmae` on HiCMAE's VoxCeleb2 pre-trained checkpoint: a tiny synthetic file in the
official pre-training layout (modeling_pretrain_av.py PretrainAudioVisionTransformer: encoder,
encoder_audio, encoder_fusion, the MAE decoders, encoder_to_decoder*, mask_token*; no head; args an
argparse.Namespace of run_mae_pretraining_av.py) -> a HiCMAE folder whose encoders and fusion carry
the pre-trained weights and whose head is new and untrained, as its card says."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from vavl.cli import main as cli
from vavl.convert.hicmae import rename
from vavl.models.loading import load_model

FIXTURE = Path(__file__).parent / "fixtures" / "reference-parity" / "hicmae" / "checkpoint-best.pth"
FINETUNING_ONLY = ("video_layer_weights", "audio_layer_weights", "fc_norm.", "head.")


def decoder(prefix: str, dim: int, out: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """One MAE decoder in the official names (block 0 a plain Block, then norm and head)."""
    shapes = {"blocks.0.norm1.weight": (dim,), "blocks.0.norm1.bias": (dim,), "blocks.0.attn.qkv.weight": (3 * dim, dim),
              "blocks.0.attn.q_bias": (dim,), "blocks.0.attn.v_bias": (dim,), "blocks.0.attn.proj.weight": (dim, dim),
              "blocks.0.attn.proj.bias": (dim,), "blocks.0.norm2.weight": (dim,), "blocks.0.norm2.bias": (dim,),
              "blocks.0.mlp.fc1.weight": (4 * dim, dim), "blocks.0.mlp.fc1.bias": (4 * dim,),
              "blocks.0.mlp.fc2.weight": (dim, 4 * dim), "blocks.0.mlp.fc2.bias": (dim,), "norm.weight": (dim,),
              "norm.bias": (dim,), "head.weight": (out, dim), "head.bias": (out,)}
    return {f"{prefix}.{k}": torch.randn(*s, generator=g) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The fixture's encoders and fusion (randomised afresh) in the pre-training layout."""
    official = torch.load(FIXTURE, weights_only=True)
    g = torch.Generator().manual_seed(1)
    state = {k: torch.randn(v.shape, generator=g) for k, v in official["model"].items() if not k.startswith(FINETUNING_ONLY)}
    width, dec = official["model"]["encoder.norm.weight"].shape[0], 32
    state |= decoder("decoder", dec, 3 * 2 * 16 * 16, g) | decoder("decoder_audio", dec, 16 * 16, g)
    state |= {"encoder_to_decoder.weight": torch.randn(dec, width, generator=g),
              "encoder_to_decoder_audio.weight": torch.randn(dec, width, generator=g),
              "mask_token": torch.zeros(1, 1, dec), "mask_token_audio": torch.zeros(1, 1, dec)}
    a = official["args"]
    args = argparse.Namespace(model="pretrain_hicmae_dim512_patch16_160_a256", drop_path=0.0, mask_ratio=0.9,
                              **{k: a[k] for k in ("input_size", "num_frames", "sampling_rate", "input_size_audio", "num_mel_bins")})
    path = tmp_path_factory.mktemp("hicmae-pretrain") / "checkpoint-99.pth"
    torch.save({"model": state, "optimizer": {}, "epoch": 99, "scaler": {}, "args": args}, path)
    return path, state


def test_pretrained_checkpoint_converts_into_encoders_with_an_untrained_head(pretrained, tmp_path, capsys):
    path, state = pretrained
    out = tmp_path / "hicmae-voxceleb2"
    assert cli(["convert", "hicmae", str(path), "--corpus", "crema-d", "--num-heads", "4", "--out", str(out)]) == 0
    assert "the head is untrained" in capsys.readouterr().out
    model = load_model(out)
    own = model.state_dict()
    carried = {rename(k): v for k, v in state.items() if rename(k) is not None}
    assert len(carried) == len([k for k in own if not k.startswith(("fc_norm.", "classifier.")) and "layer_weights" not in k])
    assert all(torch.equal(own[k], v) for k, v in carried.items())            # every encoder / fusion weight, as saved
    assert not any(k.startswith(("decoder", "mask_token", "encoder_to_decoder")) for k in own)
    # the new head as the official fine-tuning starts it: trunc_normal(0.02) x 0.001, uniform layer weights
    w = own["classifier.weight"]
    assert w.shape[0] == 6 and 0.5 * 0.02 * 0.001 < w.std() < 2 * 0.02 * 0.001 and not own["classifier.bias"].any()
    n = model.config.num_hidden_layers
    assert torch.allclose(own["visual_encoder.layer_weights"], torch.full((n,), 1.0 / n))
    assert model.config.drop_path_rate == 0.1 and model.label_names[0] == "angry"
    with torch.no_grad():
        logits = model(**model.dummy_inputs).logits
    assert logits.shape[-1] == 6 and torch.isfinite(logits).all()
    card = (out / "README.md").read_text()
    assert "The classifier is untrained" in card and "VoxCeleb2" in card and "UAR" not in card


def test_pretrained_checkpoint_needs_the_classes_of_the_new_head(pretrained, tmp_path, capsys):
    path, _ = pretrained
    assert cli(["convert", "hicmae", str(path), "--num-heads", "4", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pre-trained model has no classifier" in err and "--corpus" in err
    assert cli(["convert", "hicmae", str(path), "--labels", "a,b,c", "--num-heads", "4", "--out", str(tmp_path / "y")]) == 0
    assert load_model(tmp_path / "y").label_names == ["a", "b", "c"]

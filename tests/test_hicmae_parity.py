"""HiCMAE against the official code (tests/fixtures/reference-parity/hicmae/, README there): the
converted fixture checkpoint gives the official logits from the official preprocessed tensors, and
HiCMAEProcessor turns the raw face frames and waveforms into those tensors.

Largest differences measured (CPU, fp32): logits 2.4e-7; position tables 0; pixel values 0
(bitwise); fbank 1.8e-5 in normalised units (1.7e-4 in log-mel) where a mel band's energy is
near the float floor (log-mel < -15, energy < 3e-7), at most 7.4e-6 elsewhere: the rounding of
float32 FFTs on near-silent bands (vavl.media.spectral.kaldi_fbank is tests/test_spectral.py's
torchaudio match); logits from vavl's preprocessing 2.7e-7, merged clip probabilities 4.2e-8."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vavl.convert.hicmae import load_official_hicmae

FIXTURE = Path(__file__).parent / "fixtures" / "reference-parity" / "hicmae"
IO = load_file(str(FIXTURE / "io.safetensors"))
VIEWS = [(i, c) for i in range(3) for c in range(2)]


@pytest.fixture(scope="module")
def model():
    return load_official_hicmae(FIXTURE / "checkpoint-best.pth", corpus="crema-d", num_heads=4)


def official_video(i, c):
    return IO[f"{i}.seg{c}.video"].permute(1, 0, 2, 3)   # official (3, T, S, S) -> pixel_values (T, 3, S, S)


def test_converted_model_gives_the_official_logits_and_features(model):
    video = torch.stack([official_video(i, c) for i, c in VIEWS])
    fbank = torch.stack([IO[f"{i}.seg{c}.fbank"][0] for i, c in VIEWS])
    with torch.no_grad():
        out = model(pixel_values=video, input_features=fbank)
    logits = torch.stack([IO[f"{i}.seg{c}.logits"] for i, c in VIEWS])
    feature = torch.stack([IO[f"{i}.seg{c}.feature"] for i, c in VIEWS])
    assert (out.logits - logits).abs().max() <= 1e-5
    assert (out.fused_embedding - feature).abs().max() <= 1e-5
    assert model.label_names == ["angry", "disgust", "fear", "happy", "neutral", "sad"]   # ANG DIS FEA HAP NEU SAD


def test_position_tables_are_rebuilt(model):
    assert torch.equal(model.visual_encoder.position_embeddings("cpu", torch.float32), IO["pos_embed_video"])
    assert torch.equal(model.audio_encoder.position_embeddings("cpu", torch.float32), IO["pos_embed_audio"])


@pytest.mark.parametrize("clip", range(3))
def test_processor_makes_the_official_tensors_from_raw_inputs(model, clip):
    views = model.processor.views(IO[f"{clip}.frames"].numpy(), IO[f"{clip}.wav"][0].numpy())
    for c in range(2):
        assert views["frame_indices"][c].tolist() == IO[f"{clip}.seg{c}.frame_indices"].tolist()
        assert views["audio_spans"][c].tolist() == IO[f"{clip}.seg{c}.audio_span"].tolist()
        assert torch.equal(views["pixel_values"][c], official_video(clip, c))
        ref = IO[f"{clip}.seg{c}.fbank"][0]
        diff = (views["input_features"][c] - ref).abs()
        floor = ref * (model.processor.norm_std * 2) + model.processor.norm_mean < -15   # near-silent mel bands
        assert diff[~floor].max() <= 1e-5
        assert diff.max() <= 2.5e-5
    with torch.no_grad():
        out = model(pixel_values=views["pixel_values"], input_features=views["input_features"])
    logits = torch.stack([IO[f"{clip}.seg{c}.logits"] for c in range(2)])
    assert (out.logits - logits).abs().max() <= 1e-5
    merged = out.logits.double().softmax(-1).mean(0)   # the 2 official crops of a segment are identical
    assert (merged - IO[f"{clip}.probs_merged"]).abs().max() <= 1e-5


def test_the_random_gain_is_the_only_step_left_out(model):
    """The official roll_mag_aug multiplies the demeaned segment by a Beta(10, 10) + 0.5 draw; the fixture
    recorded it: vavl's fbank of the segment times that draw is the official randomised fbank."""
    p = model.processor
    for c in range(2):
        a, b = IO[f"0.seg{c}.audio_span"].tolist()
        mag = float(IO[f"0.seg{c}.rollmag_mag"])
        seg = IO["0.wav"][0, a:b].numpy()
        got = p.fbank((seg - seg.mean()) * np.float32(mag))
        ref = IO[f"0.seg{c}.fbank_rollmag"][0]
        assert (got - ref).abs().max() <= 2.5e-5
        assert (got - IO[f"0.seg{c}.fbank"][0]).abs().max() > 0.01   # the gain does change the input

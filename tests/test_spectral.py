"""vavl's own fbank, MFCC, deltas and resampling (vavl/media/spectral.py) give what torchaudio gives:
its outputs on fixed inputs are stored in tests/fixtures/spectral/ (made by make_reference.py there)."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vavl.media import spectral as S

REF = load_file(Path(__file__).parent / "fixtures" / "spectral" / "reference.safetensors")
SR, WIN, HOP = 16000, 400, 160


def close(ours, theirs, rtol=1e-5):
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = float(theirs.abs().max())
    diff = float((ours - theirs).abs().max())
    assert diff <= rtol * max(scale, 1.0), f"max difference {diff:.3g} (largest value {scale:.3g})"


@pytest.mark.parametrize("name", ["wave", "short"])
def test_mel_mfcc_and_kaldi_fbank_match_torchaudio(name):
    x = REF[name]
    close(S.mel_spectrogram(x, SR, WIN, HOP, 40), REF[f"{name}.mel40"])
    close(S.mfcc(x, SR, 40, WIN, HOP, 40), REF[f"{name}.mfcc40"])
    # a log of near-silent bands magnifies float32 FFT rounding, which differs with the CPU's vector
    # path: 1.5e-6 of the largest value on the AVX-512 machine that made the fixture, 1.4e-5 on an AVX2 EPYC
    close(S.kaldi_fbank(x, num_mel_bins=128), REF[f"{name}.fbank128"], rtol=5e-5)


def test_deltas_match_torchaudio():
    close(S.deltas(REF["wave.mfcc40"], 5), REF["wave.deltas"])


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_to_16k_matches_torchaudio(rate):
    close(S.resample(REF[f"resample.{rate}.in"], rate, SR), REF[f"resample.{rate}"], rtol=1e-6)
    batch = torch.stack([REF[f"resample.{rate}.in"]] * 2).unsqueeze(0)   # (1, 2, n): leading axes kept
    assert S.resample(batch, rate, SR).shape == (1, 2, REF[f"resample.{rate}"].shape[-1])


def test_nothing_is_left_on_the_meta_device():
    """A model built under `torch.device("meta")` (as transformers builds them) must not make later
    spectral calls produce meta tensors (torchaudio's kaldi module did: issue 24)."""
    with torch.device("meta"):
        S.kaldi_mel_banks(128, 512, 16000.0)
    out = S.kaldi_fbank(REF["short"])
    assert out.device.type == "cpu" and torch.isfinite(out).all()


def test_a_clip_shorter_than_one_window_is_an_error():
    with pytest.raises(ValueError, match="fewer than one 400-sample window"):
        S.kaldi_fbank(torch.zeros(399))

"""Spectral features and resampling in plain torch (no torchaudio: its compiled library loads only
against the torch it was built for). Each function computes what the torchaudio call named in its
docstring computes; tests/test_spectral.py checks them against outputs torchaudio 2.11.1 made
(tests/fixtures/spectral/). Nothing here keeps a tensor at module level, so building a model on
the meta device can never leave one behind.

Axis letters: n samples, t frames, f frequency bins, m mel bands.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# ---- mel banks ---------------------------------------------------------------------------------
def htk_mel_banks(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """(n_fft // 2 + 1, m) triangular filters on the HTK mel scale, unnormalised
    (torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk"))."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    to_mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)   # noqa: E731
    mels = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)
    hz = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    slopes = hz.unsqueeze(0) - freqs.unsqueeze(1)               # (f, m + 2)
    gaps = hz[1:] - hz[:-1]
    down = -slopes[:, :-2] / gaps[:-1]
    up = slopes[:, 2:] / gaps[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: float, low: float = 20.0, high: float = 0.0) -> torch.Tensor:
    """(m, n_fft // 2) Kaldi's triangular banks on mel(f) = 1127 ln(1 + f / 700); the Nyquist bin gets
    no weight; high <= 0 counts down from Nyquist (torchaudio.compliance.kaldi.get_mel_banks)."""
    nyquist = sample_rate / 2
    high = high + nyquist if high <= 0 else high
    to_mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)   # noqa: E731
    lo, delta = to_mel(low), (to_mel(high) - to_mel(low)) / (n_mels + 1)
    band = torch.arange(n_mels, dtype=torch.float32).unsqueeze(1)
    left, centre, right = lo + band * delta, lo + (band + 1.0) * delta, lo + (band + 2.0) * delta
    mel = 1127.0 * (1.0 + (sample_rate / n_fft) * torch.arange(n_fft // 2, dtype=torch.float32) / 700.0).log()
    return torch.clamp(torch.minimum((mel - left) / (centre - left), (right - mel) / (right - centre)), min=0.0)


# ---- spectrograms --------------------------------------------------------------------------------
def power_spectrogram(wave: torch.Tensor, n_fft: int, hop: int, win: int | None = None) -> torch.Tensor:
    """(n,) -> (f, t) |STFT|^2, periodic Hann window, frames centred on multiples of the hop,
    reflect-padded (torchaudio.transforms.Spectrogram(power=2.0, center=True, pad_mode="reflect"))."""
    win = win or n_fft
    window = torch.hann_window(win, periodic=True, dtype=wave.dtype, device=wave.device)
    spec = torch.stft(wave, n_fft, hop_length=hop, win_length=win, window=window, center=True, pad_mode="reflect",
                      normalized=False, onesided=True, return_complex=True)
    return spec.abs().pow(2.0)


def mel_spectrogram(wave: torch.Tensor, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> torch.Tensor:
    """(n,) -> (m, t) mel power (torchaudio.transforms.MelSpectrogram with mel_scale="htk", power 2,
    center=True, reflect padding, win_length = n_fft)."""
    return htk_mel_banks(n_mels, n_fft, sample_rate).T.to(wave.dtype) @ power_spectrogram(wave, n_fft, hop)


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """(m, n_mfcc) orthonormal DCT-II (torchaudio.functional.create_dct(n_mfcc, n_mels, "ortho"))."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64).unsqueeze(1)
    dct = torch.cos(math.pi / n_mels * (n + 0.5) * k)            # (n_mfcc, m)
    dct[0] *= 1.0 / math.sqrt(2.0)
    return (dct * math.sqrt(2.0 / n_mels)).T.float()


def mfcc(wave: torch.Tensor, sample_rate: int, n_mfcc: int, n_fft: int, hop: int, n_mels: int) -> torch.Tensor:
    """(n,) -> (n_mfcc, t): DCT-II of log(mel + 1e-6) (torchaudio.transforms.MFCC(dct_type=2,
    norm="ortho", log_mels=True) with the mel settings of `mel_spectrogram`)."""
    log_mel = torch.log(mel_spectrogram(wave, sample_rate, n_fft, hop, n_mels) + 1e-6)
    return dct_matrix(n_mfcc, n_mels).T.to(log_mel.dtype) @ log_mel


def deltas(x: torch.Tensor, win_length: int = 5) -> torch.Tensor:
    """(..., t) -> (..., t) time derivatives by linear regression over win_length frames, edges
    replicated (torchaudio.functional.compute_deltas)."""
    n = (win_length - 1) // 2
    denominator = n * (n + 1) * (2 * n + 1) / 3
    shape = x.shape
    flat = F.pad(x.reshape(1, -1, shape[-1]), (n, n), mode="replicate")
    kernel = torch.arange(-n, n + 1, dtype=x.dtype, device=x.device).repeat(flat.shape[1], 1, 1)
    return (F.conv1d(flat, kernel, groups=flat.shape[1]) / denominator).reshape(shape)


def kaldi_fbank(wave: torch.Tensor, num_mel_bins: int = 128, sample_rate: int = 16000, frame_length_ms: float = 25.0,
                frame_shift_ms: float = 10.0, preemphasis: float = 0.97, low_freq: float = 20.0,
                high_freq: float = 0.0) -> torch.Tensor:
    """(n,) -> (t, m) log-mel filterbank as Kaldi computes it with a Hanning window, dither 0, DC
    removal, snip_edges, the FFT size rounded up to a power of two, power spectrum, no energy and a
    float-eps floor before the log (torchaudio.compliance.kaldi.fbank(htk_compat=True,
    window_type="hanning", dither=0.0, use_energy=False), what AST and HiCMAE feed their models)."""
    wave = wave.reshape(-1).float()
    win = int(sample_rate * frame_length_ms * 0.001)
    hop = int(sample_rate * frame_shift_ms * 0.001)
    n_fft = 1 << (win - 1).bit_length()
    if wave.numel() < win:
        raise ValueError(f"{wave.numel()} samples are fewer than one {win}-sample window")
    frames = wave.unfold(0, win, hop)                               # (t, win): whole windows only
    frames = frames - frames.mean(dim=1, keepdim=True)
    frames = frames - preemphasis * torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames * torch.hann_window(win, periodic=False, dtype=frames.dtype, device=frames.device)
    power = torch.fft.rfft(frames, n=n_fft).abs().pow(2.0)         # (t, n_fft / 2 + 1)
    banks = kaldi_mel_banks(num_mel_bins, n_fft, float(sample_rate), low_freq, high_freq).to(power)
    return torch.clamp(power[:, : n_fft // 2] @ banks.T, min=torch.finfo(torch.float32).eps).log()


# ---- resampling ----------------------------------------------------------------------------------
def resample(wave: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
             rolloff: float = 0.99) -> torch.Tensor:
    """(..., n) at orig_freq -> (..., ceil(n * new / orig)) at new_freq: band-limited sinc
    interpolation with a Hann window (torchaudio.functional.resample, method "sinc_interp_hann")."""
    if orig_freq == new_freq:
        return wave
    g = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // g, int(new_freq) // g
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    dtype = wave.dtype if wave.is_floating_point() else torch.float32
    idx = torch.arange(-width, width + orig, dtype=dtype, device=wave.device)[None, None] / orig
    t = (torch.arange(0, -new, -1, dtype=dtype, device=wave.device)[:, None, None] / new + idx) * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), t.sin() / t) * window * (base / orig)   # (new, 1, taps)
    shape, length = wave.shape, wave.shape[-1]
    flat = F.pad(wave.reshape(-1, length).to(dtype), (width, width + orig))
    out = F.conv1d(flat[:, None], kernel, stride=orig).transpose(1, 2).reshape(flat.shape[0], -1)
    return out[:, : math.ceil(new * length / orig)].reshape(*shape[:-1], -1)

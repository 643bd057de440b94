"""Hand-crafted encoders, each checked against an independent computation on a known signal:
MFCC / log-mel of a pure tone vs. numpy + scipy, ZCR of a tone = 2 f / sr, energy of a tone =
A² / 2, grey / RGB crops vs. direct pixel arithmetic, frame differences, and the optical flow
of a shifted photograph = the shift."""
import numpy as np
import pytest
import scipy.fft
import torch
from skimage.data import astronaut

from vavl.encoders import list_encoders
from vavl.encoders.base import get_encoder_preset
from vavl.encoders.classic import build_from_config

SR = 16000
WIN, HOP = 400, 160   # 25 ms, 10 ms


def encoder(name, **options):
    return get_encoder_preset(name).build(False, **options)


def tone(freq, seconds=0.5, amp=0.5, phase=0.3):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


# ---- an independent log-mel / MFCC in numpy ------------------------------------------------------
def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def mel_to_hz(m):
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


def np_logmel(x, n_mels=40):
    pad = np.pad(x.astype(np.float64), WIN // 2, mode="reflect")
    n = len(x) // HOP + 1
    frames = np.stack([pad[i * HOP: i * HOP + WIN] for i in range(n)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)        # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2           # (t, 201)
    bins = np.linspace(0, SR / 2, power.shape[1])
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SR / 2), n_mels + 2))
    fb = np.zeros((power.shape[1], n_mels))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising, falling = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
        fb[:, m] = np.maximum(0, np.minimum(rising, falling))
    return np.log(power @ fb + 1e-6)


def np_deltas(c, n=2):
    padded = np.pad(c, ((n, n), (0, 0)), mode="edge")
    num = sum(k * (padded[n + k: n + k + len(c)] - padded[n - k: n - k + len(c)]) for k in range(1, n + 1))
    return num / (2 * sum(k * k for k in range(1, n + 1)))


def run_audio(enc, x):
    feats, mask = enc(torch.from_numpy(x)[None])
    return feats[0].numpy(), mask[0]


# ---- audio ---------------------------------------------------------------------------------------
def test_fbank_of_a_tone_matches_numpy():
    x = tone(1000.0)
    ours, mask = run_audio(encoder("fbank"), x)
    ref = np_logmel(x)
    assert ours.shape == ref.shape == (len(x) // HOP + 1, 40) and bool(mask.all())
    assert np.abs(ours - ref).max() < 1e-3
    assert ref[10].argmax() == ours[10].argmax()   # the band holding 1 kHz is the loudest


def test_mfcc_of_a_tone_matches_numpy_and_scipy_dct():
    x = tone(440.0)
    ref = scipy.fft.dct(np_logmel(x), type=2, norm="ortho", axis=1)[:, :40]
    ours, _ = run_audio(encoder("mfcc"), x)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3
    full, _ = run_audio(encoder("mfcc-deltas"), x)
    assert full.shape[1] == 120 == encoder("mfcc-deltas").output_dim
    assert np.allclose(full[:, :40], ours, atol=1e-4)
    d1 = np_deltas(full[:, :40].astype(np.float64))
    assert np.allclose(full[:, 40:80], d1, atol=1e-3) and np.allclose(full[:, 80:], np_deltas(d1), atol=1e-3)


@pytest.mark.parametrize("freq", [200.0, 440.0, 1500.0])
def test_zcr_of_a_tone_is_twice_its_frequency_over_the_sample_rate(freq):
    amp = 0.3
    feats, _ = run_audio(encoder("zcr-energy"), tone(freq, amp=amp))
    inner = feats[3:-3]  # frames away from the reflect-padded edges
    # a window of 400 samples has 399 neighbour pairs: the count of crossings is within 1 of 399 * 2f/sr
    assert np.abs(inner[:, 0] - 2 * freq / SR).max() <= 1.0 / 399 + 1e-6
    # log mean energy of A sin(.) over ~whole periods: log(A^2 / 2)
    assert np.abs(inner[:, 1] - np.log(amp ** 2 / 2)).max() < 0.1


def test_silence_has_low_energy_and_padding_does_not_change_features():
    enc = encoder("mfcc")
    short, long = tone(300.0, seconds=0.3), tone(700.0, seconds=0.5)
    batch = torch.zeros(2, len(long))
    batch[0, : len(short)], batch[1] = torch.from_numpy(short), torch.from_numpy(long)
    mask = torch.zeros(2, len(long), dtype=torch.bool)
    mask[0, : len(short)], mask[1] = True, True
    feats, fmask = enc(batch, mask)
    alone, _ = enc(torch.from_numpy(short)[None])
    n = len(short) // HOP + 1
    assert fmask.sum(1).tolist() == [n, len(long) // HOP + 1]
    assert torch.allclose(feats[0, :n], alone[0], atol=1e-5) and (feats[0, n:] == 0).all()
    ze, _ = run_audio(encoder("zcr-energy"), np.zeros(1600, dtype=np.float32))
    assert (ze[:, 1] < -20).all()


# ---- faces ---------------------------------------------------------------------------------------
def normalise(images, enc):
    """(b, t, 3, h, w) in [0, 1] -> normalised with the encoder's mean/std (what the processor gives it)."""
    mean, std = torch.tensor(enc.mean).view(1, 1, 3, 1, 1), torch.tensor(enc.std).view(1, 1, 3, 1, 1)
    return (images - mean) / std


def test_grey_and_rgb_crops_are_the_pixels():
    g = torch.Generator().manual_seed(0)
    grey = encoder("face-grey")
    images = torch.rand(1, 2, 3, 48, 48, generator=g)
    feats, _ = grey(normalise(images, grey))
    luma = 0.299 * images[0, :, 0] + 0.587 * images[0, :, 1] + 0.114 * images[0, :, 2]
    assert feats.shape == (1, 2, 48 * 48) and torch.allclose(feats[0], luma.reshape(2, -1), atol=1e-5)
    rgb = encoder("face-rgb")
    small = torch.rand(1, 1, 3, 32, 32, generator=g)
    feats, _ = rgb(normalise(small, rgb))
    assert feats.shape == (1, 1, 3 * 32 * 32) and torch.allclose(feats[0, 0].view(3, 32, 32), small[0, 0], atol=1e-5)
    # larger crops are area-averaged down: a 2x2 block of a 64x64 image becomes one pixel
    big = torch.rand(1, 1, 3, 64, 64, generator=g)
    feats, _ = rgb(normalise(big, rgb))
    assert torch.allclose(feats[0, 0].view(3, 32, 32)[:, 3, 5], big[0, 0, :, 6:8, 10:12].mean((1, 2)), atol=1e-5)


def test_frame_differences_and_masked_frames():
    enc = encoder("frame-diff")
    levels = torch.tensor([0.2, 0.5, 0.4, 0.9])
    images = levels.view(1, 4, 1, 1, 1).expand(1, 4, 3, 48, 48)   # flat grey frames
    mask = torch.tensor([[True, True, False, True]])
    feats, out_mask = enc(normalise(images, enc), mask)
    per_frame = feats[0].mean(1)
    # frame 1 - frame 0 = 0.3; frame 2 is missing (zero); frame 3's predecessor is missing (zero)
    assert torch.allclose(per_frame, torch.tensor([0.0, 0.3, 0.0, 0.0]), atol=1e-5)
    assert out_mask.tolist() == mask.tolist()


def photo_crop(y, x, size=64):
    img = torch.from_numpy(astronaut().astype(np.float32) / 255).permute(2, 0, 1)
    return img[:, y: y + size, x: x + size]


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -1), (3, 2)])
def test_optical_flow_of_a_shifted_photo_is_the_shift(dx, dy):
    enc = encoder("optical-flow")
    assert enc.image_size == 64 and enc.output_dim == 32
    # frame 1 shows the same face moved by (dx, dy): its content at (x, y) is frame 0's at (x - dx, y - dy)
    frames = torch.stack([photo_crop(100, 180), photo_crop(100 - dy, 180 - dx)])[None]
    feats, _ = enc(normalise(frames, enc))
    flow = feats[0].view(2, 2, 4, 4)   # (frame, dx/dy, grid, grid)
    assert (flow[0] == 0).all()        # no previous frame
    assert abs(flow[1, 0].mean() - dx) < 0.15 and abs(flow[1, 1].mean() - dy) < 0.15
    inner = flow[1, :, 1:3, 1:3]       # cells away from the image border, where content leaves the frame
    assert (inner[0] - dx).abs().max() < 0.15 and (inner[1] - dy).abs().max() < 0.15


def test_still_face_has_no_flow():
    enc = encoder("optical-flow")
    frames = torch.stack([photo_crop(100, 180)] * 3)[None]
    feats, _ = enc(normalise(frames, enc))
    assert feats.abs().max() < 1e-3


def test_presets_describe_themselves_and_save(tmp_path):
    names = ["face-grey", "face-rgb", "fbank", "frame-diff", "mfcc", "mfcc-deltas", "optical-flow", "zcr-energy"]
    assert set(names) <= set(list_encoders())
    for name in names:
        preset, enc = get_encoder_preset(name), encoder(name)
        assert enc.modality == preset.modality and enc.output_dim == preset.output_dim, name
        if enc.modality == "audio":
            assert enc.frame_rate == 100.0 and enc.sample_rate == SR
        else:
            assert enc.frame_rate is None and enc.image_size in (32, 48, 64) and len(enc.mean) == len(enc.std) == 3
        enc.save_pretrained(tmp_path / name)
        again = build_from_config(tmp_path / name)
        assert type(again) is type(enc) and again.output_dim == enc.output_dim and again.preset == name
    assert encoder("mfcc", n_mfcc=13, deltas=True).output_dim == 39
    assert encoder("optical-flow", grid=2).output_dim == 8

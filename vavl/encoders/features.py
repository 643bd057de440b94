"""Hand-crafted audio and face features as plain tensor functions (no parameters, no files).

Axis letters: n samples, t frames, f frequency bins, m mel bands, c channels, h/w pixels.
Audio functions take one mono waveform (n,) and return (t, d) with t = n // hop + 1 (frames
centred on multiples of the hop, reflect-padded at the edges, as torchaudio does with
center=True; computed by vavl.media.spectral, without torchaudio). Image functions take (t, c, h, w) images in [0, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..media import spectral

SAMPLE_RATE = 16000
WIN_MS, HOP_MS = 25.0, 10.0
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 grey


def frame_sizes(sample_rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """(window, hop) in samples: 25 ms and 10 ms."""
    return round(sample_rate * WIN_MS / 1000), round(sample_rate * HOP_MS / 1000)


def num_frames(n: int, hop: int) -> int:
    """Frames a waveform of n samples yields (0 for an empty one)."""
    return n // hop + 1 if n > 0 else 0


def _pad_short(wave: torch.Tensor, win: int) -> torch.Tensor:
    """Zero-pad waveforms shorter than a window so reflect padding is defined."""
    return F.pad(wave, (0, win - wave.shape[-1])) if wave.shape[-1] < win else wave


# ---- audio -------------------------------------------------------------------------------------
class LogMel:
    """log(mel power + 1e-6) per frame: (n,) -> (t, n_mels). HTK mel scale, Hann window. A plain
    callable, not an nn.Module: nothing of it is saved with a model."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_mels: int = 40):
        self.sample_rate, self.n_mels = sample_rate, n_mels
        self.win, self.hop = frame_sizes(sample_rate)

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        t = num_frames(wave.shape[-1], self.hop)
        mel = spectral.mel_spectrogram(_pad_short(wave.float().cpu(), self.win), self.sample_rate, self.win, self.hop,
                                       self.n_mels)  # (m, t')
        return torch.log(mel + 1e-6).T[:t]


class MFCC:
    """MFCCs (orthonormal DCT-II of log-mel energies), optionally with first and second time
    derivatives: (n,) -> (t, n_mfcc * (3 if deltas else 1))."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 40, n_mels: int = 40, deltas: bool = False):
        self.sample_rate, self.n_mfcc, self.n_mels, self.deltas = sample_rate, n_mfcc, n_mels, deltas
        self.win, self.hop = frame_sizes(sample_rate)

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        t = num_frames(wave.shape[-1], self.hop)
        c = spectral.mfcc(_pad_short(wave.float().cpu(), self.win), self.sample_rate, self.n_mfcc, self.win, self.hop,
                          self.n_mels)[:, :t]  # (n_mfcc, t)
        if self.deltas:
            d1 = spectral.deltas(c, win_length=5)
            c = torch.cat([c, d1, spectral.deltas(d1, win_length=5)], dim=0)
        return c.T


def frame_signal(wave: torch.Tensor, win: int, hop: int) -> torch.Tensor:
    """(n,) -> (t, win): windows centred on multiples of hop, reflect-padded at the edges."""
    t = num_frames(wave.shape[-1], hop)
    padded = F.pad(_pad_short(wave.float(), win)[None, None], (win // 2, win // 2), mode="reflect")[0, 0]
    return padded.unfold(0, win, hop)[:t]


def zcr_energy(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(n,) -> (t, 2): zero-crossing rate (sign changes per sample pair) and log mean energy."""
    frames = frame_signal(wave, *frame_sizes(sample_rate))  # (t, win)
    signs = torch.sign(frames)
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)  # exact zeros count as positive
    zcr = (signs[:, 1:] != signs[:, :-1]).float().mean(1)
    energy = torch.log(frames.pow(2).mean(1) + 1e-10)
    return torch.stack([zcr, energy], dim=1)


# ---- faces -------------------------------------------------------------------------------------
def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(t, c, h, w) -> (t, c, size, size), area-averaged when shrinking."""
    if images.shape[-2:] == (size, size):
        return images
    if images.shape[-1] >= size and images.shape[-2] >= size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """(t, 3, h, w) RGB in [0, 1] -> (t, 1, h, w) luma."""
    w = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True)


def pair_valid(valid: torch.Tensor) -> torch.Tensor:
    """(t,) bool -> (t,) bool: frame t and frame t-1 are both valid (never the first frame)."""
    keep = valid.clone()
    keep[1:] &= valid[:-1]
    keep[0] = False
    return keep


def frame_differences(images: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(t, c, h, w) -> (t, c, h, w): image t minus image t-1; zeros for the first frame and
    wherever either frame is not valid (valid: (t,) bool)."""
    diff = torch.zeros_like(images)
    diff[1:] = images[1:] - images[:-1]
    if valid is not None:
        diff = diff * pair_valid(valid).view(-1, 1, 1, 1).to(diff.dtype)
    return diff


def _gaussian_kernel(sigma: float, device, dtype) -> torch.Tensor:
    r = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-r, r + 1, device=device, dtype=dtype)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (b, c, h, w), replicate borders."""
    k = _gaussian_kernel(sigma, x.device, x.dtype)
    r, c = k.numel() // 2, x.shape[1]
    x = F.pad(x, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of (b, 1, h, w), replicate borders -> (gx, gy)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    return gx, gy


def _warp(x: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample (b, 1, h, w) at (x + u, y + v) for flow (b, 2, h, w) in pixels (bilinear, border).
    Returns the warped image and (b, 1, h, w) where the sampling point lies inside the image."""
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    inside = ((gx.abs() <= 1) & (gy.abs() <= 1)).unsqueeze(1).to(x.dtype)
    return F.grid_sample(x, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="border", align_corners=True), inside


def lucas_kanade(prev: torch.Tensor, nxt: torch.Tensor, levels: int = 3, iterations: int = 5,
                 window_sigma: float = 2.0, eps: float = 1e-4) -> torch.Tensor:
    """Dense pyramidal, iterative Lucas–Kanade optical flow.

    prev, nxt: (b, 1, h, w) grey images. Returns (b, 2, h, w) flow (dx, dy) in pixels such that
    nxt(x + dx, y + dy) ≈ prev(x, y): content moving right gives dx > 0. Each pyramid level
    solves, per pixel, the Gaussian-weighted 2x2 normal equations of the brightness-constancy
    residual after warping `nxt` by the current estimate (eps regularises flat regions to 0).
    """
    pyramid = [(prev.float(), nxt.float())]
    for _ in range(levels - 1):
        p, n = pyramid[-1]
        if min(p.shape[-2:]) < 16:
            break
        pyramid.append((F.avg_pool2d(_blur(p, 1.0), 2), F.avg_pool2d(_blur(n, 1.0), 2)))
    flow = None
    for p, n in reversed(pyramid):
        if flow is None:
            flow = torch.zeros(p.shape[0], 2, *p.shape[-2:], device=p.device, dtype=p.dtype)
        else:
            flow = 2 * F.interpolate(flow, size=p.shape[-2:], mode="bilinear", align_corners=False)
        gx, gy = _gradients(p)
        sxx, sxy, syy = (_blur(a, window_sigma) for a in (gx * gx, gx * gy, gy * gy))
        sxx, syy = sxx + eps, syy + eps
        det = sxx * syy - sxy * sxy
        for _ in range(iterations):
            warped, inside = _warp(n, flow)
            it = (warped - p) * inside  # residual after warping; none where the point left the image
            bx, by = _blur(gx * it, window_sigma), _blur(gy * it, window_sigma)
            du = -(syy * bx - sxy * by) / det
            dv = -(sxx * by - sxy * bx) / det
            flow = flow + torch.cat([du, dv], dim=1)
    return flow


def optical_flow_grid(images: torch.Tensor, valid: torch.Tensor | None = None, grid: int = 4,
                      **lk_options) -> torch.Tensor:
    """(t, 1, h, w) grey frames -> (t, 2, grid, grid) mean flow (dx, dy) from frame t-1 to frame t
    in each cell; zeros for the first frame and wherever either frame is not valid."""
    t = images.shape[0]
    out = torch.zeros(t, 2, grid, grid, dtype=torch.float32, device=images.device)
    if t < 2:
        return out
    flow = lucas_kanade(images[:-1], images[1:], **lk_options)  # (t-1, 2, h, w)
    out[1:] = F.adaptive_avg_pool2d(flow, grid)
    if valid is not None:
        out = out * pair_valid(valid).view(-1, 1, 1, 1).to(out.dtype)
    return out

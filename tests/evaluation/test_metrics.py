"""Tests of kairos_gym.evaluation.metrics: PSNR and SSIM against known values and a plain numpy SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kairos_gym.errors import ShapeError
from kairos_gym.evaluation.metrics import SSIM_C1, SSIM_C2, gaussian_window, psnr, ssim


def _random_frames(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def _ssim_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of one [H, W, 3] pair the slow, obvious way: an explicit 11x11 Gaussian window
    at every fully contained position, per channel, then the mean over positions and channels."""
    k, sigma = 11, 1.5
    r = np.arange(k) - (k - 1) / 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    g /= g.sum()
    h, w, _ = a.shape
    values = []
    for c in range(3):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        for i in range(h - k + 1):
            for j in range(w - k + 1):
                px, py = x[i : i + k, j : j + k], y[i : i + k, j : j + k]
                mx, my = (g * px).sum(), (g * py).sum()
                vx = (g * (px - mx) ** 2).sum()
                vy = (g * (py - my) ** 2).sum()
                cxy = (g * (px - mx) * (py - my)).sum()
                values.append(
                    ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2))
                    / ((mx**2 + my**2 + SSIM_C1) * (vx + vy + SSIM_C2))
                )
    return float(np.mean(values))


def test_identical_frames_give_infinite_psnr_and_unit_ssim():
    a = _random_frames((2, 3, 16, 16, 3), seed=0)
    assert psnr(a, a.clone()).shape == (2, 3)
    assert torch.isinf(psnr(a, a)).all() and (psnr(a, a) > 0).all()
    assert torch.allclose(ssim(a, a), torch.ones(2, 3, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("d", [1, 5, 40])
def test_constant_offset_psnr(d):
    a = _random_frames((4, 16, 20, 3), seed=1).clamp(max=255 - d)
    b = a + d
    expected = 20 * math.log10(255 / d)
    assert torch.allclose(psnr(a, b), torch.full((4,), expected, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(psnr(b, a), psnr(a, b))  # symmetric


def test_psnr_of_a_single_frame_is_a_scalar_and_accepts_numpy():
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 255, np.uint8)
    value = psnr(a, b)
    assert value.shape == () and value.item() == pytest.approx(0.0)


def test_ssim_matches_a_plain_numpy_implementation():
    a = _random_frames((3, 16, 19, 3), seed=2)
    noise = _random_frames((3, 16, 19, 3), seed=3).to(torch.int16) // 8 - 16
    related = (a.to(torch.int16) + noise).clamp(0, 255).to(torch.uint8)  # high but imperfect SSIM
    unrelated = _random_frames((3, 16, 19, 3), seed=4)
    for b in (related, unrelated):
        ours = ssim(a, b)
        ref = torch.tensor(
            [_ssim_numpy(a[i].numpy(), b[i].numpy()) for i in range(3)], dtype=torch.float64
        )
        assert torch.allclose(ours, ref, atol=1e-10), (ours, ref)
    assert (ssim(a, related) > 0.5).all() and (ssim(a, unrelated).abs() < 0.2).all()


def test_ssim_of_a_smooth_image_against_a_shifted_copy_matches_numpy():
    # Smooth content exercises the luminance and covariance terms very differently from noise.
    yy, xx = np.mgrid[0:24, 0:24]
    base = np.stack([(xx * 10) % 256, (yy * 7) % 256, (xx + yy) * 5 % 256], axis=-1)
    base = base.astype(np.uint8)
    shifted = np.roll(base, 2, axis=1)
    assert ssim(base, shifted).item() == pytest.approx(_ssim_numpy(base, shifted), abs=1e-10)


def test_gaussian_window():
    taps = gaussian_window()
    assert taps.shape == (11,) and taps.sum().item() == pytest.approx(1.0)
    assert torch.equal(taps, taps.flip(0)) and taps.argmax().item() == 5
    assert taps[5] / taps[4] == pytest.approx(math.exp(1 / (2 * 1.5**2)))
    with pytest.raises(ValueError, match="odd"):
        gaussian_window(10)


def test_bad_input_is_rejected():
    a = _random_frames((2, 16, 16, 3), seed=5)
    with pytest.raises(ShapeError, match=r"psnr: b must be uint8 .*, got dtype torch.float32"):
        psnr(a, a.float())
    with pytest.raises(ShapeError, match=r"same shape, got \(2, 16, 16, 3\) and \(1, 16, 16, 3\)"):
        ssim(a, a[:1])
    with pytest.raises(ShapeError, match=r"got shape \(2, 16, 16, 4\)"):
        four = torch.zeros(2, 16, 16, 4, dtype=torch.uint8)
        psnr(four, four)
    with pytest.raises(ShapeError, match="at least 11x11"):
        ssim(a[:, :8, :8], a[:, :8, :8])

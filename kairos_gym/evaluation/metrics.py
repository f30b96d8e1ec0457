"""Image fidelity metrics on uint8 RGB frames: PSNR and SSIM, in PyTorch.

Both take two uint8 tensors of the same shape ``[..., H, W, 3]`` (any leading batch/time
dimensions, e.g. ``[B, T, H, W, 3]``) and return one float64 value per frame, shape ``[...]``.
The data range is 255 (8-bit images).

- :func:`psnr`: ``10 log10(255^2 / MSE)`` over all pixels and channels of a frame;
  ``inf`` for identical frames.
- :func:`ssim`: the structural similarity of Wang et al. (2004) with the usual constants:
  an 11x11 Gaussian window of standard deviation 1.5 (normalised to sum 1),
  ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``, local statistics over every *fully
  contained* window position (no padding: an ``H x W`` frame gives an
  ``(H - 10) x (W - 10)`` map), computed on each RGB channel separately; the frame's value
  is the mean of the map, averaged over the three channels. Frames need ``H, W >= 11``.

Everything runs in float64 so that the variance terms (differences of squares up to 255^2)
keep full precision; the cost is negligible next to generating the frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from kairos_gym.errors import ShapeError

__all__ = ["SSIM_C1", "SSIM_C2", "SSIM_SIGMA", "SSIM_WINDOW", "gaussian_window", "psnr", "ssim"]

SSIM_WINDOW = 11
"""Side of the SSIM Gaussian window, in pixels."""
SSIM_SIGMA = 1.5
"""Standard deviation of the SSIM Gaussian window, in pixels."""
SSIM_C1 = (0.01 * 255) ** 2
"""SSIM stabiliser of the luminance term, ``(K1 L)^2`` with ``K1 = 0.01``, ``L = 255``."""
SSIM_C2 = (0.03 * 255) ** 2
"""SSIM stabiliser of the contrast-structure term, ``(K2 L)^2`` with ``K2 = 0.03``."""


def _pair(
    a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two uint8 ``[..., H, W, 3]`` frames of equal shape; return them as tensors."""
    a = torch.as_tensor(a)
    b = torch.as_tensor(b)
    for name, x in (("a", a), ("b", b)):
        if x.dtype != torch.uint8:
            raise ShapeError(
                f"{what}: {name} must be uint8 frames [..., H, W, 3], got dtype {x.dtype}"
            )
        if x.ndim < 3 or x.shape[-1] != 3:
            raise ShapeError(
                f"{what}: {name} must be uint8 frames [..., H, W, 3], got shape {tuple(x.shape)}"
            )
    if a.shape != b.shape:
        raise ShapeError(
            f"{what}: a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.device != b.device:
        b = b.to(a.device)
    return a, b


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Peak signal-to-noise ratio of each frame, in dB.

    Args:
        a, b: uint8 frames ``[..., H, W, 3]`` of the same shape.

    Returns:
        float64 ``[...]``: ``10 log10(255^2 / MSE)``, MSE over the frame's ``H * W * 3``
        values; ``inf`` where the frames are identical.

    Raises:
        ShapeError: not uint8, last dimension not 3, or different shapes.
    """
    a, b = _pair(a, b, "psnr")
    diff = a.to(torch.float64) - b.to(torch.float64)
    mse = diff.square().mean(dim=(-3, -2, -1))
    # 10 log10(x / 0) is +inf in IEEE arithmetic, which is the right answer for equal frames.
    return 10.0 * torch.log10((255.0**2) / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The 1-D Gaussian taps ``[size]`` (float64, sum 1); the 2-D window is their outer product."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be a positive odd integer, got {size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def _filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted local means ``[N, 1, H-k+1, W-k+1]`` of ``x`` ``[N, 1, H, W]``.

    The 2-D Gaussian is separable, so two 1-D passes (rows, then columns) give the same
    result as the 11x11 window at a fraction of the cost.
    """
    k = taps.numel()
    x = F.conv2d(x, taps.view(1, 1, 1, k))
    return F.conv2d(x, taps.view(1, 1, k, 1))


def ssim(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Structural similarity of each frame (see the module docstring for the exact recipe).

    Args:
        a, b: uint8 frames ``[..., H, W, 3]`` of the same shape, ``H, W >= 11``.

    Returns:
        float64 ``[...]`` in ``[-1, 1]``; 1 for identical frames. The mean over the SSIM map
        of each RGB channel, averaged over the three channels.

    Raises:
        ShapeError: not uint8, last dimension not 3, different shapes, or frames smaller
            than the 11x11 window.
    """
    a, b = _pair(a, b, "ssim")
    lead, (h, w) = a.shape[:-3], a.shape[-3:-1]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ShapeError(
            f"ssim: frames must be at least {SSIM_WINDOW}x{SSIM_WINDOW} (the Gaussian "
            f"window), got {h}x{w}"
        )
    n = math.prod(lead)
    if n == 0:
        return torch.zeros(lead, dtype=torch.float64, device=a.device)

    # [..., H, W, 3] -> [N * 3, 1, H, W]: every channel of every frame is its own image.
    def planes(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(n, h, w, 3).permute(0, 3, 1, 2).reshape(n * 3, 1, h, w).to(torch.float64)

    x, y = planes(a), planes(b)
    taps = gaussian_window().to(a.device)
    mu_x, mu_y = _filter(x, taps), _filter(y, taps)
    # Local (co)variances as E[xy] - E[x]E[y] under the Gaussian weights.
    var_x = _filter(x * x, taps) - mu_x**2
    var_y = _filter(y * y, taps) - mu_y**2
    cov = _filter(x * y, taps) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    per_plane = (num / den).mean(dim=(-2, -1)).view(n, 3)
    return per_plane.mean(dim=-1).view(lead)

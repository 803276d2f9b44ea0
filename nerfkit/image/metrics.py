"""Image quality metrics on 8-bit outputs: PSNR and SSIM.

docs/design.md: metrics are computed on 8-bit sRGB outputs, so both images are first quantised to the
8-bit grid (``round(clamp(x, 0, 1) * 255) / 255``) and then compared as floats in [0, 1]. Everything
is computed in float64 on the images' device.

SSIM follows the 3DGS / nerfbaselines evaluation: an 11x11 Gaussian window with sigma 1.5,
``C1 = 0.01**2``, ``C2 = 0.03**2`` (data range 1), population (not sample) covariances, per channel,
'valid' filtering (no padding), mean over the map and the channels. Because scikit-image filters with
reflect padding and then crops 5 pixels from each border before averaging, the two agree exactly (up
to rounding): ``ssim(a, b) == structural_similarity(a, b, channel_axis=2, data_range=1.0,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_PSNR = 100.0
"""PSNR reported for identical images (their MSE is zero)."""

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def quantize_8bit(image: Tensor) -> Tensor:
    """``image`` (any shape, float in [0, 1]) snapped to the 8-bit grid, as float64 in [0, 1]."""
    return torch.round(image.detach().double().clamp(0.0, 1.0) * 255.0) / 255.0


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error over values in [0, 1]; :data:`MAX_PSNR` for ``mse <= 0``.

    >>> round(psnr_from_mse(1e-3), 2)
    30.0
    """
    mse = float(mse)
    if mse <= 10.0 ** (-MAX_PSNR / 10.0):
        return MAX_PSNR
    return -10.0 * math.log10(mse)


def psnr(pred: Tensor, target: Tensor, keep: Tensor | None = None) -> float:
    """PSNR in dB between two images after 8-bit quantisation.

    Args:
        pred: (H, W, C) float image in [0, 1] (values outside are clamped).
        target: (H, W, C) float image in [0, 1], same shape.
        keep: (H, W) bool, the pixels that count (an ignore mask), or None: all of them.

    Returns:
        ``-10 log10(MSE)`` over the pixels that count and all channels, :data:`MAX_PSNR` for
        identical images.

    >>> t = torch.full((4, 4, 3), 128 / 255)    # on the 8-bit grid (0.5 would round like 0.5 + 1/255)
    >>> round(psnr(t + 1 / 255, t), 2)
    48.13
    """
    _check_pair(pred, target)
    error = (quantize_8bit(pred) - quantize_8bit(target)) ** 2
    if keep is not None:
        error = error[keep.to(error.device)]
    return psnr_from_mse(error.mean().item()) if error.numel() else MAX_PSNR


def ssim(pred: Tensor, target: Tensor) -> float:
    """Mean SSIM between two images after 8-bit quantisation (see the module docstring).

    Args:
        pred: (H, W, C) float image in [0, 1], H and W at least 11.
        target: (H, W, C) float image in [0, 1], same shape.

    Returns:
        SSIM in [-1, 1]; 1.0 for identical images.
    """
    _check_pair(pred, target)
    height, width = pred.shape[:2]
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                         f"got {height}x{width}")
    return float(ssim_loss_map(quantize_8bit(pred), quantize_8bit(target)).mean().item())


def ssim_loss_map(pred: Tensor, target: Tensor) -> Tensor:
    """Differentiable SSIM map (the formula of :func:`ssim`, without quantisation).

    Args:
        pred, target: (H, W, C) float images, H and W at least 11, any float dtype.
    Returns:
        (C, H - 10, W - 10) per-pixel SSIM of the 'valid' region; ``1 - map.mean()`` is the 3DGS
        D-SSIM loss term.
    """
    x = pred.permute(2, 0, 1)                       # (C, H, W): each channel filtered on its own
    y = target.permute(2, 0, 1)
    taps = _gaussian_1d(SSIM_WINDOW, SSIM_SIGMA, x.device).to(x.dtype)
    # The five filtered images in one go: (5, C, H, W) -> (5, C, H - 10, W - 10).
    filtered = _blur_valid(torch.stack([x, y, x * x, y * y, x * y]), taps)
    mu_x, mu_y, xx, yy, xy = filtered.unbind(0)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov_xy = xy - mu_x * mu_y
    numerator = (2.0 * mu_x * mu_y + SSIM_C1) * (2.0 * cov_xy + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return numerator / denominator


BANDED_BLUR_MAX_SIDE = 512
"""Images up to this side are filtered by matrix products (below); larger ones by convolution."""


def _blur_valid(images: Tensor, taps: Tensor) -> Tensor:
    """Separable filter of (..., H, W) images with (K,) taps, 'valid' region: (..., H-K+1, W-K+1).

    Up to :data:`BANDED_BLUR_MAX_SIDE` pixels a side, as two products with banded matrices
    (``B_h @ image @ B_w^T``): on a CPU these are several times faster, forward and backward, than
    single-channel convolutions, whose per-call cost dominates at training sizes. Larger images
    use convolutions (the banded products grow with the square of the side).
    """
    height, width = images.shape[-2:]
    if max(height, width) <= BANDED_BLUR_MAX_SIDE:
        return _band_matrix(height, taps) @ images @ _band_matrix(width, taps).T
    flat = images.reshape(-1, 1, height, width)
    flat = F.conv2d(F.conv2d(flat, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))
    return flat.reshape(*images.shape[:-2], *flat.shape[-2:])


def _band_matrix(size: int, taps: Tensor) -> Tensor:
    """(size - K + 1, size) matrix whose row i holds the K taps at columns i .. i + K - 1."""
    n_taps = taps.numel()
    rows = size - n_taps + 1
    columns = torch.arange(rows, device=taps.device).unsqueeze(1) + torch.arange(n_taps, device=taps.device)
    band = torch.zeros(rows, size, dtype=taps.dtype, device=taps.device)
    return band.scatter_(1, columns, taps.expand(rows, n_taps))


def _gaussian_1d(size: int, sigma: float, device: torch.device) -> Tensor:
    """(size,) float64 normalised Gaussian taps centred on the middle tap."""
    offsets = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2.0
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def _check_pair(pred: Tensor, target: Tensor) -> None:
    """Raise ValueError unless both are (H, W, C) images of the same shape."""
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(f"expected two (H, W, C) images of the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")

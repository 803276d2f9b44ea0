"""Turning renders into viewable 8-bit images: colour-mapped depth, PNG writing."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

# Anchor colours of a perceptually ordered map (dark blue -> teal -> green -> yellow), interpolated
# linearly in between; lightness increases monotonically from near to far.
_ANCHORS = np.array([[0.05, 0.03, 0.33], [0.17, 0.29, 0.56], [0.13, 0.55, 0.55],
                     [0.25, 0.73, 0.40], [0.68, 0.86, 0.18], [0.99, 0.91, 0.15]])


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> float colours (..., 3) in [0, 1]."""
    scaled = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.floor(scaled).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (scaled - low)[..., None]
    return _ANCHORS[low] * (1.0 - frac) + _ANCHORS[low + 1] * frac


def colorize_depth(depth: Tensor, alpha: Tensor | None = None, near: float | None = None,
                   far: float | None = None) -> np.ndarray:
    """Colour-map a depth image.

    Args:
        depth: (H, W) expected distance along the ray (not divided by alpha).
        alpha: (H, W) opacity; pixels with alpha < 0.5 are background (black).
        near, far: the depth range mapped to the colour map's ends (default: the 1st and 99th
            percentile of the foreground's depth).
    Returns:
        (H, W, 3) uint8.
    """
    depth = depth.detach().float().cpu()
    if alpha is None:
        alpha = torch.ones_like(depth)
    alpha = alpha.detach().float().cpu()
    surface = (depth / alpha.clamp(min=1e-6)).numpy()
    foreground = alpha.numpy() >= 0.5
    if near is None or far is None:
        values = surface[foreground] if foreground.any() else surface.reshape(-1)
        lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
        near = lo if near is None else near
        far = hi if far is None else far
    normalised = (surface - near) / max(far - near, 1e-9)
    rgb = colormap(normalised)
    rgb[~foreground] = 0.0
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def to_uint8(image: Tensor) -> np.ndarray:
    """(H, W, C) float in [0, 1] -> (H, W, C) uint8 (rounded)."""
    return (image.detach().float().clamp(0.0, 1.0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def save_image(path: Path, array: np.ndarray) -> None:
    """Write a uint8 (H, W, C) array as PNG (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, array)


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """Images of equal height, concatenated left to right."""
    return np.concatenate(images, axis=1)

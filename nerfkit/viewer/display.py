"""Turning a :class:`RenderResult` into the 8-bit picture shown for a render mode."""

from __future__ import annotations

import numpy as np

from nerfkit.viewer.types import RenderResult

# Anchors of a perceptually ordered colour map (dark blue -> teal -> green -> yellow).
_ANCHORS = np.array([[0.05, 0.03, 0.33], [0.17, 0.29, 0.56], [0.13, 0.55, 0.55],
                     [0.25, 0.73, 0.40], [0.68, 0.86, 0.18], [0.99, 0.91, 0.15]])


def available_modes(result: RenderResult) -> list[str]:
    """The render modes this result can show, in menu order."""
    modes = ["rgb"]
    modes += [name for name in ("depth", "alpha", "normals") if getattr(result, name) is not None]
    return modes


def to_display(result: RenderResult, mode: str) -> np.ndarray:
    """(H, W, 3) uint8 picture of ``result`` in ``mode`` (rgb when the mode is unavailable).

    depth: near -> far over the colour map, empty pixels black; alpha: grey levels;
    normals: camera-space normals mapped from [-1, 1] to [0, 255].
    """
    if mode == "depth" and result.depth is not None:
        image = _colour_depth(result.depth)
    elif mode == "alpha" and result.alpha is not None:
        image = np.repeat(np.clip(result.alpha, 0, 1)[..., None], 3, axis=-1)
    elif mode == "normals" and result.normals is not None:
        image = np.clip(result.normals * 0.5 + 0.5, 0, 1)
        if result.alpha is not None:
            image = image * (result.alpha[..., None] >= 0.5)
    else:
        image = np.clip(result.rgb, 0, 1)
    return (image * 255.0 + 0.5).astype(np.uint8)


def _colour_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) float colours; non-finite depth is black."""
    finite = np.isfinite(depth)
    if not finite.any():
        return np.zeros((*depth.shape, 3))
    near, far = np.percentile(depth[finite], [1, 99])
    scaled = np.clip((np.where(finite, depth, far) - near) / max(far - near, 1e-9), 0, 1)
    position = scaled * (len(_ANCHORS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (position - low)[..., None]
    colours = _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac
    colours[~finite] = 0.0
    return colours

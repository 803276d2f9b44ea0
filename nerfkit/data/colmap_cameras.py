"""COLMAP camera models -> nerfkit's pinhole intrinsics and OpenCV distortion coefficients."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfkit.core.errors import NerfkitError

SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


def camera_from_colmap(model: str, params: np.ndarray, source: Path) -> tuple[list[float],
                                                                              list[float]]:
    """COLMAP model + params -> ``[fx, fy, cx, cy]`` and ``[k1, k2, p1, p2, k3]``.

    Raises:
        NerfkitError: for a model outside :data:`SUPPORTED_MODELS`, naming it and ``source``.
    """
    p = [float(v) for v in params]
    zero = [0.0] * 5
    if model == "SIMPLE_PINHOLE":
        return [p[0], p[0], p[1], p[2]], zero
    if model == "PINHOLE":
        return p[:4], zero
    if model == "SIMPLE_RADIAL":
        return [p[0], p[0], p[1], p[2]], [p[3], 0.0, 0.0, 0.0, 0.0]
    if model == "RADIAL":
        return [p[0], p[0], p[1], p[2]], [p[3], p[4], 0.0, 0.0, 0.0]
    if model == "OPENCV":
        return p[:4], [p[4], p[5], p[6], p[7], 0.0]
    raise NerfkitError(f"camera model '{model}' in '{source}' is not supported; supported: "
                       f"{', '.join(SUPPORTED_MODELS)} (undistort the images with COLMAP first)")

"""COLMAP camera models -> nerfkit's intrinsics, distortion coefficients and lens model.

Pinhole models map onto ``fx, fy, cx, cy`` + OpenCV ``k1, k2, p1, p2, k3``; the equidistant
fisheyes (``SIMPLE_RADIAL_FISHEYE``, ``RADIAL_FISHEYE``, ``OPENCV_FISHEYE``, ``SIMPLE_FISHEYE``,
``FISHEYE``: the same model with fewer coefficients) onto ``fx, fy, cx, cy`` + ``k1, k2, k3, k4, 0``
and the fisheye flag (:class:`nerfkit.data.cameras.Cameras`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from nerfkit.core.errors import NerfkitError

PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
FISHEYE_MODELS = ("OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "SIMPLE_FISHEYE", "FISHEYE")
SUPPORTED_MODELS = PINHOLE_MODELS + FISHEYE_MODELS


class ColmapLens(NamedTuple):
    """One camera in nerfkit's terms: ``[fx, fy, cx, cy]``, five distortion coefficients (OpenCV
    ``k1, k2, p1, p2, k3`` of a pinhole, ``k1, k2, k3, k4, 0`` of a fisheye) and the fisheye flag."""

    intrinsics: list[float]
    distortion: list[float]
    fisheye: bool


def camera_from_colmap(model: str, params: np.ndarray, source: Path) -> ColmapLens:
    """COLMAP model + params -> :class:`ColmapLens`.

    Raises:
        NerfkitError: for a model outside :data:`SUPPORTED_MODELS`, naming it and ``source``.
    """
    p = [float(v) for v in params]
    zero = [0.0] * 5
    if model == "SIMPLE_PINHOLE":
        return ColmapLens([p[0], p[0], p[1], p[2]], zero, False)
    if model == "PINHOLE":
        return ColmapLens(p[:4], zero, False)
    if model == "SIMPLE_RADIAL":
        return ColmapLens([p[0], p[0], p[1], p[2]], [p[3], 0.0, 0.0, 0.0, 0.0], False)
    if model == "RADIAL":
        return ColmapLens([p[0], p[0], p[1], p[2]], [p[3], p[4], 0.0, 0.0, 0.0], False)
    if model == "OPENCV":
        return ColmapLens(p[:4], [p[4], p[5], p[6], p[7], 0.0], False)
    if model == "OPENCV_FISHEYE":
        return ColmapLens(p[:4], [p[4], p[5], p[6], p[7], 0.0], True)
    if model == "SIMPLE_RADIAL_FISHEYE":
        return ColmapLens([p[0], p[0], p[1], p[2]], [p[3], 0.0, 0.0, 0.0, 0.0], True)
    if model == "RADIAL_FISHEYE":
        return ColmapLens([p[0], p[0], p[1], p[2]], [p[3], p[4], 0.0, 0.0, 0.0], True)
    if model == "SIMPLE_FISHEYE":
        return ColmapLens([p[0], p[0], p[1], p[2]], zero, True)
    if model == "FISHEYE":
        return ColmapLens(p[:4], zero, True)
    raise NerfkitError(f"camera model '{model}' in '{source}' is not supported; supported: "
                       f"{', '.join(SUPPORTED_MODELS)} (undistort the images with COLMAP first)")

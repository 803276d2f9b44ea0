"""The ``.splat`` file of the web splat viewers (antimatter15's WebGL viewer, and the many that read
its format): 32 bytes per Gaussian, no header, no SH beyond the base colour.

Each row, little endian::

    x y z          3 x float32   the mean
    sx sy sz       3 x float32   the std-devs (exp of the log scales)
    r g b a        4 x uint8     base colour (0.5 + SH_C0 * f_dc) * 255 and opacity sigmoid(logit) * 255
    qw qx qy qz    4 x uint8     the unit quaternion, q * 128 + 128

Rows are sorted by size x opacity (largest first), as that viewer's converter writes them, so a
viewer streaming the file draws the big opaque Gaussians first. Coordinates are those of the 3DGS
.ply (no axis change). Reading gives the in-memory Gaussian dict of :mod:`nerfkit.export.splat_ply`
with ``shN`` of shape (N, 0, 3).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import atomic_write
from nerfkit.render.spherical_harmonics import SH_C0

ROW = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])
OPACITY_EPS = 1e-6


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def logit(p: np.ndarray, eps: float = OPACITY_EPS) -> np.ndarray:
    p = np.clip(p.astype(np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round and clamp to 0..255."""
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def numpy_gaussians(gaussians: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    """The Gaussian dict as CPU float32 numpy arrays."""
    return {key: torch.as_tensor(value).detach().to("cpu", torch.float32).numpy()
            for key, value in gaussians.items()}


def write_splat_web(path: str | os.PathLike, gaussians: Mapping[str, Tensor]) -> None:
    """Write ``gaussians`` (the dict of :mod:`nerfkit.export.splat_ply`) as a ``.splat`` file,
    atomically; the higher SH bands are dropped (the format holds base colours only)."""
    g = numpy_gaussians(gaussians)
    count = g["means"].shape[0]
    opacity = sigmoid(g["opacities"])
    order = np.argsort(-np.exp(g["scales"].astype(np.float64).sum(1)) * opacity, kind="stable")
    quats = g["quats"] / np.maximum(np.linalg.norm(g["quats"], axis=1, keepdims=True), 1e-12)
    rows = np.zeros(count, ROW)
    rows["position"] = g["means"]
    rows["scale"] = np.exp(g["scales"])
    rows["rgba"][:, :3] = to_uint8((0.5 + SH_C0 * g["sh0"].reshape(count, 3)) * 255.0)
    rows["rgba"][:, 3] = to_uint8(opacity * 255.0)
    rows["rotation"] = to_uint8(quats * 128.0 + 128.0)
    try:
        with atomic_write(Path(path)) as file:
            file.write(rows[order].tobytes())
    except OSError as error:
        raise NerfkitError(f"'{path}' could not be written: {error.strerror or error}") from None


def read_splat_web(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a ``.splat`` file into the Gaussian dict (CPU float32; ``shN`` (N, 0, 3)).

    Raises:
        NerfkitError: the file is missing, empty or not a whole number of 32-byte rows.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise NerfkitError(f"'{path}' could not be read: {error.strerror or error}") from None
    if not data or len(data) % ROW.itemsize:
        raise NerfkitError(f"'{path}' holds {len(data)} bytes: expected a .splat file of 32-byte rows "
                           f"(position, scale, colour, rotation per Gaussian)")
    rows = np.frombuffer(data, ROW)
    count = rows.shape[0]
    rgba = rows["rgba"].astype(np.float64) / 255.0
    quats = (rows["rotation"].astype(np.float64) - 128.0) / 128.0
    quats[np.linalg.norm(quats, axis=1) < 1e-6] = (1.0, 0.0, 0.0, 0.0)
    scales = np.log(np.maximum(rows["scale"].astype(np.float64), 1e-30))

    def tensor(array: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    return {"means": tensor(rows["position"]), "quats": tensor(quats), "scales": tensor(scales),
            "opacities": tensor(logit(rgba[:, 3])), "sh0": tensor((rgba[:, :3] - 0.5) / SH_C0).reshape(count, 1, 3),
            "shN": torch.zeros(count, 0, 3)}

"""Meshes from a signed distance field: marching cubes on its zero level set.

The SDF is sampled on a grid over a box and the zero crossing is extracted by marching cubes
(Lorensen & Cline 1987; scikit-image's Lewiner variant), with the winding of
:mod:`nerfkit.export.tsdf` (positive outside, faces counter-clockwise seen from outside).

Only the surface's neighbourhood is sampled finely: the SDF is first evaluated on a grid ``refine``
times coarser; the fine grid is evaluated only inside coarse cells the surface may cross (``|f|`` at
the cell's centre within its diagonal, a bound that holds for a distance field), and elsewhere takes
the coarse value, whose sign is right there. A 256^3 grid then costs a few million queries, not 16.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

SDFFn = Callable[[Tensor], Tensor]        # (P, 3) scene points -> (P,) signed distance
DEFAULT_CHUNK = 1 << 17


def grid_points(origin: np.ndarray, voxel: float, dims: tuple[int, int, int]) -> Tensor:
    """(X*Y*Z, 3) float32 points ``origin + (i, j, k) * voxel``, x slowest."""
    axes = [torch.arange(n, dtype=torch.float64) * voxel + float(o) for n, o in zip(dims, origin)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return grid.float()


def evaluate(sdf: SDFFn, points: Tensor, device: torch.device | str, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """``sdf`` at (P, 3) points, ``chunk`` at a time, on ``device``; (P,) float32 on the CPU."""
    out = torch.empty(points.shape[0])
    with torch.no_grad():
        for start in range(0, points.shape[0], chunk):
            part = points[start:start + chunk].to(device)
            out[start:start + chunk] = sdf(part).float().cpu()
    return out


def sample_sdf_grid(sdf: SDFFn, box: np.ndarray, resolution: int, device: torch.device | str,
                    refine: int = 4, chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray, float]:
    """The SDF on a grid of ``resolution`` samples along the box's longest side.

    Args:
        box: (2, 3) min and max corner in scene coordinates.
        refine: the coarse grid is ``refine`` times coarser (1: evaluate every sample).
    Returns:
        values (X, Y, Z) float32, the grid's origin (3,) (the box's min corner) and the spacing.
    """
    box = np.asarray(box, np.float64)
    extent = box[1] - box[0]
    voxel = float(extent.max()) / max(resolution - 1, 1)
    dims = tuple(int(math.ceil(e / voxel - 1e-9)) + 1 for e in extent)
    if refine <= 1 or min(dims) <= 2 * refine:
        return evaluate(sdf, grid_points(box[0], voxel, dims), device, chunk).reshape(dims).numpy(), box[0], voxel
    coarse_voxel = voxel * refine
    coarse_dims = tuple(int(math.ceil((n - 1) / refine)) + 1 for n in dims)
    coarse = evaluate(sdf, grid_points(box[0], coarse_voxel, coarse_dims), device, chunk).reshape(coarse_dims)
    # every fine sample takes the nearest coarse sample's value ...
    index = [np.minimum(np.round(np.arange(n) / refine).astype(np.int64), c - 1) for n, c in zip(dims, coarse_dims)]
    values = coarse.numpy()[np.ix_(*index)].copy()
    # ... except near the surface, where it is evaluated: within one coarse diagonal (+ a margin)
    near = np.abs(values) <= 1.5 * math.sqrt(3.0) * coarse_voxel
    flat = np.flatnonzero(near)
    if flat.size:
        ijk = np.stack(np.unravel_index(flat, dims), -1).astype(np.float64)
        points = torch.from_numpy(box[0] + ijk * voxel).float()
        values.reshape(-1)[flat] = evaluate(sdf, points, device, chunk).numpy()
    return values.astype(np.float32), box[0], voxel


def sdf_mesh(values: np.ndarray, origin: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on the zero level of sampled SDF values.

    Returns:
        vertices (V, 3) float64 scene coordinates and faces (F, 3) int64 (outward winding); both
        empty when the values do not change sign.
    """
    from skimage.measure import marching_cubes  # only needed here

    empty = np.zeros((0, 3), np.float64), np.zeros((0, 3), np.int64)
    if not np.isfinite(values).all() or values.min() >= 0 or values.max() <= 0:
        return empty
    try:
        verts, faces, _, _ = marching_cubes(values, level=0.0, gradient_direction="descent",
                                            allow_degenerate=False)
    except (ValueError, RuntimeError):
        return empty
    return np.asarray(origin, np.float64) + verts.astype(np.float64) * voxel, faces.astype(np.int64)

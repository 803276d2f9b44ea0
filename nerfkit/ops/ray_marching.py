"""Ray/box intersection and ray marching through a multi-cascade occupancy grid.

Cascade ``c`` of the grid covers the base box ``aabb`` scaled by ``2**c`` about its centre, at the
same ``G^3`` resolution (instant-ngp, Sec. "Accelerated ray marching"). Samples are emitted packed:
sorted by ray, ``ray_indices[s]`` says which ray sample ``s`` belongs to, and ``[t_starts, t_ends]``
is its interval along the unit direction. A sample is kept when the grid cell of its midpoint is
occupied and it lies inside the outermost cascade.

Step size: ``dt = clamp(t * cone_angle, step_size, 1e10)``; ``cone_angle = 0`` gives constant
steps (bounded objects), ``1/256`` grows steps with distance (unbounded scenes).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfkit.ops._backend import use_native
from nerfkit.ops.reference import grid_lookup, march_rays_ref, ray_aabb_intersect_ref


def ray_aabb_intersect(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances of rays through an axis-aligned box.

    Args:
        origins: (R, 3) ray origins; directions: (R, 3) ray directions (need not be unit).
        aabb: (2, 3) box min and max.
    Returns:
        t_near, t_far: (R,) with ``t_near >= 0`` (origins inside start at 0); both ``inf`` for
        rays that miss the box or have it entirely behind them.

    Example:
        >>> o = torch.tensor([[0.0, 0.0, -3.0], [5.0, 5.0, -3.0]]); d = torch.tensor([[0.0, 0.0, 1.0]] * 2)
        >>> ray_aabb_intersect(o, d, torch.tensor([[-1.0] * 3, [1.0] * 3]))
        (tensor([2., inf]), tensor([4., inf]))
    """
    _check_rays(origins, directions)
    if use_native(origins, directions, aabb):
        from nerfkit.ops._native import ray_aabb_intersect_native
        return ray_aabb_intersect_native(origins.contiguous(), directions.contiguous(), aabb.contiguous())
    return ray_aabb_intersect_ref(origins, directions, aabb)


def march_rays(origins: Tensor, directions: Tensor, t_min: Tensor, t_max: Tensor, grid: Tensor,
               aabb: Tensor, step_size: float, cone_angle: float = 0.0, max_samples: int = 1024
               ) -> tuple[Tensor, Tensor, Tensor]:
    """March rays through an occupancy grid, keeping samples in occupied cells.

    Args:
        origins, directions: (R, 3) float32; directions unit length.
        t_min, t_max: (R,) the interval to march (e.g. from :func:`ray_aabb_intersect` of the
            outermost cascade, clamped to near/far planes); ``inf`` or ``t_max <= t_min`` = skip.
        grid: (C, G, G, G) bool occupancy, cascade-major.
        aabb: (2, 3) box of cascade 0.
        step_size: minimum step (scene units); cone_angle: step growth with distance.
        max_samples: at most this many samples per ray (the nearest ones); 0 = no cap.
    Returns:
        ray_indices (S,) int64 sorted, t_starts (S,), t_ends (S,) float32.
    """
    _check_rays(origins, directions)
    if grid.ndim != 4 or grid.dtype != torch.bool:
        raise ValueError(f"march_rays expects a (C, G, G, G) bool grid, got {tuple(grid.shape)} {grid.dtype}")
    if use_native(origins, directions, grid):
        from nerfkit.ops._native import march_rays_native
        return march_rays_native(origins.contiguous(), directions.contiguous(), t_min.contiguous(),
                                 t_max.contiguous(), grid.contiguous(), aabb.contiguous(),
                                 step_size, cone_angle, max_samples)
    return march_rays_ref(origins, directions, t_min, t_max, grid, aabb, step_size, cone_angle,
                          max_samples)


def _check_rays(origins: Tensor, directions: Tensor) -> None:
    if origins.ndim != 2 or origins.shape[-1] != 3 or directions.shape != origins.shape:
        raise ValueError(f"expected origins and directions of shape (R, 3), got {tuple(origins.shape)} "
                         f"and {tuple(directions.shape)}")


__all__ = ["grid_lookup", "march_rays", "march_rays_ref", "ray_aabb_intersect", "ray_aabb_intersect_ref"]

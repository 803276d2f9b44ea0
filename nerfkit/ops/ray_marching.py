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

import math

import torch
from torch import Tensor

from nerfkit.ops._backend import use_native


def ray_aabb_intersect_ref(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Pure-PyTorch twin of :func:`ray_aabb_intersect`."""
    inv = 1.0 / torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    t_far = torch.maximum(t0, t1).amin(-1)
    miss = t_far <= t_near
    t_near = torch.where(miss, torch.full_like(t_near, math.inf), t_near)
    t_far = torch.where(miss, torch.full_like(t_far, math.inf), t_far)
    return t_near, t_far


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


def grid_lookup(points: Tensor, grid: Tensor, aabb: Tensor) -> Tensor:
    """Occupancy of points in a multi-cascade grid: (P, 3) -> (P,) bool (False outside all cascades).

    Args:
        grid: (C, G, G, G) bool, indexed [cascade, x, y, z].
        aabb: (2, 3) box of cascade 0.
    """
    n_cascades, res = grid.shape[0], grid.shape[1]
    centre = (aabb[0] + aabb[1]) * 0.5
    half = (aabb[1] - aabb[0]) * 0.5
    rel = (points - centre) / half                                  # cascade 0 is [-1, 1]^3
    extent = rel.abs().amax(-1).clamp(min=1e-12)
    cascade = torch.ceil(torch.log2(extent)).clamp(min=0).long()
    inside = cascade < n_cascades
    cascade = cascade.clamp(max=n_cascades - 1)
    scale = torch.exp2(cascade.to(points.dtype)).unsqueeze(-1)
    cell = ((rel / scale * 0.5 + 0.5) * res).floor().long().clamp(0, res - 1)
    flat = ((cascade * res + cell[:, 0]) * res + cell[:, 1]) * res + cell[:, 2]
    return grid.reshape(-1)[flat] & inside


def march_rays_ref(origins: Tensor, directions: Tensor, t_min: Tensor, t_max: Tensor, grid: Tensor,
                   aabb: Tensor, step_size: float, cone_angle: float, max_samples: int
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Pure-PyTorch twin of :func:`march_rays`: all candidate steps at once, then compaction."""
    device = origins.device
    n_rays = origins.shape[0]
    empty = (torch.zeros(0, dtype=torch.int64, device=device), torch.zeros(0, device=device),
             torch.zeros(0, device=device))
    live = torch.isfinite(t_min) & torch.isfinite(t_max) & (t_max > t_min)
    if n_rays == 0 or not bool(live.any()):
        return empty
    t_lo = torch.where(live, t_min, torch.zeros_like(t_min))
    t_hi = torch.where(live, t_max, torch.zeros_like(t_max))
    starts, widths = _candidate_steps(t_lo, t_hi, step_size, cone_angle, max_samples)   # (R, M)
    mids = starts + 0.5 * widths
    valid = (mids < t_hi.unsqueeze(-1)) & live.unsqueeze(-1)
    rows, cols = valid.nonzero(as_tuple=True)
    points = origins[rows] + directions[rows] * mids[rows, cols].unsqueeze(-1)
    occupied = grid_lookup(points, grid, aabb)
    rows, cols = rows[occupied], cols[occupied]
    if max_samples > 0 and rows.numel() > 0:
        counts = torch.bincount(rows, minlength=n_rays)
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(rows.numel(), device=device) - first[rows]
        keep = rank < max_samples
        rows, cols = rows[keep], cols[keep]
    t_starts = starts[rows, cols]
    t_ends = torch.minimum(t_starts + widths[rows, cols], t_hi[rows])
    return rows, t_starts.contiguous(), t_ends.contiguous()


def _candidate_steps(t_lo: Tensor, t_hi: Tensor, step_size: float, cone_angle: float,
                     max_steps: int) -> tuple[Tensor, Tensor]:
    """Step starts and widths, (R, M), covering [t_lo, t_hi] (M bounded by the longest ray)."""
    if cone_angle <= 0.0:
        longest = float((t_hi - t_lo).max())
        m = max(1, min(int(math.ceil(longest / step_size)), 1 << 16))
        k = torch.arange(m, device=t_lo.device, dtype=t_lo.dtype)
        starts = t_lo.unsqueeze(-1) + k * step_size
        return starts, torch.full_like(starts, step_size)
    columns, t = [], t_lo.clone()
    widths = []
    for _ in range(1 << 16):
        dt = (t * cone_angle).clamp(min=step_size)
        columns.append(t)
        widths.append(dt)
        t = t + dt
        if not bool((t < t_hi).any()):
            break
    return torch.stack(columns, -1), torch.stack(widths, -1)


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

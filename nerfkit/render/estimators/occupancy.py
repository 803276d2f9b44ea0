"""Occupancy-grid estimator (instant-ngp's accelerated ray marching), field-agnostic.

Two verbs, like nerfacc's estimators: :meth:`OccupancyGrid.update` refreshes the grid from a density
callback every few steps, and :meth:`OccupancyGrid.sample` marches rays through occupied cells and,
given a density callback, drops samples hidden behind opaque ones (early ray termination).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from nerfkit.ops import march_rays, ray_aabb_intersect, render_weights

DensityFn = Callable[[Tensor], Tensor]              # (P, 3) points -> (P,) density
SampleDensityFn = Callable[[Tensor, Tensor, Tensor], Tensor]   # (t_starts, t_ends, ray_indices) -> (S,)


class OccupancyGrid(nn.Module):
    """A (C, G, G, G) binary grid with an EMA of density per cell.

    Args:
        aabb: (2, 3) box of cascade 0; cascade c covers it scaled by 2**c about its centre.
        resolution: G, cells per axis; cascades: C.
    """

    def __init__(self, aabb: Tensor, resolution: int = 64, cascades: int = 1) -> None:
        super().__init__()
        self.resolution, self.cascades = resolution, cascades
        self.register_buffer("aabb", aabb.clone().float())
        self.register_buffer("density", torch.zeros(cascades, resolution ** 3))
        self.register_buffer("binary", torch.ones(cascades, resolution, resolution, resolution,
                                                  dtype=torch.bool))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    @property
    def outer_aabb(self) -> Tensor:
        """(2, 3) box of the outermost cascade."""
        centre = (self.aabb[0] + self.aabb[1]) * 0.5
        half = (self.aabb[1] - self.aabb[0]) * 0.5 * 2 ** (self.cascades - 1)
        return torch.stack([centre - half, centre + half])

    def cell_centres(self, cells: Tensor, cascade: Tensor, jitter: bool) -> Tensor:
        """(P,) flat cell indices of cascades (P,) -> (P, 3) points (uniformly jittered in the cell)."""
        g = self.resolution
        ijk = torch.stack([cells // (g * g), (cells // g) % g, cells % g], -1).float()
        offset = torch.rand_like(ijk) if jitter else torch.full_like(ijk, 0.5)
        unit = (ijk + offset) / g * 2.0 - 1.0                      # [-1, 1] in the cascade's box
        centre = (self.aabb[0] + self.aabb[1]) * 0.5
        half = (self.aabb[1] - self.aabb[0]) * 0.5
        return centre + unit * half * torch.exp2(cascade.float()).unsqueeze(-1)

    @torch.no_grad()
    def update(self, density_fn: DensityFn, step_size: float, threshold: float = 0.01,
               ema: float = 0.95, full: bool = False, chunk: int = 1 << 16) -> None:
        """Refresh cells: all of them when ``full``, else a random quarter plus a quarter of the occupied.

        A cell is occupied when its EMA of ``density * step_size`` exceeds ``min(threshold, mean)``.
        """
        n_cells = self.resolution ** 3
        for c in range(self.cascades):
            if full:
                cells = torch.arange(n_cells, device=self.density.device)
            else:
                uniform = torch.randint(0, n_cells, (n_cells // 4,), device=self.density.device)
                occupied = self.binary[c].reshape(-1).nonzero().squeeze(-1)
                if occupied.numel() > 0:
                    pick = torch.randint(0, occupied.numel(), (n_cells // 4,), device=occupied.device)
                    uniform = torch.cat([uniform, occupied[pick]])
                cells = uniform.unique()
            cascade = torch.full_like(cells, c)
            values = torch.cat([density_fn(self.cell_centres(part, cascade[:part.numel()], jitter=True))
                                for part in cells.split(chunk)])
            current = self.density[c]
            current[cells] = torch.maximum(current[cells] * ema, values * step_size)
        mean = self.density.clamp(min=0).mean()
        self.binary = (self.density > torch.clamp(mean, max=threshold)).view_as(self.binary)
        self.updates += 1

    @torch.no_grad()
    def sample(self, origins: Tensor, directions: Tensor, near: float, step_size: float,
               cone_angle: float = 0.0, max_samples: int = 1024,
               density_fn: SampleDensityFn | None = None, early_stop_eps: float = 1e-4
               ) -> tuple[Tensor, Tensor, Tensor]:
        """March rays through occupied cells.

        Args:
            origins, directions: (R, 3), directions unit length.
            near: minimum distance along each ray.
            density_fn: optional density of packed samples; when given, samples whose
                transmittance has fallen below ``early_stop_eps`` are dropped.
        Returns:
            ray_indices (S,), t_starts (S,), t_ends (S,) sorted by ray.
        """
        t_near, t_far = ray_aabb_intersect(origins, directions, self.outer_aabb)
        t_near = t_near.clamp(min=near)
        ray_indices, t_starts, t_ends = march_rays(origins, directions, t_near, t_far, self.binary,
                                                   self.aabb, step_size, cone_angle, max_samples)
        if density_fn is None or ray_indices.numel() == 0:
            return ray_indices, t_starts, t_ends
        sigmas = density_fn(t_starts, t_ends, ray_indices)
        _, transmittance = render_weights(sigmas, t_starts, t_ends, ray_indices, origins.shape[0])
        keep = transmittance >= early_stop_eps
        return ray_indices[keep], t_starts[keep], t_ends[keep]

    def occupancy_fraction(self) -> float:
        return float(self.binary.float().mean())


def adapt_ray_count(rays: float, samples: int, target_samples: int, max_rays: int) -> float:
    """The next batch's ray count, steered so that a batch holds about ``target_samples`` samples.

    Moves 30 % of the way (in log space) from ``rays`` to the count that the last batch's samples
    per ray would need; kept within [256, max_rays].
    """
    per_ray = max(samples, 1) / max(rays, 1.0)
    wanted = target_samples / per_ray
    rays = math.exp(0.7 * math.log(max(rays, 1.0)) + 0.3 * math.log(max(wanted, 1.0)))
    return min(max(rays, 256.0), float(max_rays))

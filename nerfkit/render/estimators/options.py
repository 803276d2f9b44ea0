"""Options of the occupancy-grid estimator, shared by ngp and mipnerf (plain settings, no torch).

The names are the flat keys of presets and ``--set`` (see :mod:`nerfkit.core.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings, auto_field, is_auto


@dataclass
class OccupancyOptions(Settings):
    """instant-ngp's accelerated ray marching: an occupancy grid refreshed from the field, rays
    marched through its occupied cells, and a ray count that adapts to a sample budget.

    Attributes:
        grid_resolution: cells per axis and cascade.
        grid_cascades: cascades (each twice the size of the last); ``auto``: 1 for objects, 4 for
            unbounded scenes.
        grid_update_every, grid_warmup_steps: refresh the grid every this many steps; refresh
            every cell (not a sample of them) before ``grid_warmup_steps``.
        grid_ema, grid_threshold: decay of each cell's density, and the occupancy threshold on
            ``density * step_size``.
        steps_per_diagonal: the marching step is the box diagonal / this.
        cone_angle: step growth with distance; ``auto``: 0 for objects, 1/256 for unbounded scenes.
        max_samples_per_ray: samples kept per ray (the nearest ones).
        early_stop_eps: drop samples behind transmittance below this (0 = keep all).
        target_samples, max_rays: the ray count adapts so a batch holds about ``target_samples``
            samples, with at most ``max_rays`` rays.
    """

    grid_resolution: int = 64
    grid_cascades: int | Literal["auto"] = auto_field(legacy=0)
    grid_update_every: int = 16
    grid_warmup_steps: int = 256
    grid_ema: float = 0.95
    grid_threshold: float = 0.01
    steps_per_diagonal: int = 512
    cone_angle: float | Literal["auto"] = auto_field(legacy=-1.0)
    max_samples_per_ray: int = 1024
    early_stop_eps: float = 1e-4
    target_samples: int = 1 << 16
    max_rays: int = 1 << 15

    def validate(self) -> None:
        if min(self.grid_resolution, self.grid_update_every, self.steps_per_diagonal, self.target_samples,
               self.max_rays) < 1:
            raise NerfkitError("grid_resolution, grid_update_every, steps_per_diagonal, target_samples and "
                               "max_rays must be at least 1")
        if not is_auto(self.grid_cascades) and self.grid_cascades < 1:
            raise NerfkitError(f"grid_cascades must be auto or at least 1, got {self.grid_cascades}")
        if not is_auto(self.cone_angle) and self.cone_angle < 0:
            raise NerfkitError(f"cone_angle must be auto or >= 0, got {self.cone_angle}")

    def cascades(self, unbounded: bool) -> int:
        """The cascade count: as set, or 4 for unbounded scenes and 1 for objects."""
        return (4 if unbounded else 1) if is_auto(self.grid_cascades) else int(self.grid_cascades)

    def cone(self, unbounded: bool) -> float:
        """The cone angle: as set, or 1/256 for unbounded scenes and 0 for objects."""
        return (1.0 / 256.0 if unbounded else 0.0) if is_auto(self.cone_angle) else float(self.cone_angle)


@dataclass
class ProposalOptions(Settings):
    """Mip-NeRF 360's proposal sampling (:mod:`nerfkit.render.estimators.proposal`), shared by
    mipnerf and ngp: ``proposal_levels`` small density fields, each shaded on
    ``proposal_samples`` intervals per ray and resampled level by level, then ``nerf_samples``
    intervals of the method's field; the interlevel and distortion losses at these weights.

    ``proposal_n_levels``, ``proposal_log2_table_size``, ``proposal_max_resolution``: the hash grid of
    a proposal field (the method's own grid with these sizes).
    """

    proposal_levels: int = 2
    proposal_samples: int = 64
    nerf_samples: int = 32
    interlevel_weight: float = 1.0
    distortion_weight: float = 0.01
    proposal_n_levels: int = 5
    proposal_log2_table_size: int = 17
    proposal_max_resolution: int = 128

    def validate(self) -> None:
        if min(self.proposal_samples, self.nerf_samples) < 1:
            raise NerfkitError(f"proposal_samples and nerf_samples must be at least 1, got "
                               f"{self.proposal_samples} and {self.nerf_samples}")
        if self.proposal_levels < 1:
            raise NerfkitError(f"proposal_levels must be at least 1, got {self.proposal_levels}")
        if min(self.proposal_n_levels, self.proposal_log2_table_size, self.proposal_max_resolution) < 1:
            raise NerfkitError("proposal_n_levels, proposal_log2_table_size and proposal_max_resolution "
                               "must be at least 1")

"""Settings of the ``splat`` method (:mod:`nerfkit.methods.splat`) and its step schedules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings, apply_overrides, auto_field, flat_dict, is_auto
from nerfkit.methods.strategies.options import DefaultStrategyOptions, MCMCOptions, RefineOptions
from nerfkit.render.appearance_options import AppearanceOptions

SPLAT_SCHEDULES: dict[str, dict[str, int]] = {
    "3dgs": {"sh_degree_interval": 1000, "init_points": 100_000, "refine_start": 500, "refine_stop": 15_000,
             "refine_every": 100, "reset_every": 3000},
    "short": {"sh_degree_interval": 100, "init_points": 20_000, "refine_start": 100, "refine_stop": 2000,
              "refine_every": 50, "reset_every": -1},
}
"""The values of the ``auto`` step counts per schedule: ``3dgs`` is the paper's 30k-step schedule (a
GPU does ~30k steps in minutes); ``short`` fits the ~1-2k steps a CPU does in ten minutes (SH degree
up every 100 steps, densify every 50 from step 100 to 2000, no opacity reset, 20k initial Gaussians)."""


@dataclass
class SplatConfig(Settings):
    """3D Gaussian splatting (Kerbl et al. 2023) hyper-parameters; 3DGS/gsplat defaults.

    Learning rates of the means are multiplied by the scene extent (1.1 x the largest camera
    distance from the cameras' centroid), as in 3DGS. Step counts are optimizer steps; the ones
    marked ``auto`` come from ``schedule`` (:data:`SPLAT_SCHEDULES`; ``auto``: ``3dgs`` on CUDA,
    ``short`` elsewhere) when the config is resolved for a device.

    Attributes:
        sh_degree: highest SH degree (0..3), reached by raising it by one every
            ``sh_degree_interval`` steps.
        init_points: Gaussians to start with without sparse points; ``init_from_views`` starts them
            where the views see (the alpha masks' visual hull for RGBA images), coloured from the
            images, else randomly in the box.
        init_opacity, init_scale: starting opacity, and std-dev = ``init_scale`` x mean distance to
            the 3 nearest points.
        means_lr, means_lr_final: x scene extent; decays exponentially over the run.
        ssim_lambda: loss = (1 - l) L1 + l (1 - SSIM).
        rasterize_mode: ``antialiased`` = Mip-Splatting's 2D filter (as gsplat).
        eps2d: screen-space dilation in pixels^2; near: near plane in scene units.
        backend: ``auto`` (gsplat on CUDA when importable), ``nerfkit`` or ``gsplat``.
        strategy: ``default`` (3DGS adaptive density control, ``default_strategy``) or ``mcmc``
            (``mcmc``); both use ``refine``.
        depth_normal_weight, depth_distortion_weight: the 2DGS-style geometry regularisers
            (:mod:`nerfkit.render.splat_geometry`), 0 = off (the default), from ``geometry_start``
            (a fraction of training) on.
        image_appearance: the per-image colour correction (``appearance``, ``appearance_lr``;
            :mod:`nerfkit.render.appearance`).
    """

    schedule: Literal["auto", "3dgs", "short"] = "auto"
    sh_degree: int = 3
    sh_degree_interval: int | Literal["auto"] = auto_field()
    init_points: int | Literal["auto"] = auto_field()
    init_from_views: bool = True
    init_opacity: float = 0.1
    init_scale: float = 1.0
    means_lr: float = 1.6e-4
    means_lr_final: float = 1.6e-6
    scales_lr: float = 5e-3
    quats_lr: float = 1e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    ssim_lambda: float = 0.2
    rasterize_mode: Literal["classic", "antialiased"] = "classic"
    eps2d: float = 0.3
    near: float = 0.01
    train_background: Literal["random", "white", "black"] = "random"
    backend: Literal["auto", "nerfkit", "gsplat"] = "auto"
    strategy: Literal["default", "mcmc"] = "default"
    depth_normal_weight: float = 0.0
    depth_distortion_weight: float = 0.0
    geometry_start: float = 0.3
    refine: RefineOptions = field(default_factory=RefineOptions)
    default_strategy: DefaultStrategyOptions = field(default_factory=DefaultStrategyOptions)
    mcmc: MCMCOptions = field(default_factory=MCMCOptions)
    image_appearance: AppearanceOptions = field(default_factory=AppearanceOptions)

    def validate(self) -> None:
        if not 0 <= self.sh_degree <= 3:
            raise NerfkitError(f"splat sh_degree must be 0..3, got {self.sh_degree}")
        if min(self.depth_normal_weight, self.depth_distortion_weight) < 0 or not 0 <= self.geometry_start <= 1:
            raise NerfkitError("splat depth_normal_weight and depth_distortion_weight must be >= 0 and "
                               f"geometry_start in [0, 1], got {self.depth_normal_weight}, "
                               f"{self.depth_distortion_weight}, {self.geometry_start}")
        for name in ("sh_degree_interval", "init_points"):
            value = getattr(self, name)
            if not is_auto(value) and value < 1:
                raise NerfkitError(f"splat {name} must be auto or at least 1, got {value}")

    def resolve(self, device_type: str) -> "SplatConfig":
        """A copy with every ``auto`` step count filled in from the schedule for ``device_type``."""
        name = self.schedule if self.schedule != "auto" else ("3dgs" if device_type == "cuda" else "short")
        current = flat_dict(self)
        values = {key: value for key, value in SPLAT_SCHEDULES[name].items() if is_auto(current[key])}
        return apply_overrides(self, {"schedule": name, **values}, "splat schedule")

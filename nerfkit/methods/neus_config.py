"""Settings of the ``neus`` method (:mod:`nerfkit.methods.neus`) and its device profiles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings, apply_overrides, left_at_defaults
from nerfkit.fields.options import HashGridOptions, SDFNetworkOptions
from nerfkit.render.appearance_options import AppearanceOptions
from nerfkit.render.estimators.options import OccupancyOptions

NEUS_PROFILES: dict[str, dict[str, int | float]] = {
    "gpu": {"log2_table_size": 19, "max_resolution": 2048, "target_samples": 1 << 18, "max_rays": 1 << 14,
            "steps_per_diagonal": 1024, "grid_resolution": 128, "initial_rays": 2048},
}
"""On CUDA (``profile: auto``) these replace the CPU defaults that were not changed: NeuS2 /
instant-nsr-pl's hash grid (2^19 entries, finest resolution 2048) and sample budget."""


@dataclass
class NeuSConfig(Settings):
    """A hash-grid NeuS (Wang et al. 2021; Wang et al. 2023, NeuS2; instant-nsr-pl) hyper-parameters.

    The defaults are for a CPU (a usable surface in minutes); on CUDA ``profile: auto`` takes
    :data:`NEUS_PROFILES`' ``gpu`` values for the settings left at their defaults.

    Attributes:
        hash_grid, network: the SDF field (:class:`~nerfkit.fields.sdf_field.SDFField`).
        occupancy: the occupancy grid (from the SDF: cells within ``occupancy_margin`` voxels of
            the surface are occupied) and the sample budget per batch.
        init_variance: the sharpness starts at ``s = exp(10 init_variance)`` (NeuS: 0.3, s = 20).
        eikonal_weight: weight of ``mean((|grad f| - 1)^2)`` over the ray samples (NeuS: 0.1).
        curvature_weight: weight of the mean |Laplacian| of the SDF by finite differences of the
            normals (Neuralangelo's smoothness term; 0 = off).
        cos_anneal_fraction: the directional slope anneals over this fraction of training.
        start_levels, level_steps_fraction: coarse-to-fine: the coarsest ``start_levels`` hash
            levels at first, all of them after ``level_steps_fraction`` of training.
        background: ``auto`` (a NeRF++-style ngp field on contracted space outside the box for
            unbounded scenes, none for objects), ``field`` or ``none``; ``background_samples``
            samples per ray out there.
        lr, lr_warmup_steps, lr_final_factor: Adam's learning rate, linear warm-up, then
            exponential decay to ``lr * lr_final_factor``; ``variance_lr`` for the sharpness.
        image_appearance: the per-image colour correction (``appearance``, ``appearance_lr``;
            :mod:`nerfkit.render.appearance`).
    """

    profile: Literal["auto", "cpu", "gpu"] = "auto"
    hash_grid: HashGridOptions = field(default_factory=lambda: HashGridOptions(
        n_levels=16, log2_table_size=17, base_resolution=16, max_resolution=512))
    network: SDFNetworkOptions = field(default_factory=SDFNetworkOptions)
    occupancy: OccupancyOptions = field(default_factory=lambda: OccupancyOptions(
        grid_resolution=64, steps_per_diagonal=384, target_samples=1 << 14, max_rays=1 << 13,
        early_stop_eps=0.0))
    occupancy_margin: float = 1.5
    initial_rays: int = 512
    near: float = 0.05
    init_variance: float = 0.3
    eikonal_weight: float = 0.1
    curvature_weight: float = 0.0
    cos_anneal_fraction: float = 0.2
    start_levels: int = 4
    level_steps_fraction: float = 0.5
    background: Literal["auto", "field", "none"] = "auto"
    background_samples: int = 32
    background_far: float = 1000.0
    lr: float = 1e-2
    variance_lr: float = 1e-3
    lr_warmup_steps: int = 100
    lr_final_factor: float = 0.1
    weight_decay: float = 1e-6
    train_background: Literal["random", "white", "black"] = "random"
    render_chunk: int = 4096
    image_appearance: AppearanceOptions = field(default_factory=AppearanceOptions.for_rays)

    def validate(self) -> None:
        if not 1 <= self.start_levels:
            raise NerfkitError(f"neus start_levels must be at least 1, got {self.start_levels}")
        if not 0.0 < self.cos_anneal_fraction <= 1.0 or not 0.0 < self.level_steps_fraction <= 1.0:
            raise NerfkitError("neus cos_anneal_fraction and level_steps_fraction must be in (0, 1]")
        if min(self.eikonal_weight, self.curvature_weight, self.occupancy_margin) < 0:
            raise NerfkitError("neus eikonal_weight, curvature_weight and occupancy_margin must be >= 0")
        if min(self.background_samples, self.initial_rays, self.render_chunk) < 1:
            raise NerfkitError("neus background_samples, initial_rays and render_chunk must be at least 1")

    def resolve(self, device_type: str) -> "NeuSConfig":
        """The GPU profile on CUDA (``profile: auto``) for the settings still at their CPU defaults."""
        name = self.profile if self.profile != "auto" else ("gpu" if device_type == "cuda" else "cpu")
        if name == "cpu":
            return apply_overrides(self, {"profile": "cpu"}, "neus profile")
        values = left_at_defaults(self, NEUS_PROFILES["gpu"])
        return apply_overrides(self, {"profile": "gpu", **values}, "neus profile")

"""Settings of the ``ngp`` method (:mod:`nerfkit.methods.ngp`): CPU-friendly defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings, apply_overrides, auto_field, is_auto, left_at_defaults
from nerfkit.fields.options import FieldHeadOptions, HashGridOptions
from nerfkit.render.appearance_options import AppearanceOptions
from nerfkit.render.estimators.options import OccupancyOptions, ProposalOptions


UNBOUNDED_PROPOSAL: dict[str, int | float | str] = {
    "log2_table_size": 18, "max_resolution": 2048, "lr_warmup_steps": 20, "weight_decay": 0.0,
    "lr_decay": "log_linear"}
"""What ``sampler: auto`` also sets on an unbounded scene (for the settings left at their defaults)."""


@dataclass
class NGPConfig(Settings):
    """Instant-NGP (Mueller et al. 2022) hyper-parameters.

    ``sampler`` (the estimator; nerfacc offers both for this field): ``occupancy`` is instant-ngp's:
    rays marched through an occupancy grid of the field's density, empty space skipped, a ray count
    that adapts to a sample budget. ``proposal`` is Mip-NeRF 360's (nerfacto's): two small hash-grid
    density fields pick ``nerf_samples`` (32) samples per ray of the field, trained with the
    interlevel and distortion losses, a fixed ``initial_rays`` per batch. ``auto`` (the default):
    occupancy on objects; on unbounded captures proposals with :data:`UNBOUNDED_PROPOSAL` (a 2^18
    table to 2048 cells, a 20-step warm-up, a log-linear decay to 0.1 x, no weight decay). On 2 CPU
    cores in 600 s that took dtu-scan65 at 1/4 size from 22.2 dB (occupancy: the grid stays half
    full, ~290 samples per ray) and room-a from 30.1 dB to the figures in BENCHMARKS.md; proposals
    with the object settings had lost 10.8 dB on room-a. Runs saved before ``auto`` existed were
    occupancy runs and load as such.

    Attributes:
        hash_grid, heads: the field (:class:`~nerfkit.fields.ngp_field.NGPField`).
        sampler: ``auto``, ``occupancy`` or ``proposal`` (above).
        occupancy: the occupancy-grid estimator and the adaptive ray count.
        proposal: the proposal estimator (its fields are hash grids of ``proposal_*`` sizes).
        lr, lr_warmup_steps: Adam's learning rate, reached linearly over the warm-up.
        lr_decay, lr_final_factor: then ``steps`` (x0.33 at 50 %, 75 % and 90 % of training,
            instant-ngp's) or ``log_linear`` (down to ``lr * lr_final_factor`` at the end).
        weight_decay: on the MLPs only.
        initial_rays: rays of the first batch (occupancy: the count then adapts to
            ``target_samples``; proposal: of every batch).
        near: scene units in front of each camera that are never sampled.
        far: the proposal sampler's farthest distance on unbounded scenes (scene units).
        train_background: behind RGBA training images: ``random`` per ray, ``white`` or ``black``.
        render_chunk: rays per chunk when rendering images.
        max_points_per_query: field queries per chunk without gradients (bounds render memory).
        image_appearance: the per-image colour correction (``appearance``, ``appearance_lr``;
            :mod:`nerfkit.render.appearance`).
    """

    hash_grid: HashGridOptions = field(default_factory=HashGridOptions)
    heads: FieldHeadOptions = field(default_factory=FieldHeadOptions)
    sampler: Literal["auto", "occupancy", "proposal"] = auto_field(absent="occupancy")
    occupancy: OccupancyOptions = field(default_factory=OccupancyOptions)
    proposal: ProposalOptions = field(default_factory=ProposalOptions)
    lr: float = 1e-2
    lr_warmup_steps: int = 100
    lr_decay: Literal["steps", "log_linear"] = "steps"
    lr_final_factor: float = 0.1
    weight_decay: float = 1e-6
    initial_rays: int = 1024
    near: float = 0.05
    far: float = 1000.0
    train_background: Literal["random", "white", "black"] = "random"
    render_chunk: int = 1 << 14
    max_points_per_query: int = 1 << 18
    image_appearance: AppearanceOptions = field(default_factory=AppearanceOptions.for_rays)

    def validate(self) -> None:
        if not 0 < self.near < self.far:
            raise NerfkitError(f"ngp needs 0 < near < far, got near={self.near}, far={self.far}")
        if not 0 < self.lr_final_factor <= 1:
            raise NerfkitError(f"lr_final_factor must be in (0, 1], got {self.lr_final_factor}")

    def resolve_scene(self, unbounded: bool) -> "NGPConfig":
        """``sampler: auto`` decided for the scene's kind, with :data:`UNBOUNDED_PROPOSAL` on
        unbounded scenes for the settings a user or preset left at their defaults."""
        if not is_auto(self.sampler):
            return self
        if not unbounded:
            return apply_overrides(self, {"sampler": "occupancy"}, "ngp sampler")
        return apply_overrides(self, {"sampler": "proposal", **left_at_defaults(self, UNBOUNDED_PROPOSAL)},
                               "ngp sampler")

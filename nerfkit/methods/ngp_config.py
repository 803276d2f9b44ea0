"""Settings of the ``ngp`` method (:mod:`nerfkit.methods.ngp`): CPU-friendly defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings
from nerfkit.fields.options import FieldHeadOptions, HashGridOptions
from nerfkit.render.appearance_options import AppearanceOptions
from nerfkit.render.estimators.options import OccupancyOptions, ProposalOptions


@dataclass
class NGPConfig(Settings):
    """Instant-NGP (Mueller et al. 2022) hyper-parameters.

    ``sampler`` (the estimator; nerfacc offers both for this field): ``occupancy`` (the default) is
    instant-ngp's: rays marched through an occupancy grid of the field's density, empty space
    skipped, a ray count that adapts to a sample budget. ``proposal`` is Mip-NeRF 360's: two small
    hash-grid density fields pick ``nerf_samples`` (32) samples per ray of the field, trained with
    the interlevel and distortion losses, a fixed ``initial_rays`` per batch. On 2 CPU cores in
    600 s, proposals help a capture seen from outside and hurt one seen from inside: dtu-scan65 at
    1/4 size (the grid stays half full, ~290 samples per ray) 22.22 -> 23.96 dB at 5x the rays/s,
    room-a (a room, cameras inside) 30.13 -> 19.29 dB (BENCHMARKS.md), so the grid stays the default.

    Attributes:
        hash_grid, heads: the field (:class:`~nerfkit.fields.ngp_field.NGPField`).
        sampler: ``occupancy`` or ``proposal`` (above).
        occupancy: the occupancy-grid estimator and the adaptive ray count.
        proposal: the proposal estimator (its fields are hash grids of ``proposal_*`` sizes).
        lr, lr_warmup_steps: Adam's learning rate, reached linearly over the warm-up; then x0.33
            at 50 %, 75 % and 90 % of training.
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
    sampler: Literal["occupancy", "proposal"] = "occupancy"
    occupancy: OccupancyOptions = field(default_factory=OccupancyOptions)
    proposal: ProposalOptions = field(default_factory=ProposalOptions)
    lr: float = 1e-2
    lr_warmup_steps: int = 100
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

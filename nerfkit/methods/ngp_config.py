"""Settings of the ``ngp`` method (:mod:`nerfkit.methods.ngp`): CPU-friendly defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nerfkit.core.settings import Settings
from nerfkit.fields.options import FieldHeadOptions, HashGridOptions
from nerfkit.render.appearance_options import AppearanceOptions
from nerfkit.render.estimators.options import OccupancyOptions


@dataclass
class NGPConfig(Settings):
    """Instant-NGP (Mueller et al. 2022) hyper-parameters.

    Attributes:
        hash_grid, heads: the field (:class:`~nerfkit.fields.ngp_field.NGPField`).
        occupancy: the occupancy-grid estimator and the adaptive ray count.
        lr, lr_warmup_steps: Adam's learning rate, reached linearly over the warm-up; then x0.33
            at 50 %, 75 % and 90 % of training.
        weight_decay: on the MLPs only.
        initial_rays: rays of the first batch (the count then adapts to ``target_samples``).
        near: scene units in front of each camera that are never sampled.
        train_background: behind RGBA training images: ``random`` per ray, ``white`` or ``black``.
        render_chunk: rays per chunk when rendering images.
        max_points_per_query: field queries per chunk without gradients (bounds render memory).
        image_appearance: the per-image colour correction (``appearance``, ``appearance_lr``;
            :mod:`nerfkit.render.appearance`).
    """

    hash_grid: HashGridOptions = field(default_factory=HashGridOptions)
    heads: FieldHeadOptions = field(default_factory=FieldHeadOptions)
    occupancy: OccupancyOptions = field(default_factory=OccupancyOptions)
    lr: float = 1e-2
    lr_warmup_steps: int = 100
    weight_decay: float = 1e-6
    initial_rays: int = 1024
    near: float = 0.05
    train_background: Literal["random", "white", "black"] = "random"
    render_chunk: int = 1 << 14
    max_points_per_query: int = 1 << 18
    image_appearance: AppearanceOptions = field(default_factory=AppearanceOptions.for_rays)

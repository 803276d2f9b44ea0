"""Settings of the ``mipnerf`` method (:mod:`nerfkit.methods.mipnerf`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings, apply_overrides, auto_field, is_auto, left_at_defaults
from nerfkit.fields.options import FieldHeadOptions, HashGridOptions, MipMLPOptions
from nerfkit.render.appearance_options import AppearanceOptions
from nerfkit.render.estimators.options import OccupancyOptions, ProposalOptions


UNBOUNDED_HASH: dict[str, int | float] = {"log2_table_size": 18, "max_resolution": 2048, "lr_final_factor": 0.1}
"""When ``sampler: auto`` gives the hash field an unbounded scene (the CPU default on a COLMAP
capture), these replace the settings left at their defaults (``--config mipnerf-hash-360``'s
values): on dtu-scan65 at 1/4 size, 300 s on 2 CPU cores, 24.82 dB with them, 18.96 dB without."""


@dataclass
class MipNeRFConfig(Settings):
    """Mip-NeRF (Barron et al. 2021) and Mip-NeRF 360 (Barron et al. 2022) hyper-parameters.

    ``sampler`` (the estimator): ``coarse_to_fine`` is Mip-NeRF (one field queried on stratified
    frusta, then on frusta resampled from its blurred weights); ``proposal`` is Mip-NeRF 360 (small
    proposal fields trained with the interlevel loss pick the frusta of the field, plus the
    distortion loss); ``occupancy`` marches rays through instant-ngp's occupancy grid (as ngp does)
    and shades one frustum per marching step, the fast choice for the hash backbone on objects;
    ``auto`` is decided when a run starts (and recorded): proposals for unbounded scenes; for
    objects, coarse-to-fine with the MLP field and occupancy with the hash field (on object-a in
    300 s on 2 CPU cores: 23.1 dB coarse-to-fine, 1,613 rays/s). A run from before that rule that
    recorded ``auto`` keeps coarse-to-fine for objects.

    ``backbone``: ``mlp`` is the papers' field (integrated positional encoding + MLP, ``mlp``
    options); ``hash`` is a Zip-NeRF-style hash grid (``hash_grid``, ``heads``) queried at the
    frustum's mean, each level's features weighted by erf(1 / sqrt(8 sigma^2 n^2)) for a frustum of
    radial std sigma and a level of n cells per unit, so levels finer than the pixel footprint fade
    out (much faster on a CPU). ``auto`` (the default) is decided by the device when a run starts:
    ``hash`` on a CPU (the MLP field makes ~0.1 steps/s on 2 cores and shows a blank image after
    300 s), ``mlp`` on CUDA; ``config.yaml`` records the choice.

    Attributes:
        rays_per_batch: rays per step (the papers use 4096 / 16384; occupancy: the first batch's).
        near, far: sample distances in scene units (objects: the box clips the rays further).
        coarse_samples, fine_samples, coarse_loss_weight, resample_padding: Mip-NeRF's two passes.
        proposal: Mip-NeRF 360's proposal sampling (``proposal_levels``, ``proposal_samples``,
            ``nerf_samples``, the loss weights and the proposal hash grid's sizes;
            :class:`~nerfkit.render.estimators.options.ProposalOptions`); ``proposal_backbone``,
            ``proposal_mlp_depth``, ``proposal_mlp_width``: the proposal fields' backbone.
        lr: Adam's learning rate; ``auto``: 5e-4 for the MLP backbone (the paper), 1e-2 for hash.
            Warm-up over ``lr_warmup_steps``, then log-linear decay to ``lr * lr_final_factor``.
        weight_decay: on the MLPs only.
        image_appearance: the per-image colour correction (``appearance``, ``appearance_lr``;
            :mod:`nerfkit.render.appearance`).
    """

    backbone: Literal["auto", "mlp", "hash"] = "auto"
    sampler: Literal["auto", "coarse_to_fine", "proposal", "occupancy"] = "auto"
    rays_per_batch: int = 1024
    near: float = 0.05
    far: float = 1000.0
    # Mip-NeRF: coarse to fine with one field queried twice
    coarse_samples: int = 128
    fine_samples: int = 128
    coarse_loss_weight: float = 0.1
    resample_padding: float = 0.01
    # Mip-NeRF 360: proposal sampling (shared with ngp), the proposal fields' backbone
    proposal: ProposalOptions = field(default_factory=ProposalOptions)
    proposal_backbone: Literal["hash", "mlp"] = "hash"
    proposal_mlp_depth: int = 4
    proposal_mlp_width: int = 256
    # occupancy: instant-ngp's grid (shared with ngp), frusta of one marching step each
    occupancy: OccupancyOptions = field(default_factory=OccupancyOptions)
    # the fields
    mlp: MipMLPOptions = field(default_factory=MipMLPOptions)
    hash_grid: HashGridOptions = field(default_factory=lambda: HashGridOptions(max_resolution=1024))
    heads: FieldHeadOptions = field(default_factory=FieldHeadOptions)
    # optimisation
    lr: float | Literal["auto"] = auto_field(legacy=0.0)
    lr_final_factor: float = 0.01
    lr_warmup_steps: int = 20
    weight_decay: float = 0.0
    train_background: Literal["random", "white", "black"] = "random"
    render_chunk: int = 4096
    image_appearance: AppearanceOptions = field(default_factory=AppearanceOptions.for_rays)

    def validate(self) -> None:
        if min(self.coarse_samples, self.fine_samples, self.rays_per_batch, self.render_chunk) < 1:
            raise NerfkitError("mipnerf sample counts, rays_per_batch and render_chunk must be at least 1")
        if not 0 < self.near < self.far:
            raise NerfkitError(f"mipnerf needs 0 < near < far, got near={self.near}, far={self.far}")

    def resolve(self, device_type: str) -> "MipNeRFConfig":
        """``backbone: auto`` decided for ``device_type``: ``mlp`` on CUDA, ``hash`` elsewhere."""
        if self.backbone != "auto":
            return self
        return apply_overrides(self, {"backbone": "mlp" if device_type == "cuda" else "hash"}, "mipnerf backbone")

    def resolve_scene(self, unbounded: bool) -> "MipNeRFConfig":
        """``sampler: auto`` decided for the scene's kind (see the class docstring); the hash field
        on an unbounded scene also takes :data:`UNBOUNDED_HASH` for the settings at their defaults."""
        if self.sampler != "auto":
            return self
        sampler = "proposal" if unbounded else ("occupancy" if self.backbone == "hash" else "coarse_to_fine")
        values: dict[str, object] = {"sampler": sampler}
        if unbounded and self.backbone == "hash":
            values.update(left_at_defaults(self, UNBOUNDED_HASH))
        return apply_overrides(self, values, "mipnerf sampler")

    def learning_rate(self) -> float:
        """``lr``, or for ``auto`` the paper's 5e-4 (MLP backbone) or 1e-2 (hash backbone)."""
        if is_auto(self.lr):
            return 5e-4 if self.backbone == "mlp" else 1e-2
        return float(self.lr)

    def proposal_mlp(self) -> MipMLPOptions:
        """The options of an MLP proposal field: the field's, at the proposal depth and width."""
        skip = self.mlp.skip_layer if self.mlp.skip_layer <= self.proposal_mlp_depth else 0
        return MipMLPOptions(**{**vars(self.mlp), "mlp_depth": self.proposal_mlp_depth,
                                "mlp_width": self.proposal_mlp_width, "skip_layer": skip})

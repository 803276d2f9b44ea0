"""Mip-NeRF (Barron et al. 2021) and, for unbounded scenes, Mip-NeRF 360 (Barron et al. 2022).

A pixel is a cone; the stretch of the cone between two sample distances (a conical frustum) is a
Gaussian, and the field is queried on Gaussians, so a wider pixel (a farther or smaller image) sees a
blurrier field: that is the anti-aliasing. Per batch of rays::

    edges   = uniform bins in normalised distance s in [0, 1] (near..far; objects: the box)
    Mip-NeRF (coarse_to_fine):              Mip-NeRF 360 (proposal):
      coarse = shade(field, edges)            for each proposal field:
      edges  = resample(blur(coarse.w))         w     = weights(proposal, edges)
      fine   = shade(field, edges)              edges = resample(w)
      loss   = mse(fine) + 0.1 mse(coarse)    final = shade(field, edges)
                                              loss  = mse + interlevel(final, proposals)
                                                          + 0.01 distortion(final)
    occupancy (hash backbone): march through ngp's occupancy grid, shade one frustum per step.

Samplers (``render/samplers.py``), losses (``render/losses.py``), compositing (``ops.composite``) and
the scene contraction (``render/contraction.py``) are the ones ngp uses, not copies.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from nerfkit.data.cameras import Cameras, pixel_footprint_radii
from nerfkit.data.inputs import BatchRequest, RayBatch, SceneInfo
from nerfkit.fields.mip import conical_frustum_moments, lift_gaussian
from nerfkit.fields.mip_field import Frusta, MipHashField, MipMLPField
from nerfkit.methods.base import MethodBase, render_in_chunks, warmup_then_log_linear
from nerfkit.methods.mipnerf_config import MipNeRFConfig
from nerfkit.ops import composite, render_weights
from nerfkit.ops.compositing import median_depth
from nerfkit.render.appearance import ImageAppearance
from nerfkit.render.contraction import contract_gaussian, contracted_scale
from nerfkit.render.estimators.coarse_to_fine import CoarseToFine
from nerfkit.render.estimators.occupancy import OccupancyGrid, adapt_ray_count
from nerfkit.render.estimators.proposal import ProposalSampler
from nerfkit.render.samplers import normalized_to_t, packed_intervals, ray_bounds


class Shaded(NamedTuple):
    """One level's results for R rays and N packed frusta."""

    rgb: Tensor          # (R, 3) on the background
    depth: Tensor        # (R,) expected distance (not normalised by alpha)
    alpha: Tensor        # (R,)
    weights: Tensor      # (N,) volume-rendering weights (batched levels: view as (R, S))
    t_starts: Tensor     # (N,) frustum bounds along the unit ray
    t_ends: Tensor       # (N,)
    ray_indices: Tensor  # (N,) int64, sorted

    def median_depth(self) -> Tensor:
        """(R,) distance where the accumulated weight reaches half of alpha (mesh export)."""
        return median_depth(self.weights, self.t_starts, self.t_ends, self.ray_indices, self.alpha,
                            self.alpha.shape[0])


def build_field(config: MipNeRFConfig, extent: float, proposal: bool) -> nn.Module:
    """The NeRF field (``proposal=False``) or a density-only proposal field for ``config``."""
    backbone = config.proposal_backbone if proposal else config.backbone
    if backbone == "mlp":
        return MipMLPField(config.proposal_mlp() if proposal else config.mlp, density_only=proposal)
    if proposal:
        return MipHashField(extent, config.hash_grid.for_proposals(config.proposal), config.heads, density_only=True)
    return MipHashField(extent, config.hash_grid, config.heads)


class MipNeRF(MethodBase):
    """The ``mipnerf`` method (see :mod:`nerfkit.methods.base` for the contract): pick an estimator,
    shade the field on its frusta, add the estimator's losses."""

    name = "mipnerf"
    renders_median_depth = True

    def __init__(self, config: MipNeRFConfig, scene: SceneInfo) -> None:
        super().__init__()
        config = config.resolve("cuda" if torch.cuda.is_available() else "cpu")   # no-op once resolved
        self.config = config
        self.unbounded = scene.unbounded
        self.register_buffer("aabb", scene.aabb.clone().float())
        self.sampler = config.sampler if config.sampler != "auto" else (
            "proposal" if scene.unbounded else "coarse_to_fine")
        extent = 2.0 if scene.unbounded else 1.0
        self.field = build_field(config, extent, proposal=False)
        levels = config.proposal.proposal_levels if self.sampler == "proposal" else 0
        self.proposals = nn.ModuleList([build_field(config, extent, proposal=True) for _ in range(levels)])
        self.coarse_to_fine = CoarseToFine(config.coarse_samples, config.fine_samples, config.resample_padding,
                                           config.coarse_loss_weight)
        self.proposal_sampler = ProposalSampler.from_options(config.proposal)
        self.appearance = ImageAppearance.for_scene(config.image_appearance, scene)
        if self.sampler == "occupancy":
            occupancy = config.occupancy
            self.grid = OccupancyGrid(scene.aabb, occupancy.grid_resolution, occupancy.cascades(scene.unbounded))
            self.step_size = float((scene.aabb[1] - scene.aabb[0]).norm()) / occupancy.steps_per_diagonal
            self.cone_angle = occupancy.cone(scene.unbounded)
            self.register_buffer("n_rays", torch.tensor(float(config.rays_per_batch)))

    # --- optimisation -------------------------------------------------------------------------
    def batch_request(self, step: int) -> BatchRequest:
        rays = int(self.n_rays.item()) if self.sampler == "occupancy" else self.config.rays_per_batch
        return BatchRequest("rays", rays, cone_radii=True, background=self.config.train_background)

    def param_groups(self) -> list[dict[str, Any]]:
        lr = self.config.learning_rate()
        grids = [p for name, p in self.named_parameters() if ".encoding." in name]
        others = [p for name, p in self.named_parameters()
                  if ".encoding." not in name and not name.startswith("appearance.")]
        groups = [{"name": "mlp", "params": others, "lr": lr, "eps": 1e-15,
                   "weight_decay": self.config.weight_decay},
                  *self.appearance.param_groups(self.config.image_appearance.appearance_lr)]
        if grids:
            grid_lr = 1e-2 if self.config.backbone == "mlp" else lr     # hash proposals of an mlp field
            groups.insert(0, {"name": "hash_grid", "params": grids, "lr": grid_lr, "eps": 1e-15,
                              "weight_decay": 0.0})
        return groups

    def lr_factor(self, step: int, progress: float) -> float:
        """Linear warm-up, then log-linear decay to ``lr_final_factor`` (Mip-NeRF's schedule)."""
        return warmup_then_log_linear(step, progress, self.config.lr_warmup_steps, self.config.lr_final_factor)

    def before_step(self, step: int, progress: float) -> None:
        """Occupancy sampler: refresh the grid from the field's point densities every few steps."""
        occupancy = self.config.occupancy
        if self.sampler != "occupancy" or step % occupancy.grid_update_every != 0:
            return
        self.field.eval()
        with torch.no_grad():
            self.grid.update(self.density, self.step_size, occupancy.grid_threshold, occupancy.grid_ema,
                             full=step < occupancy.grid_warmup_steps)
        self.field.train()

    # --- geometry -----------------------------------------------------------------------------
    def _normalise(self, means: Tensor, variances: Tensor, radial_stds: Tensor) -> Frusta:
        """Scene-space Gaussians (..., 3) -> :class:`Frusta` (flattened) in the field's coordinates."""
        centre = (self.aabb[0] + self.aabb[1]) * 0.5
        half = (self.aabb[1] - self.aabb[0]) * 0.5
        means = ((means - centre) / half).reshape(-1, 3)
        variances = (variances / (half * half)).reshape(-1, 3)
        radial_stds = radial_stds.reshape(-1) / half.prod() ** (1.0 / 3.0)
        if self.unbounded:
            radial_stds = radial_stds * contracted_scale(means)
            means, variances = contract_gaussian(means, variances)
        return Frusta(means, variances, radial_stds)

    def _distances(self, s_edges: Tensor, near: Tensor, far: Tensor) -> Tensor:
        spacing = "contracted" if self.unbounded else "linear"
        return normalized_to_t(s_edges, near[:, None], far[:, None], spacing)

    def _frusta(self, origins: Tensor, directions: Tensor, radii: Tensor, t_starts: Tensor, t_ends: Tensor,
                ray_indices: Tensor) -> Frusta:
        """Packed frusta (N,) of rays ``ray_indices`` -> :class:`Frusta` in the field's coordinates."""
        t_mean, t_var, r_var = conical_frustum_moments(t_starts, t_ends, radii[ray_indices])
        means, variances = lift_gaussian(origins[ray_indices], directions[ray_indices], t_mean, t_var, r_var)
        return self._normalise(means, variances, r_var.clamp_min(0.0).sqrt())

    # --- rendering ----------------------------------------------------------------------------
    def _shade_packed(self, rays: tuple[Tensor, Tensor, Tensor, Tensor], t_starts: Tensor, t_ends: Tensor,
                      ray_indices: Tensor) -> Shaded:
        """Query the field on packed frusta and composite them on the background."""
        origins, directions, radii, background = rays
        sigmas, rgbs = self.field(self._frusta(origins, directions, radii, t_starts, t_ends, ray_indices),
                                  directions[ray_indices])
        out = composite(sigmas, rgbs, t_starts, t_ends, ray_indices, origins.shape[0])
        rgb = out.rgb + background * (1.0 - out.alpha).unsqueeze(-1)
        return Shaded(rgb, out.depth, out.alpha, out.weights, t_starts, t_ends, ray_indices)

    def _shade(self, rays: tuple[Tensor, Tensor, Tensor, Tensor], t_edges: Tensor) -> Shaded:
        """Query the field on every frustum of ``t_edges`` (R, S+1) and composite on the background."""
        t_starts, t_ends, ray_indices = packed_intervals(t_edges)
        return self._shade_packed(rays, t_starts, t_ends, ray_indices)

    def _proposal_weights(self, proposal: nn.Module, rays: tuple[Tensor, ...], t_edges: Tensor) -> Tensor:
        """(R, S) volume-rendering weights of a proposal field's densities on the frusta of ``t_edges``."""
        origins, directions, radii, _ = rays
        t_starts, t_ends, ray_indices = packed_intervals(t_edges)
        sigmas = proposal.density(self._frusta(origins, directions, radii, t_starts, t_ends, ray_indices))
        weights, _ = render_weights(sigmas, t_starts, t_ends, ray_indices, t_edges.shape[0])
        return weights.view(t_edges.shape[0], -1)

    def _march(self, rays: tuple[Tensor, Tensor, Tensor, Tensor]) -> Shaded:
        """Occupancy sampler: frusta of one marching step through occupied cells (as ngp samples)."""
        origins, directions, _, _ = rays

        def sample_density(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
            mids = ((t_starts + t_ends) * 0.5).unsqueeze(-1)
            return self.density(origins[ray_indices] + directions[ray_indices] * mids)

        occupancy = self.config.occupancy
        eps = occupancy.early_stop_eps
        ray_indices, t_starts, t_ends = self.grid.sample(
            origins, directions, self.config.near, self.step_size, self.cone_angle,
            occupancy.max_samples_per_ray, sample_density if eps > 0 else None, eps)
        return self._shade_packed(rays, t_starts, t_ends, ray_indices)

    def render_rays(self, origins: Tensor, directions: Tensor, radii: Tensor, background: Tensor
                    ) -> dict[str, Any]:
        """Render cones: (R, 3) origins, unit directions, (R,) radii at unit distance, (R, 3) backgrounds.

        Returns ``final`` (the level that makes the image, a :class:`Shaded`) and ``plan``: the
        estimator's sampling plan (:class:`~nerfkit.render.estimators.coarse_to_fine.CoarseToFinePlan`
        or :class:`~nerfkit.render.estimators.proposal.ProposalPlan`; None for the occupancy grid).
        Jittered while training.
        """
        rays = (origins, directions, radii, background)
        if self.sampler == "occupancy":
            return {"final": self._march(rays), "plan": None}
        near, far = ray_bounds(origins, directions, self.aabb, self.config.near, self.config.far, self.unbounded)
        n_rays, device = origins.shape[0], origins.device
        if self.sampler == "coarse_to_fine":
            plan = self.coarse_to_fine.sample(
                n_rays, lambda s_edges: self._shade(rays, self._distances(s_edges, near, far)),
                jitter=self.training, device=device)
        else:
            proposals = [lambda s_edges, field=field: self._proposal_weights(field, rays,
                                                                             self._distances(s_edges, near, far))
                         for field in self.proposals]
            plan = self.proposal_sampler.sample(n_rays, proposals, jitter=self.training, device=device)
        return {"final": self._shade(rays, self._distances(plan.s_edges, near, far)), "plan": plan}

    def train_step(self, batch: RayBatch, step: int, progress: float) -> dict[str, Any]:
        if batch.radii is None:
            raise ValueError("mipnerf needs rays with pixel-footprint radii (RayBatch.radii)")
        out = self.render_rays(batch.origins, batch.directions, batch.radii, batch.background)
        final: Shaded = self._as_photographed(out["final"], batch)
        mse = torch.mean((final.rgb - batch.rgb) ** 2)
        loss, losses, samples = mse, {}, final.weights.numel()
        if self.sampler == "coarse_to_fine":                           # Mip-NeRF: the coarse pass
            plan = dataclasses.replace(out["plan"], coarse=self._as_photographed(out["plan"].coarse, batch))
            losses = self.coarse_to_fine.losses(plan, batch.rgb)
            loss = loss + self.coarse_to_fine.weighted(losses)
            samples += out["plan"].coarse.weights.numel()
        elif self.sampler == "proposal":                               # Mip-NeRF 360
            losses = self.proposal_sampler.losses(out["plan"], final.weights.view(len(batch), -1))
            loss = loss + self.proposal_sampler.weighted(losses)
        else:
            total = int(self.across.sum(torch.tensor(float(final.weights.numel()), dtype=torch.float64)))
            self.n_rays.fill_(adapt_ray_count(float(self.n_rays), total,      # all processes' samples
                                              self.config.occupancy.target_samples, self.config.occupancy.max_rays))
        stats = {name: float(value.detach()) for name, value in losses.items()}
        return {"loss": loss, "mse": float(mse.detach()), "rays": len(batch), "samples": samples, **stats}

    def _as_photographed(self, level: Shaded, batch: RayBatch) -> Shaded:
        """``level`` with each ray's colour as its training photo shows it (the appearance correction)."""
        return level._replace(rgb=self.appearance(level.rgb, level.alpha, batch.background, batch.camera_ids))

    @torch.no_grad()
    def render(self, camera: Cameras, background: Tensor) -> dict[str, Tensor]:
        """Render camera 0 of ``camera`` at its size (its focal length sets the cone width)."""
        def shade(origins: Tensor, directions: Tensor, pixels: Tensor) -> dict[str, Tensor]:
            ids = torch.zeros(pixels.shape[0], dtype=torch.int64)
            radii = pixel_footprint_radii(camera, ids, pixels, directions.cpu()).to(origins.device)
            final: Shaded = self.render_rays(origins, directions, radii,
                                             background.to(origins.device).expand(origins.shape[0], 3))["final"]
            return {"rgb": final.rgb, "depth": final.depth, "alpha": final.alpha,
                    "median_depth": final.median_depth()}

        return render_in_chunks(camera, self.config.render_chunk, self.aabb.device, shade)

    def density(self, xyz: Tensor) -> Tensor:
        """(N, 3) scene points -> (N,) density of the NeRF field at points (zero-size frusta)."""
        zeros = torch.zeros_like(xyz)
        return self.field.density(self._normalise(xyz, zeros, zeros[:, 0]))


__all__ = ["MipNeRF", "Shaded", "build_field"]

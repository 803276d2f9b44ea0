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

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from nerfkit.cameras import pixel_footprint_radii
from nerfkit.config import MipNeRFConfig
from nerfkit.data.scene import Cameras
from nerfkit.errors import NerfkitError
from nerfkit.fields.mip import conical_frustum_moments, lift_gaussian
from nerfkit.fields.mip_field import Frusta, MipHashField, MipMLPField
from nerfkit.methods.base import RayBatch, SceneInfo, render_in_chunks
from nerfkit.ops import composite, ray_aabb_intersect, render_weights
from nerfkit.ops.compositing import median_depth
from nerfkit.render.contraction import contract_gaussian, contracted_scale
from nerfkit.render.losses import distortion_loss, interlevel_loss
from nerfkit.render.occupancy import OccupancyGrid, adapt_ray_count
from nerfkit.render.samplers import normalized_to_t, resample_edges, uniform_edges


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


def check_config(config: MipNeRFConfig) -> None:
    """One clear sentence for the first bad setting."""
    checks = [
        (config.backbone in ("mlp", "hash"), f"mipnerf backbone must be mlp or hash, got '{config.backbone}'"),
        (config.proposal_backbone in ("mlp", "hash"),
         f"mipnerf proposal_backbone must be mlp or hash, got '{config.proposal_backbone}'"),
        (config.sampler in ("auto", "coarse_to_fine", "proposal", "occupancy"),
         f"mipnerf sampler must be auto, coarse_to_fine, proposal or occupancy, got '{config.sampler}'"),
        (min(config.coarse_samples, config.fine_samples, config.proposal_samples, config.nerf_samples,
             config.rays_per_batch, config.render_chunk) >= 1,
         "mipnerf sample counts, rays_per_batch and render_chunk must be at least 1"),
        (config.proposal_levels >= 1, f"mipnerf proposal_levels must be at least 1, got {config.proposal_levels}"),
        (0 < config.near < config.far, f"mipnerf needs 0 < near < far, got near={config.near}, far={config.far}"),
        (config.max_deg > config.min_deg >= 0,
         f"mipnerf needs 0 <= min_deg < max_deg, got {config.min_deg}, {config.max_deg}"),
        (1 <= config.skip_layer <= config.mlp_depth or config.skip_layer == 0,
         f"mipnerf skip_layer must be 0 (none) or within 1..mlp_depth, got {config.skip_layer}"),
    ]
    for ok, message in checks:
        if not ok:
            raise NerfkitError(message)


def build_field(config: MipNeRFConfig, extent: float, proposal: bool) -> nn.Module:
    """The NeRF field (``proposal=False``) or a density-only proposal field for ``config``."""
    backbone = config.proposal_backbone if proposal else config.backbone
    if backbone == "mlp":
        depth = config.proposal_mlp_depth if proposal else config.mlp_depth
        width = config.proposal_mlp_width if proposal else config.mlp_width
        return MipMLPField(config.min_deg, config.max_deg, depth, width,
                           config.skip_layer if config.skip_layer <= depth else 0, config.view_deg,
                           config.view_width, config.density_bias, config.rgb_padding, proposal)
    if proposal:
        return MipHashField(extent, config.proposal_n_levels, config.features_per_level,
                            config.proposal_log2_table_size, config.base_resolution,
                            config.proposal_max_resolution, config.hidden_dim, config.geo_feat_dim,
                            config.sh_degree, config.color_hidden_layers, config.hash_backend, True)
    return MipHashField(extent, config.n_levels, config.features_per_level, config.log2_table_size,
                        config.base_resolution, config.max_resolution, config.hidden_dim,
                        config.geo_feat_dim, config.sh_degree, config.color_hidden_layers,
                        config.hash_backend)


class MipNeRF(nn.Module):
    """The ``mipnerf`` method (see :mod:`nerfkit.methods.base` for the protocol)."""

    name = "mipnerf"
    batch_kind = "rays"
    traces_cones = True          # the trainer's rays carry pixel-footprint radii

    def __init__(self, config: MipNeRFConfig, scene: SceneInfo) -> None:
        super().__init__()
        check_config(config)
        self.config = config
        self.unbounded = scene.unbounded
        self.register_buffer("aabb", scene.aabb.clone().float())
        self.sampler = config.sampler if config.sampler != "auto" else (
            "proposal" if scene.unbounded else "coarse_to_fine")
        extent = 2.0 if scene.unbounded else 1.0
        self.field = build_field(config, extent, proposal=False)
        levels = config.proposal_levels if self.sampler == "proposal" else 0
        self.proposals = nn.ModuleList([build_field(config, extent, proposal=True) for _ in range(levels)])
        if self.sampler == "occupancy":
            self.grid = OccupancyGrid(scene.aabb, config.grid_resolution, 4 if scene.unbounded else 1)
            self.step_size = float((scene.aabb[1] - scene.aabb[0]).norm()) / config.steps_per_diagonal
            self.cone_angle = 1.0 / 256.0 if scene.unbounded else 0.0
            self.register_buffer("n_rays", torch.tensor(float(config.rays_per_batch)))

    # --- optimisation -------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        lr = self.config.lr or (5e-4 if self.config.backbone == "mlp" else 1e-2)
        grids = [p for name, p in self.named_parameters() if ".encoding." in name]
        others = [p for name, p in self.named_parameters() if ".encoding." not in name]
        groups = [{"name": "mlp", "params": others, "lr": lr, "eps": 1e-15,
                   "weight_decay": self.config.weight_decay}]
        if grids:
            grid_lr = 1e-2 if self.config.backbone == "mlp" else lr     # hash proposals of an mlp field
            groups.insert(0, {"name": "hash_grid", "params": grids, "lr": grid_lr, "eps": 1e-15,
                              "weight_decay": 0.0})
        return groups

    def lr_factor(self, step: int, progress: float) -> float:
        """Linear warm-up, then log-linear decay to ``lr_final_factor`` (Mip-NeRF's schedule)."""
        warmup = min(1.0, (step + 1) / max(self.config.lr_warmup_steps, 1))
        return warmup * self.config.lr_final_factor ** min(max(progress, 0.0), 1.0)

    def before_step(self, step: int, progress: float) -> None:
        """Occupancy sampler: refresh the grid from the field's point densities every few steps."""
        if self.sampler != "occupancy" or step % self.config.grid_update_every != 0:
            return
        self.field.eval()
        with torch.no_grad():
            self.grid.update(self.density, self.step_size, self.config.grid_threshold, self.config.grid_ema,
                             full=step < self.config.grid_warmup_steps)
        self.field.train()

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        return None

    def rays_per_batch(self) -> int:
        return int(self.n_rays.item()) if self.sampler == "occupancy" else self.config.rays_per_batch

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

    def _ray_bounds(self, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """(R,) near and far distances: the scene box for objects (rays that miss it get an empty
        interval), ``near``..``far`` for unbounded scenes."""
        n = origins.shape[0]
        near = torch.full((n,), self.config.near, device=origins.device)
        if self.unbounded:
            return near, torch.full((n,), self.config.far, device=origins.device)
        t_near, t_far = ray_aabb_intersect(origins, directions, self.aabb)
        hit = torch.isfinite(t_near)
        near = torch.where(hit, torch.maximum(t_near, near), near)
        far = torch.where(hit, torch.maximum(t_far, near), near)
        return near, far

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
        t_starts, t_ends, ray_indices = _packed(t_edges)
        return self._shade_packed(rays, t_starts, t_ends, ray_indices)

    def _proposal_weights(self, proposal: nn.Module, rays: tuple[Tensor, ...], t_edges: Tensor) -> Tensor:
        """(R, S) volume-rendering weights of a proposal field's densities on the frusta of ``t_edges``."""
        origins, directions, radii, _ = rays
        t_starts, t_ends, ray_indices = _packed(t_edges)
        sigmas = proposal.density(self._frusta(origins, directions, radii, t_starts, t_ends, ray_indices))
        weights, _ = render_weights(sigmas, t_starts, t_ends, ray_indices, t_edges.shape[0])
        return weights.view(t_edges.shape[0], -1)

    def _march(self, rays: tuple[Tensor, Tensor, Tensor, Tensor]) -> Shaded:
        """Occupancy sampler: frusta of one marching step through occupied cells (as ngp samples)."""
        origins, directions, _, _ = rays

        def sample_density(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
            mids = ((t_starts + t_ends) * 0.5).unsqueeze(-1)
            return self.density(origins[ray_indices] + directions[ray_indices] * mids)

        eps = self.config.early_stop_eps
        ray_indices, t_starts, t_ends = self.grid.sample(
            origins, directions, self.config.near, self.step_size, self.cone_angle,
            self.config.max_samples_per_ray, sample_density if eps > 0 else None, eps)
        return self._shade_packed(rays, t_starts, t_ends, ray_indices)

    def render_rays(self, origins: Tensor, directions: Tensor, radii: Tensor, background: Tensor
                    ) -> dict[str, Any]:
        """Render cones: (R, 3) origins, unit directions, (R,) radii at unit distance, (R, 3) backgrounds.

        Returns ``final`` (the level that makes the image, a :class:`Shaded`), ``levels``: the
        earlier ones as ``(s_edges, weights)`` (coarse_to_fine: the coarse :class:`Shaded`; proposal:
        one per proposal field), and ``s_edges`` of the final level. Jittered while training.
        """
        config, jitter = self.config, self.training
        rays = (origins, directions, radii, background)
        if self.sampler == "occupancy":
            return {"final": self._march(rays), "s_edges": None, "levels": [], "proposal": []}
        near, far = self._ray_bounds(origins, directions)
        device = origins.device
        if self.sampler == "coarse_to_fine":
            s_edges = uniform_edges(origins.shape[0], config.coarse_samples, jitter=jitter, device=device)
            coarse = self._shade(rays, self._distances(s_edges, near, far))
            s_fine = resample_edges(s_edges, coarse.weights.view(s_edges.shape[0], -1), config.fine_samples,
                                    jitter=jitter,
                                    padding=config.resample_padding, blur=True)
            final = self._shade(rays, self._distances(s_fine, near, far))
            return {"final": final, "s_edges": s_fine, "levels": [coarse], "proposal": []}
        s_edges = uniform_edges(origins.shape[0], config.proposal_samples, jitter=jitter, device=device)
        proposals = []
        for index, proposal in enumerate(self.proposals):
            weights = self._proposal_weights(proposal, rays, self._distances(s_edges, near, far))
            proposals.append((s_edges, weights))
            last = index == len(self.proposals) - 1
            s_edges = resample_edges(s_edges, weights, config.nerf_samples if last else config.proposal_samples,
                                     jitter=jitter)
        final = self._shade(rays, self._distances(s_edges, near, far))
        return {"final": final, "s_edges": s_edges, "levels": [], "proposal": proposals}

    def train_step(self, batch: RayBatch, step: int, progress: float) -> dict[str, Any]:
        if batch.radii is None:
            raise ValueError("mipnerf needs rays with pixel-footprint radii (RayBatch.radii)")
        out = self.render_rays(batch.origins, batch.directions, batch.radii, batch.background)
        final: Shaded = out["final"]
        mse = torch.mean((final.rgb - batch.rgb) ** 2)
        loss = mse
        stats: dict[str, Any] = {}
        for coarse in out["levels"]:                                   # Mip-NeRF: the coarse pass
            coarse_mse = torch.mean((coarse.rgb - batch.rgb) ** 2)
            loss = loss + self.config.coarse_loss_weight * coarse_mse
            stats["coarse_mse"] = float(coarse_mse.detach())
        if out["proposal"]:                                            # Mip-NeRF 360
            weights = final.weights.view(out["s_edges"].shape[0], -1)
            interlevel = sum(interlevel_loss(out["s_edges"], weights, s, w) for s, w in out["proposal"])
            distortion = distortion_loss(out["s_edges"], weights)
            loss = loss + self.config.interlevel_weight * interlevel + self.config.distortion_weight * distortion
            stats.update(interlevel=float(interlevel.detach()), distortion=float(distortion.detach()))
        samples = final.weights.numel() + sum(level.weights.numel() for level in out["levels"])
        if self.sampler == "occupancy":
            self.n_rays.fill_(adapt_ray_count(float(self.n_rays), final.weights.numel(),
                                              self.config.target_samples, self.config.max_rays))
        return {"loss": loss, "mse": float(mse.detach()), "rays": len(batch), "samples": samples, **stats}

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


def _packed(t_edges: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(R, S+1) edges -> packed (R*S,) starts, ends and ray indices."""
    n_rays, n_samples = t_edges.shape[0], t_edges.shape[1] - 1
    ray_indices = torch.arange(n_rays, device=t_edges.device).repeat_interleave(n_samples)
    return t_edges[:, :-1].reshape(-1), t_edges[:, 1:].reshape(-1), ray_indices


__all__ = ["MipNeRF", "Shaded", "build_field", "check_config"]

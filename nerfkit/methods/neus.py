"""NeuS on a hash grid (Wang et al. 2021, "NeuS"; Wang et al. 2023, "NeuS2"; instant-nsr-pl): the
surface is the zero level set of a signed distance field, rendered with NeuS's unbiased,
occlusion-aware weights.

Per batch of rays::

    samples  = march rays through the occupancy grid (cells near the SDF's zero level set)
    f, grad  = SDF and its gradient at the samples (the hash encoding's position gradient)
    alpha    = NeuS's opacity from f, d . grad and the learned sharpness s      (Eq. 13)
    rgb      = composite(colour(x, normal, d, features), alpha) + background
    loss     = |rgb - target| + 0.1 mean((|grad| - 1)^2)                        (eikonal, Eq. 16)

Unbounded captures add a NeRF++-style background: an ngp field on contracted space, sampled from
where the ray leaves the box, composited behind the surface. Coarse-to-fine levels (Neuralangelo):
the finer hash levels join during the first half of training. Mesh export runs marching cubes on
the SDF (:class:`~nerfkit.methods.capabilities.HasSDF`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from nerfkit.data.cameras import Cameras
from nerfkit.data.inputs import BatchRequest, RayBatch, SceneInfo
from nerfkit.fields.ngp_field import NGPField
from nerfkit.fields.options import FieldHeadOptions, HashGridOptions
from nerfkit.fields.sdf_field import SDFField
from nerfkit.methods.base import MethodBase, render_in_chunks, warmup_then_log_linear
from nerfkit.methods.neus_config import NeuSConfig
from nerfkit.ops import composite, ray_aabb_intersect
from nerfkit.ops.compositing import median_depth
from nerfkit.render.appearance import ImageAppearance
from nerfkit.render.estimators.occupancy import OccupancyGrid, adapt_ray_count
from nerfkit.render.neus import directional_slope, equivalent_density, neus_alpha
from nerfkit.render.samplers import normalized_to_t, uniform_edges

BACKGROUND_GRID = HashGridOptions(n_levels=8, log2_table_size=15, base_resolution=16, max_resolution=256)
BACKGROUND_HEADS = FieldHeadOptions(hidden_dim=32, geo_feat_dim=7, sh_degree=3, color_hidden_layers=1)


class NeuS(MethodBase):
    """The ``neus`` method (see :mod:`nerfkit.methods.base` for the contract; it has an SDF,
    :class:`~nerfkit.methods.capabilities.HasSDF`)."""

    name = "neus"
    renders_median_depth = True

    def __init__(self, config: NeuSConfig, scene: SceneInfo) -> None:
        super().__init__()
        config = config.resolve("cuda" if torch.cuda.is_available() else "cpu")   # no-op once resolved
        self.config = config
        occupancy = config.occupancy
        self.register_buffer("aabb", scene.aabb.clone().float())
        self.field = SDFField(scene.aabb, config.hash_grid, config.network)
        self.variance = nn.Parameter(torch.tensor(float(config.init_variance)))
        self.grid = OccupancyGrid(scene.aabb, occupancy.grid_resolution, 1)
        diagonal = float((scene.aabb[1] - scene.aabb[0]).norm())
        self.step_size = diagonal / occupancy.steps_per_diagonal
        self.cell_diagonal = diagonal / occupancy.grid_resolution
        use_background = config.background == "field" or (config.background == "auto" and scene.unbounded)
        self.background = NGPField(scene.aabb, True, BACKGROUND_GRID, BACKGROUND_HEADS) if use_background else None
        self.register_buffer("n_rays", torch.tensor(float(config.initial_rays)))
        self.register_buffer("cos_anneal", torch.tensor(0.0))
        self.appearance = ImageAppearance.for_scene(config.image_appearance, scene)
        self.field.active_levels.fill_(min(config.start_levels, config.hash_grid.n_levels))

    # --- optimisation -------------------------------------------------------------------------
    def batch_request(self, step: int) -> BatchRequest:
        return BatchRequest("rays", int(self.n_rays.item()), background=self.config.train_background)

    def inv_s(self) -> Tensor:
        """The sharpness ``s`` of the logistic CDF (1 / scene unit)."""
        return torch.exp(self.variance * 10.0).clamp(1e-6, 1e6)

    def param_groups(self) -> list[dict[str, Any]]:
        c = self.config
        grids = [p for name, p in self.named_parameters() if ".encoding." in name]
        mlps = [p for name, p in self.named_parameters()
                if ".encoding." not in name and name != "variance" and not name.startswith("appearance.")]
        return [
            {"name": "hash_grid", "params": grids, "lr": c.lr, "eps": 1e-15, "weight_decay": 0.0},
            {"name": "mlp", "params": mlps, "lr": c.lr, "eps": 1e-15, "weight_decay": c.weight_decay},
            {"name": "variance", "params": [self.variance], "lr": c.variance_lr, "eps": 1e-15, "weight_decay": 0.0},
            *self.appearance.param_groups(c.image_appearance.appearance_lr),
        ]

    def lr_factor(self, step: int, progress: float) -> float:
        """Linear warm-up, then exponential decay to ``lr_final_factor`` (instant-nsr-pl's schedule)."""
        return warmup_then_log_linear(step, progress, self.config.lr_warmup_steps, self.config.lr_final_factor)

    def before_step(self, step: int, progress: float) -> None:
        c = self.config
        self.cos_anneal.fill_(min(1.0, progress / c.cos_anneal_fraction))
        n_levels = c.hash_grid.n_levels
        start = min(c.start_levels, n_levels)
        grown = start + (n_levels - start) * min(1.0, progress / c.level_steps_fraction)
        self.field.active_levels.fill_(int(math.floor(grown + 1e-9)))
        occupancy = c.occupancy
        if step % occupancy.grid_update_every == 0:
            with torch.no_grad():
                self.grid.update(self._near_surface, self.step_size, occupancy.grid_threshold, occupancy.grid_ema,
                                 full=step < occupancy.grid_warmup_steps)

    def _near_surface(self, points: Tensor) -> Tensor:
        """(P, 3) -> (P,) the occupancy grid's "density": 1 / step where the SDF says the surface is
        within ``occupancy_margin`` cell diagonals, else 0 (a distance bound, valid for any sharpness)."""
        near = self.field.sdf(points).abs() <= self.config.occupancy_margin * self.cell_diagonal
        return near.to(points.dtype) / self.step_size

    # --- rendering ----------------------------------------------------------------------------
    def render_rays(self, origins: Tensor, directions: Tensor, background: Tensor) -> dict[str, Tensor]:
        """(R, 3) origins, unit directions and backgrounds -> rgb (R, 3), depth, alpha, median depth
        (R,) of the surface, plus ``coverage`` (R,) (the opacity of surface and background field
        together), ``eikonal`` (the mean squared deviation of |grad f| from 1) and ``samples`` (the
        number of SDF queries)."""
        occupancy = self.config.occupancy
        ray_indices, t_starts, t_ends = self.grid.sample(origins, directions, self.config.near, self.step_size,
                                                         0.0, occupancy.max_samples_per_ray, None, 0.0)
        n_rays = origins.shape[0]
        training = torch.is_grad_enabled()
        mids = ((t_starts + t_ends) * 0.5).unsqueeze(-1)
        dirs = directions[ray_indices]
        points = origins[ray_indices] + dirs * mids
        sdf, normals, features = self.field.sdf_and_normals(points, create_graph=training)
        deltas = t_ends - t_starts
        alpha = neus_alpha(sdf, directional_slope(dirs, normals, float(self.cos_anneal)), deltas, self.inv_s())
        rgbs = self.field.color(points, normals, dirs, features)
        out = composite(equivalent_density(alpha, deltas), rgbs, t_starts, t_ends, ray_indices, n_rays)
        behind, coverage = background, out.alpha
        if self.background is not None:
            far_rgb, far_depth, far_alpha = self._background(origins, directions)
            behind = far_rgb + background * (1.0 - far_alpha).unsqueeze(-1)
            coverage = out.alpha + (1.0 - out.alpha) * far_alpha
        rgb = out.rgb + behind * (1.0 - out.alpha).unsqueeze(-1)
        eikonal = ((normals.norm(dim=-1) - 1.0) ** 2).mean() if normals.numel() else sdf.sum() * 0.0
        result = {"rgb": rgb, "depth": out.depth, "alpha": out.alpha, "coverage": coverage, "eikonal": eikonal,
                  "samples": torch.tensor(ray_indices.numel())}
        if not training:
            result["median_depth"] = median_depth(out.weights, t_starts, t_ends, ray_indices, out.alpha, n_rays)
        return result

    def _background(self, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The background field composited from where each ray leaves the box to ``background_far``:
        rgb (R, 3) (not yet on the background colour), depth (R,), alpha (R,)."""
        n_rays = origins.shape[0]
        _, t_exit = ray_aabb_intersect(origins, directions, self.aabb)
        near = torch.where(torch.isfinite(t_exit), t_exit, torch.full_like(t_exit, self.config.near))
        near = near.clamp(min=self.config.near)
        far = torch.full_like(near, self.config.background_far)
        s_edges = uniform_edges(n_rays, self.config.background_samples, jitter=self.training, device=origins.device)
        t_edges = normalized_to_t(s_edges, near[:, None], far[:, None], "contracted")
        k = t_edges.shape[1] - 1
        t_starts, t_ends = t_edges[:, :-1].reshape(-1), t_edges[:, 1:].reshape(-1)
        ray_indices = torch.arange(n_rays, device=origins.device).repeat_interleave(k)
        mids = ((t_starts + t_ends) * 0.5).unsqueeze(-1)
        sigmas, rgbs = self.background(origins[ray_indices] + directions[ray_indices] * mids,
                                       directions[ray_indices])
        out = composite(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays)
        return out.rgb, out.depth, out.alpha

    def train_step(self, batch: RayBatch, step: int, progress: float) -> dict[str, Any]:
        out = self.render_rays(batch.origins, batch.directions, batch.background)
        rgb = self.appearance(out["rgb"], out["coverage"], batch.background, batch.camera_ids)
        colour = (rgb - batch.rgb).abs().mean()
        loss = colour + self.config.eikonal_weight * out["eikonal"]
        mse = float(torch.mean((rgb.detach() - batch.rgb) ** 2))
        samples = int(out["samples"])
        occupancy = self.config.occupancy
        self.n_rays.fill_(adapt_ray_count(float(self.n_rays), samples, occupancy.target_samples, occupancy.max_rays))
        return {"loss": loss, "mse": mse, "rays": len(batch), "samples": samples,
                "eikonal": float(out["eikonal"].detach()), "inv_s": round(float(self.inv_s().detach()), 1)}

    @torch.no_grad()
    def render(self, camera: Cameras, background: Tensor) -> dict[str, Tensor]:
        """Render camera 0 of ``camera`` at its size; background (3,) in [0, 1]."""
        keys = ("rgb", "depth", "alpha", "median_depth")

        def shade(origins: Tensor, directions: Tensor, pixels: Tensor) -> dict[str, Tensor]:
            out = self.render_rays(origins, directions, background.to(origins.device).expand(origins.shape[0], 3))
            return {key: out[key] for key in keys}

        return render_in_chunks(camera, self.config.render_chunk, self.aabb.device, shade)

    # --- the SDF (mesh export) ----------------------------------------------------------------
    @torch.no_grad()
    def sdf(self, xyz: Tensor) -> Tensor:
        """(N, 3) scene points -> (N,) signed distance in scene units (positive outside)."""
        return self.field.sdf(xyz)

    @torch.no_grad()
    def surface_colors(self, xyz: Tensor) -> Tensor:
        """(N, 3) surface points -> (N, 3) colour in [0, 1], seen head-on (along minus the normal)."""
        _, normals, features = self.field.sdf_and_normals(xyz, create_graph=False)
        view = -nn.functional.normalize(normals, dim=-1)
        return self.field.color(xyz, normals, view, features)

"""Instant-NGP (Mueller, Evans, Schied, Keller 2022): hash-grid field + occupancy-grid ray marching.

Per step: refresh the occupancy grid every few steps; march rays through occupied cells (dropping
samples behind opaque ones); query the field; composite on the batch's background; MSE to the target.
The number of rays per batch adapts so that each step sees about ``target_samples`` samples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nerfkit.data.cameras import Cameras
from nerfkit.data.inputs import BatchRequest, RayBatch, SceneInfo
from nerfkit.fields.ngp_field import NGPField
from nerfkit.methods.base import MethodBase, render_in_chunks
from nerfkit.methods.ngp_config import NGPConfig
from nerfkit.ops import composite
from nerfkit.ops.compositing import median_depth
from nerfkit.render.appearance import ImageAppearance
from nerfkit.render.estimators.occupancy import OccupancyGrid, adapt_ray_count


class NGP(MethodBase):
    """The ``ngp`` method (see :mod:`nerfkit.methods.base` for the contract)."""

    name = "ngp"
    renders_median_depth = True

    def __init__(self, config: NGPConfig, scene: SceneInfo) -> None:
        super().__init__()
        self.config = config
        occupancy = config.occupancy
        self.field = NGPField(scene.aabb, scene.unbounded, config.hash_grid, config.heads)
        self.grid = OccupancyGrid(scene.aabb, occupancy.grid_resolution, occupancy.cascades(scene.unbounded))
        diagonal = float((scene.aabb[1] - scene.aabb[0]).norm())
        self.step_size = diagonal / occupancy.steps_per_diagonal
        self.cone_angle = occupancy.cone(scene.unbounded)
        self.register_buffer("n_rays", torch.tensor(float(config.initial_rays)))
        self.appearance = ImageAppearance.for_scene(config.image_appearance, scene)

    # --- optimisation -------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        mlps = [p for name, p in self.field.named_parameters() if not name.startswith("encoding")]
        return [
            {"name": "hash_grid", "params": list(self.field.encoding.parameters()),
             "lr": self.config.lr, "eps": 1e-15, "weight_decay": 0.0},
            {"name": "mlp", "params": mlps, "lr": self.config.lr, "eps": 1e-15,
             "weight_decay": self.config.weight_decay},
            *self.appearance.param_groups(self.config.image_appearance.appearance_lr),
        ]

    def lr_factor(self, step: int, progress: float) -> float:
        """Linear warm-up, then x0.33 at 50%, 75% and 90% of training."""
        warmup = min(1.0, (step + 1) / max(self.config.lr_warmup_steps, 1))
        return warmup * 0.33 ** sum(progress >= m for m in (0.5, 0.75, 0.9))

    def before_step(self, step: int, progress: float) -> None:
        occupancy = self.config.occupancy
        if step % occupancy.grid_update_every != 0:
            return
        self.field.eval()
        self.grid.update(self.field.density, self.step_size, occupancy.grid_threshold,
                         occupancy.grid_ema, full=step < occupancy.grid_warmup_steps)
        self.field.train()

    def batch_request(self, step: int) -> BatchRequest:
        return BatchRequest("rays", int(self.n_rays.item()), background=self.config.train_background)

    # --- rendering ----------------------------------------------------------------------------
    def render_rays(self, origins: Tensor, directions: Tensor, background: Tensor) -> dict[str, Tensor]:
        """Render rays: (R, 3) origins, unit directions, backgrounds -> rgb (R, 3), depth, alpha (R,).

        Also returns ``samples``: the number of field queries with gradient.
        """
        def sample_density(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
            mids = (t_starts + t_ends).unsqueeze(-1) * 0.5
            points = origins[ray_indices] + directions[ray_indices] * mids
            return torch.cat([self.field.density(part) for part in self._query_chunks(points)])

        occupancy = self.config.occupancy
        use_cull = occupancy.early_stop_eps > 0
        ray_indices, t_starts, t_ends = self.grid.sample(
            origins, directions, self.config.near, self.step_size, self.cone_angle,
            occupancy.max_samples_per_ray, sample_density if use_cull else None,
            occupancy.early_stop_eps)
        mids = ((t_starts + t_ends) * 0.5).unsqueeze(-1)
        points = origins[ray_indices] + directions[ray_indices] * mids
        if torch.is_grad_enabled():          # training: the adaptive batch bounds the sample count
            sigmas, rgbs = self.field(points, directions[ray_indices])
        else:                                # rendering: bound the encoder's temporaries
            parts = [self.field(p, d) for p, d in zip(self._query_chunks(points),
                                                      self._query_chunks(directions[ray_indices]))]
            sigmas = torch.cat([p[0] for p in parts])
            rgbs = torch.cat([p[1] for p in parts])
        out = composite(sigmas, rgbs, t_starts, t_ends, ray_indices, origins.shape[0])
        rgb = out.rgb + background * (1.0 - out.alpha).unsqueeze(-1)
        result = {"rgb": rgb, "depth": out.depth, "alpha": out.alpha,
                  "samples": torch.tensor(ray_indices.numel())}
        if not torch.is_grad_enabled():      # rendering: also the median depth (mesh export)
            result["median_depth"] = median_depth(out.weights, t_starts, t_ends, ray_indices,
                                                  out.alpha, origins.shape[0])
        return result

    def _query_chunks(self, values: Tensor) -> tuple[Tensor, ...]:
        """Split (S, ...) along S into chunks of at most ``max_points_per_query`` (at least one)."""
        if values.shape[0] == 0:
            return (values,)
        return values.split(self.config.max_points_per_query)

    def train_step(self, batch: RayBatch, step: int, progress: float) -> dict[str, Any]:
        out = self.render_rays(batch.origins, batch.directions, batch.background)
        rgb = self.appearance(out["rgb"], out["alpha"], batch.background, batch.camera_ids)
        mse = torch.mean((rgb - batch.rgb) ** 2)
        samples = int(out["samples"])
        self._adapt_batch(samples)
        return {"loss": mse, "mse": float(mse.detach()), "rays": len(batch), "samples": samples}

    def _adapt_batch(self, samples: int) -> None:
        """Steer the ray count so that a batch holds about ``target_samples`` samples (the samples of
        all processes' shares of the batch, so that every process keeps the same count)."""
        occupancy = self.config.occupancy
        samples = int(self.across.sum(torch.tensor(float(samples), dtype=torch.float64)))
        self.n_rays.fill_(adapt_ray_count(float(self.n_rays), samples, occupancy.target_samples,
                                          occupancy.max_rays))

    @torch.no_grad()
    def render(self, camera: Cameras, background: Tensor) -> dict[str, Tensor]:
        """Render camera 0 of ``camera`` at its size; background (3,) in [0, 1]."""
        keys = ("rgb", "depth", "alpha", "median_depth")

        def shade(origins: Tensor, directions: Tensor, pixels: Tensor) -> dict[str, Tensor]:
            out = self.render_rays(origins, directions, background.to(origins.device).expand(origins.shape[0], 3))
            return {key: out[key] for key in keys}

        return render_in_chunks(camera, self.config.render_chunk, self.field.aabb.device, shade)

    def density(self, xyz: Tensor) -> Tensor:
        return self.field.density(xyz)

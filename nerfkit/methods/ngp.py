"""Instant-NGP (Mueller, Evans, Schied, Keller 2022): hash-grid field + occupancy-grid ray marching.

Per step (``sampler: occupancy``, the default on objects): refresh the occupancy grid every few
steps; march rays through occupied cells (dropping samples behind opaque ones); query the field;
composite on the batch's background; MSE to the target. The number of rays per batch adapts so that each step sees about
``target_samples`` samples.

``sampler: proposal`` (the default on unbounded captures) picks the samples with Mip-NeRF 360's
proposal fields instead (small density-only hash fields; ``render/estimators/proposal.py``, the
estimator mipnerf uses) and adds their interlevel and distortion losses.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor, nn

from nerfkit.data.cameras import Cameras
from nerfkit.data.inputs import BatchRequest, RayBatch, SceneInfo
from nerfkit.fields.ngp_field import NGPField
from nerfkit.methods.base import MethodBase, linear_warmup, render_in_chunks, warmup_then_log_linear
from nerfkit.methods.ngp_config import NGPConfig
from nerfkit.ops import composite, render_weights
from nerfkit.ops.compositing import median_depth
from nerfkit.render.appearance import ImageAppearance
from nerfkit.render.estimators.occupancy import OccupancyGrid, adapt_ray_count
from nerfkit.render.estimators.proposal import ProposalPlan, ProposalSampler
from nerfkit.render.samplers import normalized_to_t, packed_intervals, ray_bounds


class NGP(MethodBase):
    """The ``ngp`` method (see :mod:`nerfkit.methods.base` for the contract)."""

    name = "ngp"
    renders_median_depth = True

    def __init__(self, config: NGPConfig, scene: SceneInfo) -> None:
        super().__init__()
        config = config.resolve_scene(scene.unbounded)          # sampler: auto (no-op once resolved)
        self.config = config
        self.unbounded = scene.unbounded
        self.sampler = config.sampler
        occupancy = config.occupancy
        self.field = NGPField(scene.aabb, scene.unbounded, config.hash_grid, config.heads)
        if self.sampler == "occupancy":
            self.grid = OccupancyGrid(scene.aabb, occupancy.grid_resolution, occupancy.cascades(scene.unbounded))
        proposal_grid = config.hash_grid.for_proposals(config.proposal)
        levels = config.proposal.proposal_levels if self.sampler == "proposal" else 0
        self.proposals = nn.ModuleList([NGPField(scene.aabb, scene.unbounded, proposal_grid, config.heads,
                                                 density_only=True) for _ in range(levels)])
        self.proposal_sampler = ProposalSampler.from_options(config.proposal)
        diagonal = float((scene.aabb[1] - scene.aabb[0]).norm())
        self.step_size = diagonal / occupancy.steps_per_diagonal
        self.cone_angle = occupancy.cone(scene.unbounded)
        self.register_buffer("n_rays", torch.tensor(float(config.initial_rays)))
        self.appearance = ImageAppearance.for_scene(config.image_appearance, scene)

    # --- optimisation -------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        fields = [self.field, *self.proposals]
        grids = [p for f in fields for p in f.encoding.parameters()]
        mlps = [p for f in fields for name, p in f.named_parameters() if not name.startswith("encoding")]
        return [
            {"name": "hash_grid", "params": grids,
             "lr": self.config.lr, "eps": 1e-15, "weight_decay": 0.0},
            {"name": "mlp", "params": mlps, "lr": self.config.lr, "eps": 1e-15,
             "weight_decay": self.config.weight_decay},
            *self.appearance.param_groups(self.config.image_appearance.appearance_lr),
        ]

    def lr_factor(self, step: int, progress: float) -> float:
        """Linear warm-up, then ``lr_decay``: x0.33 at 50 %, 75 % and 90 % of training (``steps``) or
        log-linear to ``lr_final_factor`` (``log_linear``)."""
        config = self.config
        if config.lr_decay == "log_linear":
            return warmup_then_log_linear(step, progress, config.lr_warmup_steps, config.lr_final_factor)
        return linear_warmup(step, config.lr_warmup_steps) * 0.33 ** sum(progress >= m for m in (0.5, 0.75, 0.9))

    def before_step(self, step: int, progress: float) -> None:
        occupancy = self.config.occupancy
        if self.sampler != "occupancy" or step % occupancy.grid_update_every != 0:
            return
        self.field.eval()
        self.grid.update(self.field.density, self.step_size, occupancy.grid_threshold,
                         occupancy.grid_ema, full=step < occupancy.grid_warmup_steps)
        self.field.train()

    def batch_request(self, step: int) -> BatchRequest:
        return BatchRequest("rays", int(self.n_rays.item()), background=self.config.train_background)

    # --- rendering ----------------------------------------------------------------------------
    def render_rays(self, origins: Tensor, directions: Tensor, background: Tensor) -> dict[str, Any]:
        """Render rays: (R, 3) origins, unit directions, backgrounds -> rgb (R, 3), depth, alpha (R,).

        Also returns ``samples``: the number of field queries with gradient, and with the proposal
        sampler ``plan`` (:class:`~nerfkit.render.estimators.proposal.ProposalPlan`) and the final
        ``weights`` (R, S) for its losses.
        """
        if self.sampler == "occupancy":
            ray_indices, t_starts, t_ends = self._march(origins, directions)
            plan = None
        else:
            plan = self._propose(origins, directions)
            t_starts, t_ends, ray_indices = packed_intervals(plan.t_edges)
        points = _midpoints(origins, directions, t_starts, t_ends, ray_indices)
        if torch.is_grad_enabled():          # training: the batch bounds the sample count
            sigmas, rgbs = self.field(points, directions[ray_indices])
        else:                                # rendering: bound the encoder's temporaries
            parts = [self.field(p, d) for p, d in zip(self._query_chunks(points),
                                                      self._query_chunks(directions[ray_indices]))]
            sigmas = torch.cat([p[0] for p in parts])
            rgbs = torch.cat([p[1] for p in parts])
        out = composite(sigmas, rgbs, t_starts, t_ends, ray_indices, origins.shape[0])
        rgb = out.rgb + background * (1.0 - out.alpha).unsqueeze(-1)
        result: dict[str, Any] = {"rgb": rgb, "depth": out.depth, "alpha": out.alpha,
                                  "samples": torch.tensor(ray_indices.numel())}
        if plan is not None:
            result["plan"], result["weights"] = plan.plan, out.weights.view(origins.shape[0], -1)
        if not torch.is_grad_enabled():      # rendering: also the median depth (mesh export)
            result["median_depth"] = median_depth(out.weights, t_starts, t_ends, ray_indices,
                                                  out.alpha, origins.shape[0])
        return result

    def _march(self, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Occupancy sampler: packed ray_indices, t_starts, t_ends (S,) of the occupied cells."""
        def sample_density(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
            return self._density_in_chunks(self.field, _midpoints(origins, directions, t_starts, t_ends,
                                                                  ray_indices))

        occupancy = self.config.occupancy
        use_cull = occupancy.early_stop_eps > 0
        return self.grid.sample(origins, directions, self.config.near, self.step_size, self.cone_angle,
                                occupancy.max_samples_per_ray, sample_density if use_cull else None,
                                occupancy.early_stop_eps)

    def _propose(self, origins: Tensor, directions: Tensor) -> "_Proposed":
        """Proposal sampler: the plan (jittered while training) and its final (R, S+1) distances."""
        near, far = ray_bounds(origins, directions, self.field.aabb, self.config.near, self.config.far,
                               self.unbounded)
        spacing = "contracted" if self.unbounded else "linear"

        def distances(s_edges: Tensor) -> Tensor:
            return normalized_to_t(s_edges, near[:, None], far[:, None], spacing)

        def weights_of(field: NGPField) -> Callable[[Tensor], Tensor]:
            def weights(s_edges: Tensor) -> Tensor:
                t_starts, t_ends, ray_indices = packed_intervals(distances(s_edges))
                points = _midpoints(origins, directions, t_starts, t_ends, ray_indices)
                sigmas = self._density_in_chunks(field, points)
                w, _ = render_weights(sigmas, t_starts, t_ends, ray_indices, origins.shape[0])
                return w.view(origins.shape[0], -1)
            return weights

        plan = self.proposal_sampler.sample(origins.shape[0], [weights_of(f) for f in self.proposals],
                                            jitter=self.training, device=origins.device)
        return _Proposed(plan, distances(plan.s_edges))

    def _density_in_chunks(self, field: NGPField, points: Tensor) -> Tensor:
        """(S, 3) points -> (S,) density of ``field``, queried in chunks of ``max_points_per_query``."""
        return torch.cat([field.density(part) for part in self._query_chunks(points)])

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
        if self.sampler == "occupancy":
            self._adapt_batch(samples)
            return {"loss": mse, "mse": float(mse.detach()), "rays": len(batch), "samples": samples}
        losses = self.proposal_sampler.losses(out["plan"], out["weights"])
        stats = {name: float(value.detach()) for name, value in losses.items()}
        return {"loss": mse + self.proposal_sampler.weighted(losses), "mse": float(mse.detach()),
                "rays": len(batch), "samples": samples, **stats}

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


class _Proposed(NamedTuple):
    plan: ProposalPlan
    t_edges: Tensor          # (R, S+1) distances of the final samples' edges


def _midpoints(origins: Tensor, directions: Tensor, t_starts: Tensor, t_ends: Tensor,
               ray_indices: Tensor) -> Tensor:
    """(S, 3) scene points halfway along the packed intervals (S,) of rays ``ray_indices``."""
    mids = ((t_starts + t_ends) * 0.5).unsqueeze(-1)
    return origins[ray_indices] + directions[ray_indices] * mids

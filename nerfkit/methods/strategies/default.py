"""3DGS adaptive density control: clone small and split large Gaussians with high screen-space
gradients, prune transparent and oversized ones, reset opacities now and then."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from nerfkit.methods.base import CrossProcess, OneProcess
from nerfkit.methods.strategies.options import DefaultStrategyOptions, RefineOptions
from nerfkit.methods.strategies.rows import Params, append_rows, keep_rows, zero_state
from nerfkit.render.gaussians import quat_to_rotmat

SPLIT_SCALE_DIVISOR = 1.6       # 3DGS: split children are 1.6x smaller


class DefaultStrategy:
    """3DGS adaptive density control (Kerbl et al. 2023, Sec. 5.2) with gsplat's semantics.

    Statistics per Gaussian: ``grad2d`` (sum of screen-space gradient norms, NDC units), ``count``
    (steps visible) and ``max_radii`` (largest screen radius / max(width, height)). At a refine
    step, Gaussians with mean gradient > ``grad_threshold`` are cloned when small (max scale <=
    ``grow_scale3d`` x extent) and split in two when large; then Gaussians are pruned when
    transparent (opacity < ``prune_opacity``) or, after the first reset period (step >
    ``reset_every``), when larger than ``prune_scale3d`` x extent or (step < ``refine_scale2d_stop``)
    wider on screen than ``prune_scale2d``. Opacities are capped at 2 x ``prune_opacity`` at resets.

    In a run on several processes each step's statistics are summed (radii: maxed) over the
    processes' images before they are added, so every process grows and prunes the same Gaussians.
    """

    across: CrossProcess = OneProcess()

    def __init__(self, refine: RefineOptions, options: DefaultStrategyOptions, scene_extent: float) -> None:
        self.refine, self.options = refine, options
        self.extent = float(scene_extent)
        self.grad2d: Tensor | None = None        # (N,)
        self.count: Tensor | None = None         # (N,)
        self.max_radii: Tensor | None = None     # (N,)

    def distribute(self, across: CrossProcess) -> None:
        self.across = across

    def is_accumulate_step(self, step: int) -> bool:
        return step < self.refine.refine_stop

    def is_refine_step(self, step: int) -> bool:
        return self.refine.is_refine_step(step)

    def is_reset_step(self, step: int) -> bool:
        every = self.options.reset_every
        return every > 0 and 0 < step < self.refine.refine_stop and step % every == 0

    def loss(self, params: Params) -> Tensor:
        return params["means"].new_zeros(())

    def state_dict(self) -> dict[str, Tensor]:
        if self.grad2d is None:
            return {}
        return {"grad2d": self.grad2d.clone(), "count": self.count.clone(),
                "max_radii": self.max_radii.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.grad2d, self.count, self.max_radii = (
            state[k].clone() if k in state else None for k in ("grad2d", "count", "max_radii"))

    @torch.no_grad()
    def step_post_backward(self, params: Params, optimizer: torch.optim.Optimizer, step: int,
                           info: dict[str, Any]) -> dict[str, int]:
        """Accumulate, then refine and/or reset opacities on their steps; returns counts."""
        stats: dict[str, int] = {}
        if self.is_accumulate_step(step):
            self.accumulate(params, info)
        if self.is_refine_step(step):
            self._ensure_stats(params)
            stats.update(self.grow(params, optimizer))
            stats["pruned"] = self.prune(params, optimizer, step)
            self._reset_stats(params)
        if self.is_reset_step(step):
            self.reset_opacities(params, optimizer)
            stats["opacity_reset"] = 1
        return stats

    def accumulate(self, params: Params, info: dict[str, Any]) -> None:
        """Add this step's screen-space gradients of visible Gaussians to the statistics, summed
        over the step's images and processes (:meth:`step_statistics`)."""
        self._ensure_stats(params)
        grad2d, count, max_radii = self.step_statistics(info, params["means"].shape[0])
        totals = self.across.sum(torch.stack([grad2d, count]))
        self.grad2d += totals[0]
        self.count += totals[1]
        torch.maximum(self.max_radii, self.across.max(max_radii), out=self.max_radii)

    def step_statistics(self, info: dict[str, Any], n: int) -> tuple[Tensor, Tensor, Tensor]:
        """One process's step: (N,) sums of screen-space gradient norms (NDC units) and visibility
        counts, and (N,) largest screen radii / max(width, height), over its images.

        ``info`` is one image's ``means2d`` (N, 2, with ``.grad``), ``radii`` (N,) or (N, 2) and
        ``width``, ``height``, or ``{"views": [such dicts]}``. An image without gradients adds nothing.
        """
        grad2d, count = self.grad2d.new_zeros(n), self.grad2d.new_zeros(n)
        max_radii = self.grad2d.new_zeros(n)
        for view in info.get("views", [info]):
            means2d = view.get("means2d")
            if means2d is None or means2d.grad is None:
                continue
            grad = means2d.grad.detach().reshape(-1, 2).clone()
            grad[:, 0] *= view["width"] / 2.0
            grad[:, 1] *= view["height"] / 2.0
            radii = view["radii"].detach()
            if radii.dim() == 2:                     # per-axis radii (newer gsplat)
                radii = radii.max(-1).values
            visible = radii > 0
            grad2d[visible] += grad[visible].norm(dim=-1)
            count[visible] += 1
            torch.maximum(max_radii, radii.float() / float(max(view["width"], view["height"])), out=max_radii)
        return grad2d, count, max_radii

    def grow(self, params: Params, optimizer: torch.optim.Optimizer) -> dict[str, int]:
        """Clone small and split large Gaussians with a high mean screen gradient."""
        c = self.options
        average = self.grad2d / self.count.clamp(min=1)
        high = average > c.grad_threshold
        large = torch.exp(params["scales"]).max(-1).values > c.grow_scale3d * self.extent
        cloned = (high & ~large).nonzero().squeeze(1)
        split = (high & large).nonzero().squeeze(1)
        if len(cloned):                           # copies appended at the end: indices stay valid
            append_rows(params, optimizer, {k: p.data[cloned] for k, p in params.items()})
            self.max_radii = torch.cat([self.max_radii, self.max_radii[cloned]])
        if len(split):
            append_rows(params, optimizer, split_children(params, split))
            self.max_radii = torch.cat([self.max_radii, self.max_radii[split].repeat(2)])
            keep = torch.ones(params["means"].shape[0], dtype=torch.bool, device=split.device)
            keep[split] = False
            keep_rows(params, optimizer, keep)
            self.max_radii = self.max_radii[keep]
        return {"cloned": len(cloned), "split": len(split)}

    def prune(self, params: Params, optimizer: torch.optim.Optimizer, step: int) -> int:
        """Remove transparent (and, after the first reset period, oversized) Gaussians."""
        c = self.options
        prune = torch.sigmoid(params["opacities"].reshape(-1)) < self.refine.prune_opacity
        if c.reset_every > 0 and step > c.reset_every:
            big = torch.exp(params["scales"]).max(-1).values > c.prune_scale3d * self.extent
            if step < c.refine_scale2d_stop:
                big |= self.max_radii > c.prune_scale2d
            prune |= big
        if prune.any():
            keep_rows(params, optimizer, ~prune)
            self.max_radii = self.max_radii[~prune]
        return int(prune.sum())

    def reset_opacities(self, params: Params, optimizer: torch.optim.Optimizer) -> None:
        """opacity = min(opacity, 2 prune_opacity) in logit space; its Adam moments restart."""
        threshold = self.refine.prune_opacity
        cap = math.log(2 * threshold / (1 - 2 * threshold))
        opacities = params["opacities"]
        opacities.data = opacities.data.clamp(max=cap)
        opacities.grad = None
        zero_state(optimizer, opacities)

    def _ensure_stats(self, params: Params) -> None:
        n = params["means"].shape[0]
        if self.grad2d is None or self.grad2d.shape[0] != n:
            self._reset_stats(params)

    def _reset_stats(self, params: Params) -> None:
        zeros = params["means"].new_zeros(params["means"].shape[0])
        self.grad2d, self.count, self.max_radii = zeros, zeros.clone(), zeros.clone()


def split_children(params: Params, index: Tensor) -> dict[str, Tensor]:
    """Two children per Gaussian ``index`` (S,): rows (2S, ...), child b of parent s at b S + s.

    Children are drawn from N(mean, Sigma) of the parent (global RNG) with scales / 1.6; all other
    attributes are copied.
    """
    scales = torch.exp(params["scales"].data[index])                       # (S, 3)
    rotations = quat_to_rotmat(params["quats"].data[index])               # (S, 3, 3)
    local = torch.randn((2,) + scales.shape, dtype=scales.dtype, device=scales.device) * scales
    offsets = torch.einsum("sij,bsj->bsi", rotations, local)              # (2, S, 3)
    children = {k: p.data[index].repeat((2,) + (1,) * (p.dim() - 1)) for k, p in params.items()}
    children["means"] = (params["means"].data[index] + offsets).reshape(-1, 3)
    children["scales"] = torch.log(scales / SPLIT_SCALE_DIVISOR).repeat(2, 1)
    return children

"""Densification strategies for 3D Gaussian splatting: when to add, split, move and remove Gaussians.

Gaussians live in a dict of ``nn.Parameter`` (gsplat naming): ``means`` (N, 3), ``quats`` (N, 4)
(w, x, y, z), ``scales`` (N, 3) log std-devs, ``opacities`` (N,) logits, ``sh0`` (N, 1, 3), ``shN``
(N, K, 3). One Adam optimizer holds one group per attribute. Whenever rows are added or removed the
*same* Parameter objects get new data (``param.data = ...``, ``param.grad = None``) and their Adam
moments are edited row by row, so the optimizer never has to be rebuilt (see :func:`apply_row_op`).

Per training step the method calls ``strategy.step_post_backward(params, optimizer, step, info)``
after ``loss.backward()`` and before ``optimizer.step()``; ``step`` is the 0-based step just done.

Schedules (``refine_start`` = a, ``refine_stop`` = b, ``refine_every`` = r, ``reset_every`` = t):

- statistics accumulate on every step ``< b`` (default);
- refinement runs when ``a < step < b`` and ``step % r == 0`` (both strategies);
- the opacity reset (default) runs when ``0 < step < b`` and ``step % t == 0``, after refinement of
  the same step, as 3DGS and gsplat do (no resets once densification has stopped; none when
  t <= 0, and then no size pruning either);
- MCMC position noise runs on every step, also after ``b``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from nerfkit.config import SplatConfig
from nerfkit.errors import NerfkitError
from nerfkit.render.gaussians import covariance_3d, quat_to_rotmat

Params = dict[str, nn.Parameter]

SPLIT_SCALE_DIVISOR = 1.6       # 3DGS: split children are 1.6x smaller
NOISE_GATE_SHARPNESS = 100.0    # 3DGS-MCMC: noise gate sigmoid(-k (opacity - t)) ...
NOISE_GATE_OPACITY = 0.005      # ... only (nearly) transparent Gaussians wander freely


@runtime_checkable
class Strategy(Protocol):
    """What the ``splat`` method needs from a densification strategy."""

    def step_post_backward(self, params: Params, optimizer: torch.optim.Optimizer, step: int,
                           info: dict[str, Any]) -> dict[str, int]:
        """Update statistics and edit the Gaussians; returns counts of what changed (for logs)."""
        ...

    def loss(self, params: Params) -> Tensor:
        """Extra loss terms (a scalar) to add to the photometric loss."""
        ...

    def state_dict(self) -> dict[str, Tensor]:
        ...

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        ...

    def is_refine_step(self, step: int) -> bool:
        ...


def make_strategy(config: SplatConfig, scene_extent: float) -> Strategy:
    """The strategy named by ``config.strategy`` ("default" or "mcmc") for a scene of this extent."""
    if config.strategy == "default":
        return DefaultStrategy(config, scene_extent)
    if config.strategy == "mcmc":
        return MCMCStrategy(config, scene_extent)
    raise NerfkitError(f"unknown densification strategy '{config.strategy}': expected default or mcmc")


# ----------------------------------------------------------------------------- row operations

def apply_row_op(params: Params, optimizer: torch.optim.Optimizer,
                 param_op: Callable[[str, Tensor], Tensor],
                 state_op: Callable[[str, Tensor], Tensor]) -> None:
    """Replace every parameter's rows with ``param_op(name, data)`` and its Adam moments likewise.

    The Parameter objects stay the same (the optimizer keeps referring to them); their gradient is
    dropped because it no longer matches the rows. ``state_op(name, moment)`` is applied to every
    state tensor shaped like the parameter (``exp_avg``, ``exp_avg_sq``, ...); scalars such as
    ``step`` are left alone, and a parameter without state yet (before the first step) is fine.
    """
    for name, param in params.items():
        state = optimizer.state.get(param, {})
        old_shape = param.shape
        param.data = param_op(name, param.data)
        param.grad = None
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == old_shape:
                state[key] = state_op(name, value)


def keep_rows(params: Params, optimizer: torch.optim.Optimizer, keep: Tensor) -> None:
    """Keep only the rows where ``keep`` (N,) bool is True, in order, moments included."""
    index = keep.nonzero().squeeze(1)
    apply_row_op(params, optimizer, lambda _, data: data[index], lambda _, moment: moment[index])


def append_rows(params: Params, optimizer: torch.optim.Optimizer, rows: dict[str, Tensor]) -> None:
    """Append new Gaussians ``rows[name]`` (M, ...) to every parameter; their moments start at 0."""
    def zeros_after(_: str, moment: Tensor) -> Tensor:
        count = next(iter(rows.values())).shape[0]
        return torch.cat([moment, moment.new_zeros((count,) + moment.shape[1:])])
    apply_row_op(params, optimizer, lambda name, data: torch.cat([data, rows[name].to(data)]),
                 zeros_after)


def write_rows(params: Params, optimizer: torch.optim.Optimizer, index: Tensor,
               values: dict[str, Tensor]) -> None:
    """Overwrite rows ``index`` (M,) of the parameters named in ``values`` (M, ...) in place.

    The rows count as new Gaussians: the moments of *every* parameter are zeroed there.
    Repeated indices must carry equal values.
    """
    def write(name: str, data: Tensor) -> Tensor:
        if name in values:
            data[index] = values[name].to(data).reshape(data[index].shape)
        return data

    def zero(_: str, moment: Tensor) -> Tensor:
        moment[index] = 0
        return moment
    apply_row_op(params, optimizer, write, zero)


def zero_state(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> None:
    """Zero all moments of one parameter (all rows); ``step`` stays."""
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value.zero_()


def group_lr(optimizer: torch.optim.Optimizer, name: str) -> float:
    """The current learning rate of the param group named ``name``."""
    for group in optimizer.param_groups:
        if group.get("name") == name:
            return float(group["lr"])
    raise KeyError(f"optimizer has no param group named '{name}'")


def sample_proportional(weights: Tensor, count: int) -> Tensor:
    """``count`` indices drawn with replacement with probability ∝ ``weights`` (N,) >= 0.

    Inverse-CDF sampling with the global torch RNG (no 2^24 category limit, unlike multinomial).
    """
    cdf = torch.cumsum(weights.double(), 0)
    draws = torch.rand(count, dtype=torch.float64, device=weights.device) * cdf[-1]
    return torch.searchsorted(cdf, draws, right=True).clamp_(max=weights.shape[0] - 1)


# ----------------------------------------------------------------------------- default (3DGS)

class DefaultStrategy:
    """3DGS adaptive density control (Kerbl et al. 2023, Sec. 5.2) with gsplat's semantics.

    Statistics per Gaussian: ``grad2d`` (sum of screen-space gradient norms, NDC units), ``count``
    (steps visible) and ``max_radii`` (largest screen radius / max(width, height)). At a refine
    step, Gaussians with mean gradient > ``grad_threshold`` are cloned when small (max scale <=
    ``grow_scale3d`` x extent) and split in two when large; then Gaussians are pruned when
    transparent (opacity < ``prune_opacity``) or, after the first reset period (step >
    ``reset_every``), when larger than ``prune_scale3d`` x extent or (step < ``refine_scale2d_stop``)
    wider on screen than ``prune_scale2d``. Opacities are capped at 2 x ``prune_opacity`` at resets.
    """

    def __init__(self, config: SplatConfig, scene_extent: float) -> None:
        self.config = config
        self.extent = float(scene_extent)
        self.grad2d: Tensor | None = None        # (N,)
        self.count: Tensor | None = None         # (N,)
        self.max_radii: Tensor | None = None     # (N,)

    def is_accumulate_step(self, step: int) -> bool:
        return step < self.config.refine_stop

    def is_refine_step(self, step: int) -> bool:
        c = self.config
        return c.refine_every > 0 and c.refine_start < step < c.refine_stop and step % c.refine_every == 0

    def is_reset_step(self, step: int) -> bool:
        c = self.config
        return c.reset_every > 0 and 0 < step < c.refine_stop and step % c.reset_every == 0

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
        """Add this step's screen-space gradients (N, 2) of visible Gaussians to the statistics."""
        self._ensure_stats(params)
        means2d = info.get("means2d")
        if means2d is None or means2d.grad is None:
            return
        grad = means2d.grad.detach().reshape(-1, 2).clone()
        grad[:, 0] *= info["width"] / 2.0
        grad[:, 1] *= info["height"] / 2.0
        radii = info["radii"].detach()
        if radii.dim() == 2:                     # per-axis radii (newer gsplat)
            radii = radii.max(-1).values
        visible = radii > 0
        self.grad2d[visible] += grad[visible].norm(dim=-1)
        self.count[visible] += 1
        scaled = radii.float() / float(max(info["width"], info["height"]))
        torch.maximum(self.max_radii, scaled, out=self.max_radii)

    def grow(self, params: Params, optimizer: torch.optim.Optimizer) -> dict[str, int]:
        """Clone small and split large Gaussians with a high mean screen gradient."""
        c = self.config
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
        c = self.config
        prune = torch.sigmoid(params["opacities"].reshape(-1)) < c.prune_opacity
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
        cap = math.log(2 * self.config.prune_opacity / (1 - 2 * self.config.prune_opacity))
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


# ----------------------------------------------------------------------------- MCMC

def relocation_denominator(new_opacities: Tensor, copies: int) -> Tensor:
    """sum_{i=1..n} sum_{k=0..i-1} C(i-1,k) (-1)^k o'^(k+1) / sqrt(k+1) for (M,) o' and n copies.

    Summing over i first (hockey stick: sum_{i=k+1..n} C(i-1,k) = C(n,k+1)) leaves the single sum
    sum_{m=1..n} C(n,m) (-1)^(m-1) o'^m / sqrt(m), evaluated in float64 with log-binomials.
    """
    x = new_opacities.double().clamp(min=1e-300)[:, None]                   # (M, 1)
    m = torch.arange(1, copies + 1, dtype=torch.float64, device=x.device)   # (n,)
    log_binom = math.lgamma(copies + 1) - torch.lgamma(m + 1) - torch.lgamma(copies - m + 1)
    sign = 1.0 - 2.0 * ((m - 1) % 2)
    terms = sign * torch.exp(log_binom + m * torch.log(x) - 0.5 * torch.log(m))
    return terms.sum(-1)


def relocation(opacities: Tensor, scales: Tensor, copies: Tensor) -> tuple[Tensor, Tensor]:
    """3DGS-MCMC Eq. 9: parameters of each of n copies replacing one Gaussian.

    Args:
        opacities: (M,) opacities in (0, 1); scales: (M, 3) std-devs (not logs);
        copies: (M,) int >= 1, the number n of Gaussians that will share the old one's place.
    Returns:
        new_opacities (M,) = 1 - (1 - o)^(1/n) (float64 maths, capped to [eps, 1 - eps] of float32)
        and new_scales (M, 3) = s o / denominator, so n copies composited give back o.
    """
    eps = torch.finfo(torch.float32).eps
    o = opacities.double().clamp(eps, 1 - eps)
    n = copies.to(torch.float64)
    new_o = 1 - torch.pow(1 - o, 1 / n)
    denominator = torch.empty_like(o)
    for value in torch.unique(copies).tolist():          # one vectorised sum per distinct n
        rows = copies == value
        denominator[rows] = relocation_denominator(new_o[rows], int(value))
    new_scales = scales.double() * (o / denominator)[:, None]
    return new_o.clamp(eps, 1 - eps).to(opacities.dtype), new_scales.to(scales.dtype)


class MCMCStrategy:
    """3DGS as Markov Chain Monte Carlo (Kheradmand et al. 2024).

    At refine steps, dead Gaussians (opacity <= ``prune_opacity``) are moved onto live ones drawn
    ∝ opacity, then new ones are added the same way up to min(``cap_max``, int(1.05 N)); each source
    drawn c times is shared by n = c + 1 Gaussians with opacity and scale from :func:`relocation`.
    Every step, positions get noise ``Sigma @ eps`` gated to low-opacity Gaussians and scaled by the
    current means learning rate x ``noise_lr``. Regularisers push opacities and scales down.
    """

    def __init__(self, config: SplatConfig, scene_extent: float) -> None:
        self.config = config
        self.extent = float(scene_extent)

    def is_refine_step(self, step: int) -> bool:
        c = self.config
        return c.refine_every > 0 and c.refine_start < step < c.refine_stop and step % c.refine_every == 0

    def is_reset_step(self, step: int) -> bool:
        return False

    def loss(self, params: Params) -> Tensor:
        """opacity_reg mean(sigmoid(opacities)) + scale_reg mean(exp(scales)), a scalar."""
        c = self.config
        return (c.opacity_reg * torch.sigmoid(params["opacities"]).mean()
                + c.scale_reg * torch.exp(params["scales"]).mean())

    def state_dict(self) -> dict[str, Tensor]:
        return {}                                # no running statistics; the RNG is the trainer's

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass

    @torch.no_grad()
    def step_post_backward(self, params: Params, optimizer: torch.optim.Optimizer, step: int,
                           info: dict[str, Any]) -> dict[str, int]:
        """Relocate and add on refine steps, then inject position noise; returns counts."""
        stats: dict[str, int] = {}
        if self.is_refine_step(step):
            stats["relocated"] = self.relocate_dead(params, optimizer)
            stats["added"] = self.add_new(params, optimizer)
        self.inject_noise(params, group_lr(optimizer, "means"))
        return stats

    def relocate_dead(self, params: Params, optimizer: torch.optim.Optimizer) -> int:
        """Move every dead Gaussian onto a live one drawn ∝ opacity; returns how many moved."""
        opacities = torch.sigmoid(params["opacities"].reshape(-1))
        dead = opacities <= self.config.prune_opacity
        alive = (~dead).nonzero().squeeze(1)
        n_dead = int(dead.sum())
        if n_dead == 0 or len(alive) == 0:
            return 0
        sources = alive[sample_proportional(opacities[alive], n_dead)]
        self._share(params, optimizer, sources)
        write_rows(params, optimizer, dead.nonzero().squeeze(1),
                   {k: p.data[sources] for k, p in params.items()})
        return n_dead

    def add_new(self, params: Params, optimizer: torch.optim.Optimizer) -> int:
        """Grow to min(cap_max, int(1.05 N)) with copies of Gaussians drawn ∝ opacity."""
        n = params["means"].shape[0]
        n_new = max(0, min(self.config.cap_max, int(1.05 * n)) - n)
        if n_new == 0:
            return 0
        sources = sample_proportional(torch.sigmoid(params["opacities"].reshape(-1)), n_new)
        self._share(params, optimizer, sources)
        append_rows(params, optimizer, {k: p.data[sources] for k, p in params.items()})
        return n_new

    def inject_noise(self, params: Params, means_lr: float) -> None:
        """means += Sigma (N, 3, 3) @ randn (N, 3) x gate(opacity) x means_lr x noise_lr."""
        opacities = torch.sigmoid(params["opacities"].data.reshape(-1))
        gate = torch.sigmoid(-NOISE_GATE_SHARPNESS * (opacities - NOISE_GATE_OPACITY))
        covariances = covariance_3d(params["quats"].data, params["scales"].data)
        noise = torch.randn_like(params["means"].data) * (gate * means_lr * self.config.noise_lr)[:, None]
        params["means"].data.add_(torch.einsum("nij,nj->ni", covariances, noise))

    def _share(self, params: Params, optimizer: torch.optim.Optimizer, sources: Tensor) -> None:
        """Give each source row (drawn c times) the opacity and scale of one of its c + 1 sharers."""
        copies = torch.bincount(sources, minlength=params["means"].shape[0])[sources] + 1
        opacities = torch.sigmoid(params["opacities"].data.reshape(-1)[sources])
        new_o, new_s = relocation(opacities, torch.exp(params["scales"].data[sources]), copies)
        write_rows(params, optimizer, sources,
                   {"opacities": torch.logit(new_o), "scales": torch.log(new_s)})

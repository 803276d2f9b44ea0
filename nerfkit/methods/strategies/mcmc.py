"""3DGS as Markov chain Monte Carlo: relocate dead Gaussians onto live ones, add copies up to a cap,
and let (nearly) transparent Gaussians wander with position noise."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from nerfkit.methods.base import CrossProcess
from nerfkit.methods.strategies.options import MCMCOptions, RefineOptions
from nerfkit.methods.strategies.rows import Params, append_rows, group_lr, sample_proportional, write_rows
from nerfkit.render.gaussians import covariance_3d

NOISE_GATE_SHARPNESS = 100.0    # 3DGS-MCMC: noise gate sigmoid(-k (opacity - t)) ...
NOISE_GATE_OPACITY = 0.005      # ... only (nearly) transparent Gaussians wander freely


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

    def __init__(self, refine: RefineOptions, options: MCMCOptions, scene_extent: float) -> None:
        self.refine, self.options = refine, options
        self.extent = float(scene_extent)

    def distribute(self, across: CrossProcess) -> None:
        """Nothing to combine: relocation and noise read only the parameters and the global RNG,
        the same on every process of a run."""

    def is_refine_step(self, step: int) -> bool:
        return self.refine.is_refine_step(step)

    def is_reset_step(self, step: int) -> bool:
        return False

    def loss(self, params: Params) -> Tensor:
        """opacity_reg mean(sigmoid(opacities)) + scale_reg mean(exp(scales)), a scalar."""
        c = self.options
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
        dead = opacities <= self.refine.prune_opacity
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
        n_new = max(0, min(self.options.cap_max, int(1.05 * n)) - n)
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
        noise = torch.randn_like(params["means"].data) * (gate * means_lr * self.options.noise_lr)[:, None]
        params["means"].data.add_(torch.einsum("nij,nj->ni", covariances, noise))

    def _share(self, params: Params, optimizer: torch.optim.Optimizer, sources: Tensor) -> None:
        """Give each source row (drawn c times) the opacity and scale of one of its c + 1 sharers."""
        copies = torch.bincount(sources, minlength=params["means"].shape[0])[sources] + 1
        opacities = torch.sigmoid(params["opacities"].data.reshape(-1)[sources])
        new_o, new_s = relocation(opacities, torch.exp(params["scales"].data[sources]), copies)
        write_rows(params, optimizer, sources,
                   {"opacities": torch.logit(new_o), "scales": torch.log(new_s)})

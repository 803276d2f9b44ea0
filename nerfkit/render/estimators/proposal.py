"""Mip-NeRF 360's proposal sampling (Barron et al. 2022, Sec. 3): small density fields ("proposals")
pick where the NeRF field is shaded, and are trained to bound its weights (interlevel loss), with the
distortion loss on the final weights.

Field-agnostic, like nerfacc's estimators: the method owns the proposal fields and passes one
``weights(s_edges) -> (R, S)`` callback per proposal level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from nerfkit.render.estimators.options import ProposalOptions
from nerfkit.render.losses import distortion_loss, interlevel_loss
from nerfkit.render.samplers import resample_edges, uniform_edges

ProposalWeightsFn = Callable[[Tensor], Tensor]       # (R, S+1) normalised edges -> (R, S) weights


@dataclass
class ProposalPlan:
    """The final edges and every proposal level's histogram on the way.

    Attributes:
        s_edges: (R, nerf_samples + 1) normalised edges of the final frusta.
        levels: one ``(s_edges (R, S+1), weights (R, S))`` per proposal level, in order.
    """

    s_edges: Tensor
    levels: list[tuple[Tensor, Tensor]] = field(default_factory=list)


@dataclass
class ProposalSampler:
    """``proposal_samples`` frusta per proposal level, resampled level by level; ``nerf_samples``
    frusta after the last level; loss weights of the interlevel and distortion losses."""

    proposal_samples: int = 64
    nerf_samples: int = 32
    interlevel_weight: float = 1.0
    distortion_weight: float = 0.01

    @classmethod
    def from_options(cls, options: ProposalOptions) -> "ProposalSampler":
        return cls(options.proposal_samples, options.nerf_samples, options.interlevel_weight,
                   options.distortion_weight)

    def sample(self, n_rays: int, proposals: Sequence[ProposalWeightsFn], jitter: bool,
               device: torch.device | str) -> ProposalPlan:
        """Walk the proposal levels from uniform edges; jittered while training."""
        s_edges = uniform_edges(n_rays, self.proposal_samples, jitter=jitter, device=device)
        plan = ProposalPlan(s_edges)
        for index, weights_of in enumerate(proposals):
            weights = weights_of(s_edges)
            plan.levels.append((s_edges, weights))
            last = index == len(proposals) - 1
            s_edges = resample_edges(s_edges, weights, self.nerf_samples if last else self.proposal_samples,
                                     jitter=jitter)
        plan.s_edges = s_edges
        return plan

    def losses(self, plan: ProposalPlan, final_weights: Tensor) -> dict[str, Tensor]:
        """``interlevel`` (summed over the levels) and ``distortion`` of the final (R, S) weights,
        unweighted; :meth:`weighted` sums them."""
        interlevel = sum(interlevel_loss(plan.s_edges, final_weights, s, w) for s, w in plan.levels)
        return {"interlevel": interlevel, "distortion": distortion_loss(plan.s_edges, final_weights)}

    def weighted(self, losses: dict[str, Tensor]) -> Tensor:
        return self.interlevel_weight * losses["interlevel"] + self.distortion_weight * losses["distortion"]

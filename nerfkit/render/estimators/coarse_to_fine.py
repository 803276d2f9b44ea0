"""Mip-NeRF's coarse-to-fine sampling (Barron et al. 2021, Sec. 3.2): one field shaded on
stratified frusta, then on frusta resampled from its blurred weights.

Field-agnostic: the method passes ``shade(s_edges) -> level`` (any object with per-frustum
``weights`` (R*S,) and per-ray ``rgb`` (R, 3)); the estimator picks the edges and adds the coarse
level's loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from nerfkit.render.samplers import resample_edges, uniform_edges


@dataclass
class CoarseToFinePlan:
    """Where to shade the final level, and the coarse level that led there.

    Attributes:
        s_edges: (R, fine_samples + 1) normalised edges of the final frusta.
        coarse: what ``shade`` returned for the stratified frusta.
    """

    s_edges: Tensor
    coarse: Any


@dataclass
class CoarseToFine:
    """Mip-NeRF's two passes: ``coarse_samples`` stratified frusta, ``fine_samples`` resampled from
    the coarse weights blurred and padded by ``padding`` (Eq. 18); loss weight of the coarse pass."""

    coarse_samples: int = 128
    fine_samples: int = 128
    padding: float = 0.01
    coarse_loss_weight: float = 0.1

    def sample(self, n_rays: int, shade: Callable[[Tensor], Any], jitter: bool,
               device: torch.device | str) -> CoarseToFinePlan:
        """Shade the coarse level and resample; jittered while training."""
        s_edges = uniform_edges(n_rays, self.coarse_samples, jitter=jitter, device=device)
        coarse = shade(s_edges)
        s_fine = resample_edges(s_edges, coarse.weights.view(n_rays, -1), self.fine_samples, jitter=jitter,
                                padding=self.padding, blur=True)
        return CoarseToFinePlan(s_fine, coarse)

    def losses(self, plan: CoarseToFinePlan, target_rgb: Tensor) -> dict[str, Tensor]:
        """``{"coarse_mse": mse of the coarse pass}``, unweighted; :meth:`weighted` sums them."""
        return {"coarse_mse": torch.mean((plan.coarse.rgb - target_rgb) ** 2)}

    def weighted(self, losses: dict[str, Tensor]) -> Tensor:
        return self.coarse_loss_weight * losses["coarse_mse"]

"""The strategy contract and the factory that picks one by name."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.methods.base import CrossProcess
from nerfkit.methods.strategies.default import DefaultStrategy
from nerfkit.methods.strategies.mcmc import MCMCStrategy
from nerfkit.methods.strategies.options import DefaultStrategyOptions, MCMCOptions, RefineOptions
from nerfkit.methods.strategies.rows import Params


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

    def distribute(self, across: CrossProcess) -> None:
        """Train as one of several processes: statistics kept across steps are combined with
        ``across`` so that every process edits the same Gaussians."""
        ...


def make_strategy(name: str, refine: RefineOptions, default: DefaultStrategyOptions, mcmc: MCMCOptions,
                  scene_extent: float) -> Strategy:
    """The strategy ``name`` ("default" or "mcmc") with its (resolved) options, for a scene of this extent."""
    if name == "default":
        return DefaultStrategy(refine, default, scene_extent)
    if name == "mcmc":
        return MCMCStrategy(refine, mcmc, scene_extent)
    raise NerfkitError(f"unknown densification strategy '{name}': expected default or mcmc")

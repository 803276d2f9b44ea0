"""Options of the densification strategies (plain settings, no torch).

Step counts are optimizer steps. ``auto`` values come from the splat method's schedule
(:class:`~nerfkit.methods.splat_config.SplatConfig`); a strategy is only ever built from resolved
options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nerfkit.core.settings import Settings, auto_field


@dataclass
class RefineOptions(Settings):
    """When both strategies edit the set, and what counts as transparent.

    Attributes:
        refine_start, refine_stop, refine_every: refinement runs when ``refine_start < step <
            refine_stop`` and ``step % refine_every == 0``.
        prune_opacity: Gaussians less opaque than this are dead (pruned, or relocated by MCMC).
    """

    refine_start: int | Literal["auto"] = auto_field()
    refine_stop: int | Literal["auto"] = auto_field()
    refine_every: int | Literal["auto"] = auto_field()
    prune_opacity: float = 0.005

    def is_refine_step(self, step: int) -> bool:
        """Whether the 0-based ``step`` just done refines (resolved options only)."""
        return (self.refine_every > 0 and self.refine_start < step < self.refine_stop
                and step % self.refine_every == 0)


@dataclass
class DefaultStrategyOptions(Settings):
    """3DGS adaptive density control (Kerbl et al. 2023, Sec. 5.2).

    Attributes:
        grad_threshold: mean screen-space gradient (NDC units) that triggers growth.
        grow_scale3d: x scene extent: smaller Gaussians are cloned, larger ones split.
        prune_scale3d: x extent: larger Gaussians are pruned after the first reset.
        prune_scale2d: x image size: larger screen radii are pruned before ``refine_scale2d_stop``
            (0 = never).
        reset_every: opacity reset period; ``auto`` from the schedule, -1 = never.
    """

    grad_threshold: float = 0.0002
    grow_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    prune_scale2d: float = 0.15
    refine_scale2d_stop: int = 0
    reset_every: int | Literal["auto"] = auto_field()


@dataclass
class MCMCOptions(Settings):
    """3DGS as Markov chain Monte Carlo (Kheradmand et al. 2024).

    Attributes:
        cap_max: the most Gaussians.
        noise_lr: position noise scale.
        opacity_reg, scale_reg: weights of the regularisers pushing opacities and scales down.
    """

    cap_max: int = 1_000_000
    noise_lr: float = 5e5
    opacity_reg: float = 0.01
    scale_reg: float = 0.01

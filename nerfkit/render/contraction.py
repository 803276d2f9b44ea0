"""Scene contraction for unbounded scenes (Mip-NeRF 360, Eq. 10, with the L-inf norm).

``contract(x) = x`` for ``|x|_inf <= 1`` and ``(2 - 1/|x|_inf) * x / |x|_inf`` outside, so all of
space maps into the cube ``[-2, 2]^3``; the L-inf norm fills that cube (better use of a hash grid than
the ball of the L2 version).
"""

from __future__ import annotations

import torch
from torch import Tensor


def contract(x: Tensor) -> Tensor:
    """(N, 3) scene points -> (N, 3) contracted points in [-2, 2]^3 (identity inside the unit cube)."""
    norm = x.abs().amax(-1, keepdim=True).clamp(min=1e-9)
    scale = torch.where(norm <= 1.0, torch.ones_like(norm), (2.0 - 1.0 / norm) / norm)
    return x * scale


def to_unit_cube(x: Tensor, aabb: Tensor, unbounded: bool) -> Tensor:
    """Scene points -> [0, 1]^3 grid coordinates: the box for objects, contracted space otherwise.

    Args:
        x: (N, 3) scene points; aabb: (2, 3) the scene box (unbounded scenes: the unit cube).
    """
    if unbounded:
        centre = (aabb[0] + aabb[1]) * 0.5
        half = (aabb[1] - aabb[0]) * 0.5
        return contract((x - centre) / half) * 0.25 + 0.5
    return (x - aabb[0]) / (aabb[1] - aabb[0])

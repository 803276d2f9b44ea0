"""Scene contraction for unbounded scenes (Mip-NeRF 360, Eq. 10, with the L-inf norm).

``contract(x) = x`` for ``|x|_inf <= 1`` and ``(2 - 1/|x|_inf) * x / |x|_inf`` outside, so all of
space maps into the cube ``[-2, 2]^3``; the L-inf norm fills that cube (better use of a hash grid than
the ball of the L2 version).

:func:`contract_gaussian` pushes a Gaussian through the contraction by linearisation (Eq. 9-10) and
:func:`contracted_scale` gives the contraction's isotropic scale (Zip-NeRF's use of it).
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


def _outside_terms(means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(N, 3) -> inv (N, 1) = 1/max(|x|_inf, 1), the axis k (N,) of the L-inf norm, outside (N, 1).

    Everything downstream is written in ``inv`` in (0, 1], so far points (1e30) stay finite.
    """
    norm, axis = means.abs().max(-1, keepdim=True)
    outside = norm > 1.0
    inv = 1.0 / norm.clamp(min=1.0)
    return inv, axis.squeeze(-1), outside


def contract_gaussian(means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor]:
    """Push axis-aligned Gaussians through :func:`contract` by linearisation (Mip-NeRF 360 Eq. 9-10).

    Like a Kalman filter's prediction step: the mean maps to ``contract(mean)`` and the covariance
    to ``J Sigma J^T``, with ``J`` the Jacobian of ``contract`` at the mean. For the L-inf contraction,
    with ``n = |x|_inf > 1`` attained at axis ``k`` and ``f(n) = (2n - 1) / n^2``:
    ``J_ii = f(n)`` (i != k), ``J_kk = 1 / n^2``, ``J_ik = 2 x_i sign(x_k) (1 - n) / n^3`` (i != k),
    all other entries 0; ``J = I`` inside the unit cube. ``J Sigma J^T`` is not diagonal in general;
    only its diagonal is returned: ``v'_i = J_ii^2 v_i + J_ik^2 v_k`` (i != k), ``v'_k = J_kk^2 v_k``.

    Args:
        means: (N, 3) Gaussian means in scene units.
        variances: (N, 3) diagonal of each covariance (scene units squared).
    Returns:
        (contracted means (N, 3) in [-2, 2]^3, diagonal of the contracted covariance (N, 3)), and
        nothing else (no off-diagonal terms). Finite values and gradients for any finite input.
    """
    inv, axis, outside = _outside_terms(means)
    is_k = torch.nn.functional.one_hot(axis, means.shape[-1]).to(torch.bool)
    sign_k = torch.sign(means.gather(-1, axis.unsqueeze(-1)))                    # (N, 1)
    diag = torch.where(is_k, inv * inv, (2.0 - inv) * inv)                       # J_ii
    ratio = means * inv                                                          # x_i / n, |.| <= 1
    column = torch.where(is_k, torch.zeros_like(means), 2.0 * ratio * sign_k * (inv - 1.0) * inv)
    var_k = variances.gather(-1, axis.unsqueeze(-1))                             # (N, 1)
    contracted = diag.square() * variances + column.square() * var_k
    return contract(means), torch.where(outside, contracted, variances)


def contracted_scale(means: Tensor) -> Tensor:
    """(N, 3) points -> (N,) isotropic linear scale of :func:`contract` at each point.

    ``det(J)^(1/3)`` with ``det(J) = f(n)^2 / n^2 = (2n - 1)^2 / n^6`` outside the unit cube
    (``n = |x|_inf``), i.e. ``(2 - 1/n)^(2/3) / n^(4/3)``; 1 inside. Zip-NeRF multiplies a Gaussian's
    std-dev by it to move it into contracted space.
    """
    inv, _, outside = _outside_terms(means)
    scale = (2.0 - inv).pow(2.0 / 3.0) * inv.pow(4.0 / 3.0)     # no pow(0, 1/3) gradient
    return torch.where(outside, scale, torch.ones_like(scale)).squeeze(-1)

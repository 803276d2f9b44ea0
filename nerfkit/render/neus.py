"""NeuS's volume rendering of a signed distance field (Wang et al. 2021): unbiased, occlusion-aware
weights from SDF values, and the equivalent densities the compositing op takes.

The SDF ``f`` is turned into opacity through the logistic CDF ``Phi_s(x) = sigmoid(s x)`` with a
learned sharpness ``s`` (the inverse standard deviation of the logistic density ``phi_s``). For the
interval ``[t_i, t_{i+1}]`` of a sample, NeuS's discrete opacity (Eq. 13) is

    alpha_i = max((Phi_s(f(p(t_i))) - Phi_s(f(p(t_{i+1})))) / Phi_s(f(p(t_i))), 0)

The SDF is known at the interval's midpoint with its gradient, so the values at the ends are
estimated along the ray (NeuS's implementation): ``f_prev / f_next = f_mid -/+ c delta / 2`` with
``c`` the directional derivative ``d . grad f``. Early in training ``c`` is annealed from
``-(|cos| + 1) / 2`` towards ``-|cos|`` (``cos_anneal``), so that surfaces seen from behind do not
get zero opacity before the field has learned which side is which.

The weights are then ``w_i = T_i alpha_i`` with ``T_i = prod_{j<i} (1 - alpha_j)``: exactly what
:func:`nerfkit.ops.composite` computes from densities ``sigma_i = -log(1 - alpha_i) / delta_i``,
which :func:`equivalent_density` gives, so the packed compositing (and its kernels) serve NeuS too.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_ALPHA = 1.0 - 1e-6
"""Largest opacity turned into a density (keeps ``-log(1 - alpha)`` finite)."""


def directional_slope(directions: Tensor, normals: Tensor, cos_anneal: float) -> Tensor:
    """NeuS's annealed ``d f / d t`` along the ray, never positive (a ray entering the surface).

    Args:
        directions: (S, 3) unit ray directions; normals: (S, 3) SDF gradients (unit-ish).
        cos_anneal: in [0, 1]: 0 = ``-(cos + 1) / 2`` clipped (start of training), 1 = ``-max(-cos, 0)``.
    Returns:
        (S,) slope ``c`` in scene units of SDF per scene unit along the ray.
    """
    cosine = (directions * normals).sum(-1)
    return -(torch.relu(-cosine * 0.5 + 0.5) * (1.0 - cos_anneal) + torch.relu(-cosine) * cos_anneal)


def neus_alpha(sdf: Tensor, slope: Tensor, deltas: Tensor, inv_s: Tensor) -> Tensor:
    """Per-interval opacity from the SDF at interval midpoints (Eq. 13 with estimated end values).

    Args:
        sdf: (S,) signed distance at each interval's midpoint (scene units, positive outside).
        slope: (S,) ``d f / d t`` along the ray (:func:`directional_slope`).
        deltas: (S,) interval lengths along the unit ray.
        inv_s: scalar (or (S,)) sharpness ``s`` > 0 (1 / scene unit).
    Returns:
        (S,) opacity in [0, 1].

    Example (a ray through a plane at t = 1.02 in steps of 0.1: the interval [1.0, 1.1] that holds
    the surface becomes opaque, the ones before it stay nearly clear):
        >>> t = torch.arange(0.05, 2.0, 0.1)
        >>> a = neus_alpha(1.02 - t, -torch.ones_like(t), torch.full_like(t, 0.1), torch.tensor(200.0))
        >>> round(float(a[:9].max()), 4), round(float(a[9]), 3), round(float(a[10]), 3)
        (0.0, 0.018, 1.0)
    """
    prev_sdf = sdf - slope * deltas * 0.5
    next_sdf = sdf + slope * deltas * 0.5
    prev_cdf = torch.sigmoid(prev_sdf * inv_s)
    next_cdf = torch.sigmoid(next_sdf * inv_s)
    return ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).clamp(0.0, 1.0)


def equivalent_density(alpha: Tensor, deltas: Tensor) -> Tensor:
    """The density whose interval opacity ``1 - exp(-sigma delta)`` is ``alpha``: (S,) -> (S,)."""
    return -torch.log1p(-alpha.clamp(max=MAX_ALPHA)) / deltas.clamp(min=1e-10)


def logistic_density(sdf: Tensor, inv_s: Tensor) -> Tensor:
    """NeuS's S-density ``phi_s(f) = s e^{-s f} / (1 + e^{-s f})^2`` (peak ``s / 4`` on the surface)."""
    x = sdf * inv_s
    return inv_s * torch.sigmoid(x) * torch.sigmoid(-x)

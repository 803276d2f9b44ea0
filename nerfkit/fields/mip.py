"""Mip-NeRF's conical-frustum Gaussians and integrated positional encoding (pure PyTorch).

Barron et al., "Mip-NeRF: A Multiscale Representation for Anti-Aliasing Neural Radiance Fields",
ICCV 2021. A pixel is a cone with apex at the camera centre; the part of the cone between two ray
distances t0 < t1 (a conical frustum) is approximated by a Gaussian with the frustum's mean and
covariance (Sec. 3.1, Eq. 7-8, diagonal form Eq. 16), and the positional encoding is replaced by its
expectation under that Gaussian (Eq. 14).

Geometry and units (as in the paper): a point on the ray is ``o + t d`` with ``d`` NOT necessarily
unit length, so ``t`` is measured in multiples of ``|d|``. ``radii`` is the cone's radius, in world
units, at ``t = 1`` (the paper's r-dot: the pixel width on the image plane at distance 1 scaled by
2/sqrt(12)); at distance ``t`` the cone's cross-section is a disk of radius ``radii * t``, lying in
the plane perpendicular to ``d``. Means come out in world units, (co)variances in world units squared.
"""

from __future__ import annotations

import torch
from torch import Tensor


def conical_frustum_moments(t_starts: Tensor, t_ends: Tensor, radii: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and variances of a point drawn uniformly by volume from a conical frustum (Eq. 7).

    Uses the numerically stable parametrisation t_mu = (t0 + t1) / 2, t_delta = (t1 - t0) / 2::

        mu_t      = t_mu + 2 t_mu t_delta^2 / (3 t_mu^2 + t_delta^2)
        sigma_t^2 = t_delta^2 / 3 - (4/15) t_delta^4 (12 t_mu^2 - t_delta^2) / (3 t_mu^2 + t_delta^2)^2
        sigma_r^2 = r^2 (t_mu^2 / 4 + (5/12) t_delta^2 - (4/15) t_delta^4 / (3 t_mu^2 + t_delta^2))

    which avoids the cancellation of the textbook ratios such as (3/4)(t1^4 - t0^4)/(t1^3 - t0^3)
    for thin frusta far from the camera.

    Args:
        t_starts, t_ends: (...) frustum bounds along the ray, 0 <= t0 <= t1, in units of |d|.
        radii: cone radius at t = 1 in world units; broadcastable against ``t_starts``.
    Returns:
        ``(t_mean, t_var, r_var)``, each of the broadcast shape: the mean distance mu_t (units of |d|),
        the variance along the ray sigma_t^2 (units of |d|^2), and the variance perpendicular to the
        ray, per perpendicular axis, sigma_r^2 (world units^2).
    """
    t_mu = (t_starts + t_ends) / 2
    t_delta = (t_ends - t_starts) / 2
    t_mu2, t_delta2 = t_mu * t_mu, t_delta * t_delta
    denom = 3 * t_mu2 + t_delta2
    # q = t_delta^2 / (3 t_mu^2 + t_delta^2) lies in [0, 1]; the denominator is 0 only for the
    # degenerate frustum t0 = t1 = 0, where q is set to its limit 0 (double `where`: finite gradients).
    nonzero = denom > 0
    q = torch.where(nonzero, t_delta2 / torch.where(nonzero, denom, torch.ones_like(denom)), torch.zeros_like(denom))
    t_mean = t_mu + 2 * t_mu * q
    t_var = t_delta2 / 3 - (4 / 15) * q * q * (12 * t_mu2 - t_delta2)
    r_var = radii * radii * (t_mu2 / 4 + (5 / 12) * t_delta2 - (4 / 15) * t_delta2 * q)
    return t_mean, t_var, r_var


def lift_gaussian(
    origins: Tensor, directions: Tensor, t_mean: Tensor, t_var: Tensor, r_var: Tensor, diag: bool = True
) -> tuple[Tensor, Tensor]:
    """Turn the 1D frustum moments into a 3D Gaussian in world space (Eq. 8 / Eq. 16).

    mean = o + mu_t d;  Sigma = sigma_t^2 d d^T + sigma_r^2 (I - d d^T / |d|^2);
    diag(Sigma) = sigma_t^2 d^2 + sigma_r^2 (1 - d^2 / |d|^2) (elementwise squares).

    Args:
        origins, directions: (..., 3), broadcastable against the moments with a trailing 3.
        t_mean, t_var, r_var: (...) as returned by :func:`conical_frustum_moments`.
        diag: return the (..., 3) diagonal (what IPE needs) instead of the full (..., 3, 3) matrix.
    Returns:
        ``(means (..., 3), covariances (..., 3) or (..., 3, 3))`` in world units / world units^2.
    """
    means = origins + t_mean[..., None] * directions
    d_sq_norm = (directions * directions).sum(-1, keepdim=True).clamp_min(torch.finfo(directions.dtype).tiny)
    if diag:
        d_sq = directions * directions
        cov = t_var[..., None] * d_sq + r_var[..., None] * (1 - d_sq / d_sq_norm)
        return means, cov
    outer = directions[..., :, None] * directions[..., None, :]
    eye = torch.eye(3, dtype=directions.dtype, device=directions.device)
    cov = t_var[..., None, None] * outer + r_var[..., None, None] * (eye - outer / d_sq_norm[..., None])
    return means, cov


def conical_frustum_gaussian(
    origins: Tensor,
    directions: Tensor,
    radii: Tensor,
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor | None = None,
    diag: bool = True,
) -> tuple[Tensor, Tensor]:
    """Gaussian approximation of the conical frustum of each sample (Mip-NeRF Sec. 3.1, Eq. 7-8, 16).

    Two layouts, one function (as nerfacc's rendering functions):

    * batched: ``t_starts, t_ends`` are (R, S); outputs are (R, S, 3) [and (R, S, 3, 3)];
    * packed: ``ray_indices`` (N,) long names the ray of each of N samples, ``t_starts, t_ends`` are
      (N,); outputs are (N, 3) [and (N, 3, 3)].

    Args:
        origins: (R, 3) ray origins (the cone apex), world units.
        directions: (R, 3) ray directions, any non-zero length; t is measured in units of |d|.
        radii: (R,) cone radius at t = 1, world units.
        t_starts, t_ends: frustum bounds, 0 <= t0 <= t1, (R, S) batched or (N,) packed.
        ray_indices: (N,) int64 ray of each packed sample; None for the batched layout.
        diag: covariances as their (..., 3) diagonal (default, Eq. 16) or full (..., 3, 3) (Eq. 8).
    Returns:
        ``(means, covariances)``: means (..., 3) world units; covariances (..., 3) or (..., 3, 3),
        world units^2.

    Example:
        >>> o, d = torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]])
        >>> m, c = conical_frustum_gaussian(o, d, torch.tensor([0.1]), torch.tensor([[1.0]]), torch.tensor([[3.0]]))
        >>> m.squeeze().tolist(), [round(v, 5) for v in c.squeeze().tolist()]
        ([0.0, 0.0, 2.307692289352417], [0.01396, 0.01396, 0.25917])
    """
    if origins.shape[-1] != 3 or directions.shape[-1] != 3:
        raise ValueError(f"origins and directions must be (R, 3), got {tuple(origins.shape)}, "
                         f"{tuple(directions.shape)}")
    if t_starts.shape != t_ends.shape:
        raise ValueError(f"t_starts {tuple(t_starts.shape)} and t_ends {tuple(t_ends.shape)} differ")
    if ray_indices is None:
        if t_starts.dim() != 2 or t_starts.shape[0] != origins.shape[0]:
            raise ValueError(f"batched layout needs t_starts (R, S) with R = {origins.shape[0]}, "
                             f"got {tuple(t_starts.shape)}")
        origins, directions, radii = origins[:, None, :], directions[:, None, :], radii[:, None]
    else:
        if t_starts.dim() != 1 or ray_indices.shape != t_starts.shape:
            raise ValueError(f"packed layout needs t_starts and ray_indices (N,), got {tuple(t_starts.shape)}, "
                             f"{tuple(ray_indices.shape)}")
        origins, directions, radii = origins[ray_indices], directions[ray_indices], radii[ray_indices]
    t_mean, t_var, r_var = conical_frustum_moments(t_starts, t_ends, radii)
    return lift_gaussian(origins, directions, t_mean, t_var, r_var, diag=diag)


def integrated_pos_enc(means: Tensor, diag_cov: Tensor, min_deg: int, max_deg: int) -> Tensor:
    """Integrated positional encoding: the positional encoding's expectation under a Gaussian (Eq. 14).

    For each coordinate x ~ N(mu, var) and frequency 2^l, l = min_deg .. max_deg - 1:
    E[sin(2^l x)] = sin(2^l mu) exp(-4^l var / 2),  E[cos(2^l x)] = cos(2^l mu) exp(-4^l var / 2).
    Each feature depends on one coordinate only, so the diagonal of the covariance is all it needs: the
    result is exact for a full-covariance Gaussian too (Eq. 16). As var -> 0 it is the plain encoding.

    Args:
        means: (..., 3) Gaussian means, world units.
        diag_cov: (..., 3) per-axis variances, world units^2.
        min_deg, max_deg: frequencies 2^min_deg .. 2^(max_deg - 1); L = max_deg - min_deg >= 0.
    Returns:
        (..., 2 * 3 * L): all sines then all cosines; within each half, frequency-major
        ``[l0: x y z, l1: x y z, ...]``.
    """
    if max_deg < min_deg:
        raise ValueError(f"max_deg ({max_deg}) must be >= min_deg ({min_deg})")
    scales = 2.0 ** torch.arange(min_deg, max_deg, dtype=means.dtype, device=means.device)  # (L,)
    batch = means.shape[:-1]
    scaled_mean = (means[..., None, :] * scales[:, None]).reshape(*batch, -1)  # (..., 3L)
    scaled_var = (diag_cov[..., None, :] * (scales * scales)[:, None]).reshape(*batch, -1)
    damp = torch.exp(-0.5 * scaled_var)
    return torch.cat([torch.sin(scaled_mean) * damp, torch.cos(scaled_mean) * damp], -1)

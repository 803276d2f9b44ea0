"""Ray samplers in the batched layout: R rays, each with N bins given by sorted edges (R, N+1).

Every sampler works in a generic monotone coordinate ``s`` in [0, 1], Mip-NeRF 360's "normalized ray
distance" (Barron et al. 2022, Sec. 2): ``s = (g(t) - g(near)) / (g(far) - g(near))`` for a spacing
function ``g``. A method maps t <-> s with :func:`normalized_to_t` / :func:`t_to_normalized`, draws
first edges with :func:`uniform_edges` and refines them with :func:`resample_edges` (proposal
sampling: inverse-transform sampling of the previous level's weight histogram).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nerfkit.ops import ray_aabb_intersect

SpacingFn = Callable[[Tensor], Tensor]


def _identity(t: Tensor) -> Tensor:
    return t


def _reciprocal(t: Tensor) -> Tensor:
    """1/t for t > 0, clamped away from 0 so 1/t stays finite (and so does its gradient)."""
    return 1.0 / t.clamp(min=torch.finfo(t.dtype).tiny ** 0.5)


def _contract_distance(t: Tensor) -> Tensor:
    """g(t) = t for t <= 1, 2 - 1/t for t > 1 (the 1D L-inf contraction, in [0, 2) for t >= 0)."""
    return torch.where(t <= 1.0, t, 2.0 - 1.0 / t.clamp(min=1.0))


def _uncontract_distance(g: Tensor) -> Tensor:
    """Inverse of :func:`_contract_distance`: t = g for g <= 1, 1 / (2 - g) for 1 < g < 2."""
    gap = (2.0 - g.clamp(min=1.0)).clamp(min=torch.finfo(g.dtype).tiny ** 0.5)
    return torch.where(g <= 1.0, g, 1.0 / gap)


def spacing_functions(name: str) -> tuple[SpacingFn, SpacingFn]:
    """The pair ``(t_to_g, g_to_t)`` of a spacing (Mip-NeRF 360 Sec. 2, the function ``g``).

    ``'linear'``: g = t. ``'disparity'``: g = 1/t (t > 0), uniform in inverse depth.
    ``'contracted'``: g(t) = t for t <= 1 and 2 - 1/t for t > 1, the 1D version of the L-inf scene
    contraction (:func:`nerfkit.render.contraction.contract`): uniform steps in g are uniform steps in
    contracted space along rays from the origin. Both functions map tensors elementwise.

    Raises:
        ValueError: for any other name.
    """
    pairs = {
        "linear": (_identity, _identity),
        "disparity": (_reciprocal, _reciprocal),
        "contracted": (_contract_distance, _uncontract_distance),
    }
    if name not in pairs:
        raise ValueError(f"unknown spacing {name!r}: expected one of {sorted(pairs)}")
    return pairs[name]


def _column(x: Tensor, like: Tensor) -> Tensor:
    """(R,) per-ray values -> (R, 1), so they broadcast against (R, N); (R, 1) passes through."""
    return x.unsqueeze(-1) if x.dim() < like.dim() else x


def normalized_to_t(s: Tensor, near: Tensor, far: Tensor, spacing: str) -> Tensor:
    """Normalized ray distance -> metric distance (Mip-NeRF 360 Sec. 2).

    ``t = g^-1(s g(far) + (1 - s) g(near))``; the result is clamped to [near, far] so rounding in
    ``g^-1(g(.))`` never leaves the interval, and s = 0 / s = 1 give exactly near / far.

    Args:
        s: (R, N) normalized distances in [0, 1].
        near, far: (R,) (or (R, 1)) ray bounds in scene units, near <= far.
        spacing: a name accepted by :func:`spacing_functions`.
    Returns:
        (R, N) distances t along the rays, in scene units.
    """
    t_to_g, g_to_t = spacing_functions(spacing)
    near, far = _column(near, s), _column(far, s)
    t = g_to_t(s * t_to_g(far) + (1.0 - s) * t_to_g(near))
    t = torch.minimum(torch.maximum(t, near), far)
    return torch.where(s <= 0, near, torch.where(s >= 1, far, t))


def t_to_normalized(t: Tensor, near: Tensor, far: Tensor, spacing: str) -> Tensor:
    """Inverse of :func:`normalized_to_t`: ``s = (g(t) - g(near)) / (g(far) - g(near))``.

    Args:
        t: (R, N) distances in scene units; near, far: (R,) (or (R, 1)).
    Returns:
        (R, N) normalized distances; 0 for rays with near == far (no division by zero).
    """
    t_to_g, _ = spacing_functions(spacing)
    near, far = _column(near, t), _column(far, t)
    g_near, g_far = t_to_g(near), t_to_g(far)
    span = g_far - g_near
    safe = torch.where(span == 0, torch.ones_like(span), span)
    return torch.where(span == 0, torch.zeros_like(t), (t_to_g(t) - g_near) / safe)


def _quantiles(n_rays: int, n_bins: int, jitter: bool, generator: torch.Generator | None,
               device: torch.device | str | None, dtype: torch.dtype) -> Tensor:
    """(R, n_bins+1): ``linspace(0, 1)``, interior points moved by U(-0.5, 0.5)/n_bins when jitter."""
    base = torch.arange(n_bins + 1, device=device, dtype=dtype).expand(n_rays, n_bins + 1)
    if jitter and n_bins > 1:
        source = generator.device if generator is not None else device
        noise = torch.rand(n_rays, n_bins - 1, generator=generator, device=source, dtype=dtype)
        shift = torch.cat([base.new_zeros(n_rays, 1), noise.to(base.device) - 0.5,
                           base.new_zeros(n_rays, 1)], dim=-1)
        base = base + shift                     # |shift| < 1/2: interior points never cross
    return base / n_bins


def uniform_edges(n_rays: int, n_bins: int, *, jitter: bool, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Stratified bin edges in normalized distance s (NeRF's stratified sampling, Eq. 2).

    Returns:
        (n_rays, n_bins+1) sorted edges in [0, 1]: ``linspace(0, 1, n_bins+1)``, each interior edge
        shifted by U(-0.5, 0.5)/n_bins when ``jitter`` (so they stay sorted); the endpoints are exactly
        0 and 1. ``generator`` makes the jitter reproducible.
    """
    return _quantiles(n_rays, n_bins, jitter, generator, device, dtype)


def blur_weights(weights: Tensor) -> Tensor:
    """Mip-NeRF Eq. 18 "blurpool": ``w'_k = (max(w_{k-1}, w_k) + max(w_k, w_{k+1})) / 2``.

    A 2-tap max filter then a 2-tap box filter, with edge padding (``w_{-1} = w_0``,
    ``w_N = w_{N-1}``); a wide, smooth upper envelope of the histogram.

    Args:
        weights: (R, N) histogram weights. Returns: (R, N).
    """
    padded = torch.cat([weights[..., :1], weights, weights[..., -1:]], dim=-1)   # (R, N+2)
    pair_max = torch.maximum(padded[..., :-1], padded[..., 1:])                  # (R, N+1)
    return 0.5 * (pair_max[..., :-1] + pair_max[..., 1:])


def _histogram_cdf(edges: Tensor, weights: Tensor) -> Tensor:
    """(R, N+1) CDF of a histogram, 0 first and exactly 1 last; empty rays use bin widths, then 1s."""
    widths = (edges[..., 1:] - edges[..., :-1]).clamp(min=0.0)
    weights = torch.where(weights.sum(-1, keepdim=True) > 0, weights, widths)     # uniform in s
    weights = torch.where(weights.sum(-1, keepdim=True) > 0, weights, torch.ones_like(weights))
    cumulative = torch.cumsum(weights, dim=-1)
    cdf = cumulative / cumulative[..., -1:]                                       # last is exactly 1
    return torch.cat([torch.zeros_like(cdf[..., :1]), cdf], dim=-1)


def resample_edges(edges: Tensor, weights: Tensor, n_bins: int, *, jitter: bool, padding: float = 0.0,
                   blur: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """Inverse-transform sampling of a piecewise-constant histogram (NeRF Eq. 5, Mip-NeRF 360 Sec. 3).

    The density is constant within each bin, so the CDF is piecewise linear in s and inverting it at
    quantiles ``u = linspace(0, 1, n_bins+1)`` (interior ones jittered as in :func:`uniform_edges`)
    gives the new edges: more of them where the weight is. Weights go through :func:`blur_weights`
    when ``blur``, then get ``padding`` added (Mip-NeRF: blur=True, padding=0.01). Nothing here is
    differentiated (edges and weights are detached). Rays whose weights are all zero fall back to
    uniform edges within their span; zero-width bins are allowed (no NaN).

    Args:
        edges: (R, N+1) sorted bin edges in s; weights: (R, N) non-negative bin weights.
        n_bins: number of new bins.
    Returns:
        (R, n_bins+1) sorted edges, first and last exactly ``edges[:, 0]`` and ``edges[:, -1]``.
    """
    edges, weights = edges.detach(), weights.detach().clamp(min=0.0)
    if blur:
        weights = blur_weights(weights)
    cdf = _histogram_cdf(edges, weights + padding)
    u = _quantiles(edges.shape[0], n_bins, jitter, generator, edges.device, edges.dtype)
    n_old = weights.shape[-1]
    # bin i with cdf_i <= u < cdf_{i+1}; for flat stretches of the CDF, the last such i
    index = (torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True) - 1).clamp(0, n_old - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, index), cdf.gather(-1, index + 1)
    left, right = edges.gather(-1, index), edges.gather(-1, index + 1)
    rise = cdf_hi - cdf_lo
    frac = torch.where(rise > 0, (u - cdf_lo) / torch.where(rise > 0, rise, torch.ones_like(rise)),
                       torch.zeros_like(u)).clamp(0.0, 1.0)
    new = torch.lerp(left, right, frac)
    new = torch.cummax(new, dim=-1).values                                        # rounding-safe
    lo, hi = edges[..., :1], edges[..., -1:]
    new = torch.minimum(torch.maximum(new, lo), hi)
    return torch.cat([lo, new[..., 1:-1], hi], dim=-1)


def ray_bounds(origins: Tensor, directions: Tensor, aabb: Tensor, near: float, far: float,
               unbounded: bool) -> tuple[Tensor, Tensor]:
    """(R,) near and far distances of (R, 3) rays for a sampler that spans [near, far].

    Unbounded scenes: ``near`` .. ``far`` (scene units) for every ray. Objects: the (2, 3) box
    ``aabb`` clips the rays (never closer than ``near``); a ray that misses it gets an empty interval.
    """
    n = origins.shape[0]
    near_t = torch.full((n,), near, device=origins.device)
    if unbounded:
        return near_t, torch.full((n,), far, device=origins.device)
    t_near, t_far = ray_aabb_intersect(origins, directions, aabb)
    hit = torch.isfinite(t_near)
    lower = torch.where(hit, torch.maximum(t_near, near_t), near_t)
    upper = torch.where(hit, torch.maximum(t_far, near_t), near_t)
    return lower, upper


def packed_intervals(t_edges: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(R, S+1) sorted edges -> packed t_starts, t_ends and int64 ray_indices, each (R*S,)."""
    n_rays, n_samples = t_edges.shape[0], t_edges.shape[1] - 1
    ray_indices = torch.arange(n_rays, device=t_edges.device).repeat_interleave(n_samples)
    return t_edges[:, :-1].reshape(-1), t_edges[:, 1:].reshape(-1), ray_indices

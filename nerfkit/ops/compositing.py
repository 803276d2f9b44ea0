"""Volume rendering of packed samples (Max 1995; NeRF Eq. 3).

For the samples of one ray, sorted front to back, with densities ``sigma_i`` on intervals
``delta_i = t_end_i - t_start_i``::

    alpha_i = 1 - exp(-sigma_i * delta_i)
    T_i     = exp(-sum_{j<i} sigma_j * delta_j)          (transmittance)
    w_i     = T_i * alpha_i
    rgb     = sum_i w_i c_i,  depth = sum_i w_i (t_start_i + t_end_i) / 2,  alpha = sum_i w_i

Samples are packed: ``ray_indices`` (S,) sorted, one run of samples per ray (from ``march_rays``).
The twins (:func:`composite_ref`, :func:`render_weights`) live in :mod:`nerfkit.ops.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfkit.ops._backend import use_native
from nerfkit.ops.reference import Composited, composite_ref, exclusive_segment_sum, render_weights


def median_depth(weights: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor, alpha: Tensor,
                 n_rays: int) -> Tensor:
    """Per-ray median distance: the midpoint of the first sample at which the accumulated weight
    reaches half of the ray's ``alpha`` (0 for rays with no weight).

    Unlike the expected depth ``sum w_i t_i / alpha``, it is not pulled off the surface by thin haze
    or floaters that hold a little of the weight (nerfstudio's ``median`` depth renderer).

    Args:
        weights, t_starts, t_ends, ray_indices: (S,) packed samples, sorted front to back per ray.
        alpha: (R,) accumulated weight per ray.
    Returns:
        (R,) distance along the unit ray.
    """
    depth = torch.zeros(n_rays, dtype=t_starts.dtype, device=t_starts.device)
    if weights.numel() == 0:
        return depth
    accumulated = exclusive_segment_sum(weights, ray_indices, n_rays) + weights      # inclusive
    reached = (accumulated >= 0.5 * alpha[ray_indices]) & (alpha[ray_indices] > 0)
    index = torch.arange(weights.numel(), device=weights.device)
    first = torch.full((n_rays,), weights.numel(), dtype=torch.long, device=weights.device)
    first = first.scatter_reduce(0, ray_indices[reached], index[reached], reduce="amin")
    found = first < weights.numel()
    mids = 0.5 * (t_starts + t_ends)
    depth[found] = mids[first[found]]
    return depth


def composite(sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor,
              n_rays: int) -> Composited:
    """Composite packed samples front to back into per-ray colour, depth and opacity.

    Args:
        sigmas: (S,) densities >= 0 (1 / scene unit); rgbs: (S, 3) colours in [0, 1].
        t_starts, t_ends: (S,) sample intervals along the unit ray.
        ray_indices: (S,) int64, sorted (each ray's samples together, front to back), the ray of
            each sample, in [0, R); n_rays: R. Checked on the CPU (ValueError); not on CUDA,
            where a check would cost a host sync per call.
    Returns:
        :class:`Composited` (rgb (R, 3), depth (R,), alpha (R,), weights (S,)); gradients flow
        to ``sigmas`` and ``rgbs``. Rays without samples get zeros.

    Example (one ray, one opaque sample: all weight on it):
        >>> out = composite(torch.tensor([1e4]), torch.tensor([[1.0, 0.5, 0.0]]),
        ...                 torch.tensor([1.0]), torch.tensor([1.5]), torch.tensor([0]), 1)
        >>> out.rgb, out.depth, out.alpha
        (tensor([[1.0000, 0.5000, 0.0000]]), tensor([1.2500]), tensor([1.]))
    """
    n_samples = sigmas.shape[0]
    if sigmas.ndim != 1 or rgbs.shape != (n_samples, 3) or t_starts.shape != (n_samples,) \
            or t_ends.shape != (n_samples,) or ray_indices.shape != (n_samples,):
        raise ValueError("composite expects sigmas (S,), rgbs (S, 3), t_starts/t_ends/ray_indices (S,); "
                         f"got {tuple(sigmas.shape)}, {tuple(rgbs.shape)}, {tuple(t_starts.shape)}, "
                         f"{tuple(t_ends.shape)}, {tuple(ray_indices.shape)}")
    if use_native(sigmas, rgbs, t_starts):
        from nerfkit.ops._native import composite_native
        return composite_native(sigmas.contiguous(), rgbs.contiguous(), t_starts.contiguous(),
                                t_ends.contiguous(), ray_indices.contiguous(), n_rays)   # the CPU kernel checks
    if not ray_indices.is_cuda:
        check_sorted_rays(ray_indices, n_rays)
    return composite_ref(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays)


def check_sorted_rays(ray_indices: Tensor, n_rays: int) -> None:
    """ValueError unless ``ray_indices`` (S,) is sorted and within [0, n_rays) (what the twin and
    the kernels assume: each ray's samples form one run)."""
    if ray_indices.numel() == 0:
        return
    if int(ray_indices.min()) < 0 or int(ray_indices.max()) >= n_rays:
        raise ValueError(f"composite expects ray_indices in [0, {n_rays}), got values from "
                         f"{int(ray_indices.min())} to {int(ray_indices.max())}")
    descents = torch.nonzero(ray_indices[1:] < ray_indices[:-1])
    if descents.numel():
        s = int(descents[0]) + 1
        raise ValueError("composite expects ray_indices sorted (each ray's samples together, front to back), "
                         f"got ray {int(ray_indices[s])} after ray {int(ray_indices[s - 1])} at sample {s}")


__all__ = ["Composited", "check_sorted_rays", "composite", "composite_ref", "exclusive_segment_sum", "median_depth",
           "render_weights"]

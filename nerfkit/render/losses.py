"""Histogram losses of Mip-NeRF 360 (Barron et al. 2022) on bins in normalized ray distance s.

Both take the batched layout: R rays, bin edges (R, N+1) sorted in s, bin weights (R, N) (the volume
rendering weights, NeRF Eq. 3). :func:`interlevel_loss` trains the proposal network to bound the NeRF
weights from above (Eq. 12-13); :func:`distortion_loss` pulls each ray's weights into one compact
interval, removing floaters (Eq. 15).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _exclusive_cumsum(x: Tensor) -> Tensor:
    """(R, N) -> (R, N): ``out_i = sum_{j<i} x_j`` (0 first)."""
    return torch.cat([torch.zeros_like(x[..., :1]), torch.cumsum(x[..., :-1], dim=-1)], dim=-1)


def outer_weights(edges: Tensor, proposal_edges: Tensor, proposal_weights: Tensor) -> Tensor:
    """Mip-NeRF 360 Eq. 13: the proposal mass over each query bin ``[a, b]``.

    ``w_outer = sum of proposal_weights[j] over the proposal bins [c_j, c_{j+1}] that overlap [a, b]
    on an interval of positive length`` (``c_j < b`` and ``c_{j+1} > a``); a zero-width query bin
    strictly inside a proposal bin gets that bin's weight. O(N + M) per ray with cumulative sums and
    ``searchsorted``.

    Args:
        edges: (R, N+1) sorted query edges; proposal_edges: (R, M+1) sorted, same coordinate.
        proposal_weights: (R, M).
    Returns:
        (R, N) outer weights, differentiable in ``proposal_weights``.
    """
    n_prop = proposal_weights.shape[-1]
    cumulative = torch.cat([torch.zeros_like(proposal_weights[..., :1]),
                            torch.cumsum(proposal_weights, dim=-1)], dim=-1)          # (R, M+1)
    proposal_edges = proposal_edges.contiguous()
    lefts, rights = edges[..., :-1].contiguous(), edges[..., 1:].contiguous()
    # first overlapping bin: #{c_k <= a} - 1; one past the last: #{c_k < b}
    first = (torch.searchsorted(proposal_edges, lefts, right=True) - 1).clamp(0, n_prop)
    stop = torch.searchsorted(proposal_edges, rights, right=False).clamp(0, n_prop)
    stop = torch.maximum(stop, first)                                                 # empty -> 0
    return cumulative.gather(-1, stop) - cumulative.gather(-1, first)


def interlevel_loss(fine_edges: Tensor, fine_weights: Tensor, proposal_edges: Tensor,
                    proposal_weights: Tensor) -> Tensor:
    """Mip-NeRF 360 Eq. 12-13: the proposal histogram must upper-bound the (detached) NeRF histogram.

    ``L = mean_rays sum_i max(0, w_i - w_outer_i)^2 / (w_i + 1e-7)`` with ``w_outer`` from
    :func:`outer_weights`. Only ``proposal_weights`` receive gradients: the NeRF weights and all edges
    are detached, so the loss never pulls the NeRF towards the proposal.

    Args:
        fine_edges: (R, N+1), fine_weights: (R, N) the NeRF histogram.
        proposal_edges: (R, M+1), proposal_weights: (R, M) the proposal histogram (same s coordinate).
    Returns:
        () scalar, 0 when the proposal bounds the NeRF histogram everywhere.
    """
    weights = fine_weights.detach()
    outer = outer_weights(fine_edges.detach(), proposal_edges.detach(), proposal_weights)
    excess = (weights - outer).clamp(min=0.0)
    return (excess.square() / (weights + 1e-7)).sum(-1).mean()


def distortion_loss(edges: Tensor, weights: Tensor) -> Tensor:
    """Mip-NeRF 360 Eq. 15 in normalized distance s, computed in O(N) (their Eq. 16 idea).

    ``L = mean_rays [ sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i) ]`` with bin
    midpoints ``m``. For sorted edges the midpoints are sorted, so the double sum equals
    ``2 sum_i w_i (m_i W_{<i} - (w m)_{<i})`` with exclusive cumulative sums ``W_{<i}``,
    ``(w m)_{<i}``. Differentiable in both edges and weights.

    Args:
        edges: (R, N+1) sorted edges in s (unitless); weights: (R, N).
    Returns:
        () scalar.
    """
    mids = 0.5 * (edges[..., 1:] + edges[..., :-1])
    widths = edges[..., 1:] - edges[..., :-1]
    cross = 2.0 * (weights * (mids * _exclusive_cumsum(weights) - _exclusive_cumsum(weights * mids)))
    self_term = weights.square() * widths / 3.0
    return (cross + self_term).sum(-1).mean()

"""Mip-NeRF 360 histogram losses: interlevel (Eq. 12-13) and distortion (Eq. 15), against brute force."""

from __future__ import annotations

import pytest
import torch

from nerfkit.render.losses import distortion_loss, interlevel_loss, outer_weights


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _histogram(n_rays: int, n_bins: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    edges = torch.rand(n_rays, n_bins + 1, generator=g, dtype=torch.float64).sort(-1).values
    weights = torch.rand(n_rays, n_bins, generator=g, dtype=torch.float64)
    return edges, weights / weights.sum(-1, keepdim=True) * 0.9


# -------------------------------------------------------------------------------- distortion

def _distortion_brute_force(edges: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    pair = (weights[:, :, None] * weights[:, None, :] * (mids[:, :, None] - mids[:, None, :]).abs())
    self_term = (weights.square() * (edges[:, 1:] - edges[:, :-1])).sum(-1) / 3
    return (pair.sum((-1, -2)) + self_term).mean()


@pytest.mark.parametrize("n_bins", [1, 2, 17, 64])
def test_distortion_equals_the_quadratic_brute_force_in_value_and_gradient(n_bins):
    edges, weights = _histogram(5, n_bins, seed=n_bins)
    e1, w1 = edges.clone().requires_grad_(), weights.clone().requires_grad_()
    e2, w2 = edges.clone().requires_grad_(), weights.clone().requires_grad_()
    fast, slow = distortion_loss(e1, w1), _distortion_brute_force(e2, w2)
    torch.testing.assert_close(fast, slow)
    fast.backward()
    slow.backward()
    torch.testing.assert_close(w1.grad, w2.grad)
    torch.testing.assert_close(e1.grad, e2.grad)


def test_distortion_of_a_single_full_bin_is_a_third_of_its_width():
    edges = torch.tensor([[0.0, 0.1, 0.35, 1.0]], dtype=torch.float64)
    weights = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(distortion_loss(edges, weights), torch.tensor(0.25 / 3, dtype=torch.float64))


def test_distortion_is_smaller_for_concentrated_than_for_spread_weights():
    edges = torch.linspace(0, 1, 33, dtype=torch.float64).expand(1, 33)
    spread = torch.full((1, 32), 1 / 32, dtype=torch.float64)
    concentrated = torch.zeros(1, 32, dtype=torch.float64)
    concentrated[0, 15:17] = 0.5
    far_apart = torch.zeros(1, 32, dtype=torch.float64)
    far_apart[0, [0, 31]] = 0.5
    small, mid, large = (float(distortion_loss(edges, w)) for w in (concentrated, spread, far_apart))
    assert small < 0.1 * mid and mid < large
    torch.testing.assert_close(torch.tensor(large), torch.tensor(0.5 * (31 / 32) + 2 * 0.25 / 96))


def test_distortion_gradients_are_finite_with_zero_width_bins_and_zero_weights():
    edges = torch.tensor([[0.0, 0.0, 0.5, 0.5, 1.0]], requires_grad=True)
    weights = torch.tensor([[0.0, 0.3, 0.0, 0.7]], requires_grad=True)
    distortion_loss(edges, weights).backward()
    assert bool(torch.isfinite(edges.grad).all()) and bool(torch.isfinite(weights.grad).all())


# -------------------------------------------------------------------------------- interlevel

def _outer_brute_force(edges, proposal_edges, proposal_weights) -> torch.Tensor:
    """Sum of the proposal bins overlapping each query bin on an interval of positive length."""
    a, b = edges[:, :-1, None], edges[:, 1:, None]                              # (R, N, 1)
    c0, c1 = proposal_edges[:, None, :-1], proposal_edges[:, None, 1:]          # (R, 1, M)
    overlap = (c0 < b) & (c1 > a)
    return (overlap * proposal_weights[:, None, :]).sum(-1)


def _interlevel_brute_force(fine_edges, fine_weights, proposal_edges, proposal_weights):
    outer = _outer_brute_force(fine_edges, proposal_edges, proposal_weights)
    excess = (fine_weights - outer).clamp(min=0)
    return (excess**2 / (fine_weights + 1e-7)).sum(-1).mean()


@pytest.mark.parametrize("n_fine,n_prop", [(32, 8), (8, 32), (16, 16), (1, 5)])
def test_interlevel_equals_a_brute_force_overlap_computation(n_fine, n_prop):
    fine_edges, fine_weights = _histogram(6, n_fine, seed=n_fine)
    proposal_edges, proposal_weights = _histogram(6, n_prop, seed=100 + n_prop)
    proposal_weights = proposal_weights * 0.3                       # so that some mass is missed
    torch.testing.assert_close(outer_weights(fine_edges, proposal_edges, proposal_weights),
                               _outer_brute_force(fine_edges, proposal_edges, proposal_weights))
    loss = interlevel_loss(fine_edges, fine_weights, proposal_edges, proposal_weights)
    torch.testing.assert_close(loss, _interlevel_brute_force(fine_edges, fine_weights, proposal_edges,
                                                             proposal_weights))
    assert float(loss) > 0


def test_outer_weights_on_shared_edges_and_zero_width_bins():
    proposal_edges = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    proposal_weights = torch.tensor([[1.0, 10.0, 100.0]], dtype=torch.float64)
    edges = torch.tensor([[-1.0, 0.0, 1.0, 1.5, 1.5, 2.5, 4.0]], dtype=torch.float64)
    expected = torch.tensor([[0.0, 1.0, 10.0, 10.0, 110.0, 100.0]], dtype=torch.float64)
    torch.testing.assert_close(outer_weights(edges, proposal_edges, proposal_weights), expected)


def test_interlevel_is_zero_when_the_proposal_is_the_fine_histogram():
    edges, weights = _histogram(8, 24, seed=1)
    assert float(interlevel_loss(edges, weights, edges, weights)) < 1e-20


def test_interlevel_is_zero_for_a_coarser_histogram_binning_the_same_mass():
    edges, weights = _histogram(8, 32, seed=2)
    weights = weights * (torch.rand(8, 32, generator=_gen(3), dtype=torch.float64) < 0.5)
    coarse_edges, coarse_weights = edges[:, ::4], weights.reshape(8, 8, 4).sum(-1)
    assert float(interlevel_loss(edges, weights, coarse_edges, coarse_weights)) < 1e-20
    # the same coarse mass shifted by one coarse bin no longer bounds the fine histogram
    shifted = coarse_weights.roll(1, -1)
    assert float(interlevel_loss(edges, weights, coarse_edges, shifted)) > 1e-3


def test_interlevel_is_positive_and_exact_when_the_proposal_misses_mass():
    edges = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    fine = torch.tensor([[0.2, 0.6]], dtype=torch.float64)
    proposal = torch.tensor([[0.2, 0.1]], dtype=torch.float64)              # misses 0.5 in bin 2
    loss = interlevel_loss(edges, fine, edges, proposal)
    torch.testing.assert_close(loss, torch.tensor(0.25 / (0.6 + 1e-7), dtype=torch.float64))


def test_interlevel_gradients_flow_to_the_proposal_weights_only():
    fine_edges, fine_weights = _histogram(4, 16, seed=4)
    proposal_edges, proposal_weights = _histogram(4, 8, seed=5)
    fine_edges.requires_grad_()
    fine_weights.requires_grad_()
    proposal_edges.requires_grad_()
    proposal_weights = (proposal_weights * 0.2).requires_grad_()
    interlevel_loss(fine_edges, fine_weights, proposal_edges, proposal_weights).backward()
    assert fine_weights.grad is None and fine_edges.grad is None and proposal_edges.grad is None
    grad = proposal_weights.grad
    assert bool(torch.isfinite(grad).all()) and float(grad.min()) < -0.1
    assert float(grad.max()) < 1e-12                  # more proposal mass never raises the loss

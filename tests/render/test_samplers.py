"""Ray samplers in normalized distance s (Mip-NeRF 360 Sec. 2-3): spacings, stratified and pdf edges."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfkit.render.contraction import contract
from nerfkit.render.samplers import (
    blur_weights,
    normalized_to_t,
    resample_edges,
    spacing_functions,
    t_to_normalized,
    uniform_edges,
)

SPACINGS = ("linear", "disparity", "contracted")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bounds(n_rays: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    near = 0.05 + torch.rand(n_rays, generator=g, dtype=torch.float64)
    far = near + torch.rand(n_rays, generator=g, dtype=torch.float64) * 1e3
    return near, far


def _is_sorted(x: torch.Tensor) -> bool:
    return bool((x.diff(dim=-1) >= 0).all())


# -------------------------------------------------------------------------------- spacings

def test_unknown_spacing_is_a_value_error():
    with pytest.raises(ValueError, match="unknown spacing"):
        spacing_functions("log")


@pytest.mark.parametrize("name", SPACINGS)
def test_spacing_functions_are_inverse_pairs(name):
    t = torch.logspace(-2, 4, 200, dtype=torch.float64)
    t_to_g, g_to_t = spacing_functions(name)
    torch.testing.assert_close(g_to_t(t_to_g(t)), t)


def test_contracted_spacing_values():
    t_to_g, _ = spacing_functions("contracted")
    t = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0, 1e9], dtype=torch.float64)
    torch.testing.assert_close(t_to_g(t), torch.tensor([0.0, 0.5, 1.0, 1.5, 1.75, 2 - 1e-9],
                                                       dtype=torch.float64))


# -------------------------------------------------------------------------------- uniform edges

@pytest.mark.parametrize("jitter", [False, True])
def test_uniform_edges_shape_sorted_and_endpoints_exact(jitter):
    edges = uniform_edges(64, 16, jitter=jitter, generator=_gen(0))
    assert edges.shape == (64, 17) and edges.dtype == torch.float32
    assert _is_sorted(edges)
    assert bool((edges[:, 0] == 0).all()) and bool((edges[:, -1] == 1).all())


def test_uniform_edges_without_jitter_are_linspace():
    edges = uniform_edges(3, 8, jitter=False, dtype=torch.float64)
    torch.testing.assert_close(edges, torch.linspace(0, 1, 9, dtype=torch.float64).expand(3, 9))


def test_jitter_moves_each_interior_edge_by_less_than_half_a_bin():
    n_bins = 10
    edges = uniform_edges(500, n_bins, jitter=True, generator=_gen(1), dtype=torch.float64)
    shift = (edges - torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)) * n_bins
    assert float(shift.abs().max()) < 0.5
    assert float(shift[:, 1:-1].abs().max()) > 0.45          # really jittered, over the full range
    assert abs(float(shift[:, 1:-1].mean())) < 0.02           # and centred


def test_uniform_edges_deterministic_with_a_seeded_generator():
    a = uniform_edges(4, 8, jitter=True, generator=_gen(7))
    b = uniform_edges(4, 8, jitter=True, generator=_gen(7))
    c = uniform_edges(4, 8, jitter=True, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


# -------------------------------------------------------------------------------- normalized distance

@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("jitter", [False, True])
def test_normalized_to_t_is_sorted_within_near_far_with_exact_endpoints(spacing, jitter):
    near, far = _bounds(32, seed=2)
    s = uniform_edges(32, 24, jitter=jitter, generator=_gen(3), dtype=torch.float64)
    t = normalized_to_t(s, near, far, spacing)
    assert t.shape == (32, 25)
    assert _is_sorted(t)
    assert bool((t >= near[:, None]).all()) and bool((t <= far[:, None]).all())
    assert torch.equal(t[:, 0], near) and torch.equal(t[:, -1], far)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_normalized_to_t_and_t_to_normalized_round_trip(spacing):
    near, far = _bounds(16, seed=4)
    s = uniform_edges(16, 12, jitter=True, generator=_gen(5), dtype=torch.float64)
    t = normalized_to_t(s, near, far, spacing)
    torch.testing.assert_close(t_to_normalized(t, near, far, spacing), s)
    torch.testing.assert_close(normalized_to_t(t_to_normalized(t, near, far, spacing), near, far,
                                               spacing), t)


def test_disparity_spacing_is_uniform_in_inverse_depth():
    near, far = torch.tensor([1.0], dtype=torch.float64), torch.tensor([100.0], dtype=torch.float64)
    s = uniform_edges(1, 9, jitter=False, dtype=torch.float64)
    t = normalized_to_t(s, near, far, "disparity")
    steps = (1 / t).diff()
    torch.testing.assert_close(steps, torch.full_like(steps, (1 / 100 - 1) / 9))


def test_contracted_spacing_gives_equal_steps_of_contracted_distance():
    """Uniform s along a ray from the origin -> equally spaced points in contracted space."""
    g = _gen(6)
    directions = torch.randn(8, 3, generator=g, dtype=torch.float64)
    directions = directions / directions.abs().amax(-1, keepdim=True)      # |d|_inf = 1: t = |x|_inf
    near = torch.zeros(8, dtype=torch.float64)
    far = torch.full((8,), 1e4, dtype=torch.float64)
    t = normalized_to_t(uniform_edges(8, 40, jitter=False, dtype=torch.float64), near, far,
                        "contracted")
    points = contract(t.unsqueeze(-1) * directions.unsqueeze(1))            # (8, 41, 3)
    steps = (points[:, 1:] - points[:, :-1]).norm(dim=-1)                   # (8, 40)
    torch.testing.assert_close(steps, steps[:, :1].expand_as(steps))
    assert float(t[:, -1].min()) == 1e4 and float(t[:, 20].max()) < 2       # t itself is far from uniform


# -------------------------------------------------------------------------------- blur

def test_blur_weights_matches_a_hand_computed_example():
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0, 2.0], [3.0, 0.0, 0.0, 0.0, 0.0]])
    # padded [0 0 1 0 0 2 2] -> pairwise max [0 1 1 0 2 2] -> pairwise mean
    expected = torch.tensor([[0.5, 1.0, 0.5, 1.0, 2.0], [3.0, 1.5, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(blur_weights(w), expected)


# -------------------------------------------------------------------------------- resample

def _delta_histogram(n_rays: int, n_bins: int, heavy: int) -> tuple[torch.Tensor, torch.Tensor]:
    edges = uniform_edges(n_rays, n_bins, jitter=False, dtype=torch.float64)
    weights = torch.full((n_rays, n_bins), 1e-4, dtype=torch.float64)
    weights[:, heavy] = 1.0
    return edges, weights


@pytest.mark.parametrize("jitter", [False, True])
def test_resample_concentrates_edges_in_the_heavy_bin(jitter):
    edges, weights = _delta_histogram(4, 64, heavy=20)
    new = resample_edges(edges, weights, 64, jitter=jitter, generator=_gen(9))
    lo, hi = edges[:, 20:21], edges[:, 21:22]
    inside = ((new >= lo) & (new <= hi)).double().mean(-1)
    assert bool((inside >= 0.9).all()), inside


def test_resample_follows_the_cdf_exactly_for_a_two_bin_histogram():
    edges = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    weights = torch.tensor([[3.0, 1.0]], dtype=torch.float64)             # cdf: 0, 0.75, 1
    new = resample_edges(edges, weights, 4, jitter=False)
    torch.testing.assert_close(new, torch.tensor([[0.0, 1 / 6, 1 / 3, 0.5, 1.0]], dtype=torch.float64))


def test_resample_with_zero_weights_is_uniform_within_the_span():
    edges = torch.tensor([[0.2, 0.3, 0.9, 1.0]], dtype=torch.float64)
    new = resample_edges(edges, torch.zeros(1, 3, dtype=torch.float64), 4, jitter=False)
    torch.testing.assert_close(new, torch.tensor([[0.2, 0.4, 0.6, 0.8, 1.0]], dtype=torch.float64))


def test_resample_blur_and_padding_spread_edges_out_of_the_heavy_bin():
    edges, weights = _delta_histogram(1, 32, heavy=10)
    weights[:, :] = 0.0
    weights[:, 10] = 1.0
    sharp = resample_edges(edges, weights, 32, jitter=False)
    soft = resample_edges(edges, weights, 32, jitter=False, blur=True, padding=0.01)
    def inside(e: torch.Tensor) -> float:
        return float(((e > edges[0, 10]) & (e < edges[0, 11])).double().sum())

    assert inside(soft) < inside(sharp)
    assert float((soft < edges[0, 9]).double().sum()) >= 1                # padding reaches far bins


def test_resample_deterministic_with_a_seeded_generator_and_sorted_with_jitter():
    edges = uniform_edges(8, 16, jitter=True, generator=_gen(10))
    weights = torch.rand(8, 16, generator=_gen(11))
    a = resample_edges(edges, weights, 32, jitter=True, generator=_gen(12))
    b = resample_edges(edges, weights, 32, jitter=True, generator=_gen(12))
    c = resample_edges(edges, weights, 32, jitter=True, generator=_gen(13))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (8, 33) and _is_sorted(a)


def test_resample_does_not_differentiate():
    edges = uniform_edges(2, 4, jitter=False).requires_grad_()
    weights = torch.rand(2, 4, generator=_gen(14)).requires_grad_()
    assert not resample_edges(edges, weights, 8, jitter=True).requires_grad


def _histogram(kind: str, n_rays: int, n_bins: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted edges (some bins of zero width for 'degenerate') and weights of a given kind."""
    g = _gen(seed)
    edges = torch.rand(n_rays, n_bins + 1, generator=g).sort(-1).values * 10 - 5
    weights = torch.rand(n_rays, n_bins, generator=g)
    if kind == "zero":
        weights.zero_()
    elif kind == "degenerate":                       # zero-width bins, some carrying weight
        keep = torch.rand(n_rays, n_bins + 1, generator=g) < 0.5
        edges = torch.where(keep, edges, edges.roll(1, -1)).cummax(-1).values
        edges[1] = 0.7                               # a ray with zero span
    elif kind == "sparse":
        weights = weights * (torch.rand(n_rays, n_bins, generator=g) < 0.1)
    return edges, weights


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["random", "zero", "degenerate", "sparse"]),
       n_bins=st.integers(1, 40), n_new=st.integers(1, 40), seed=st.integers(0, 2**31 - 1),
       jitter=st.booleans(), blur=st.booleans(), padding=st.sampled_from([0.0, 0.01]))
def test_resample_stays_sorted_within_bounds_and_finite(kind, n_bins, n_new, seed, jitter, blur,
                                                        padding):
    edges, weights = _histogram(kind, 3, n_bins, seed)
    new = resample_edges(edges, weights, n_new, jitter=jitter, padding=padding, blur=blur,
                         generator=_gen(seed + 1))
    assert new.shape == (3, n_new + 1)
    assert bool(torch.isfinite(new).all())
    assert _is_sorted(new)
    assert torch.equal(new[:, 0], edges[:, 0]) and torch.equal(new[:, -1], edges[:, -1])

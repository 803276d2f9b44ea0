"""Volume rendering (NeRF Eq. 3) against closed forms for a homogeneous medium and per-ray loops.

For a constant density ``s`` on ``[a, a + L]`` the emission model has closed forms:
``alpha = 1 - exp(-s L)`` however the segment is sliced (the weights telescope), and the
(unnormalised) expected depth ``D = integral_a^{a+L} t s exp(-s (t - a)) dt
= a * alpha + (1 - exp(-s L)) / s - L exp(-s L)``, i.e. ``alpha`` times the mean of the
exponential distribution truncated to the slab. Depth is composited at sample midpoints, so it
approaches ``D`` as ``D + s h^2 alpha / 12`` for slices of width ``h`` (midpoint rule: within
a slice the mass sits nearer the entry than the midpoint, so the midpoint overestimates).
"""

from __future__ import annotations

import math

import pytest
import torch

from nerfkit.ops import composite, composite_ref, render_weights
from nerfkit.ops.compositing import exclusive_segment_sum


@pytest.fixture(autouse=True)
def _twins_only(monkeypatch):
    """This file specifies the twins: the public functions must run them, not the native kernels
    (tests/ops/test_cpu_kernels.py compares those with the twins)."""
    monkeypatch.setenv("NERFKIT_FORCE_REF", "1")


def _slab(a: float, length: float, cuts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intervals that tile [a, a + length] at the sorted relative ``cuts`` in (0, 1)."""
    edges = torch.cat([torch.zeros(1, dtype=cuts.dtype), cuts.sort().values,
                       torch.ones(1, dtype=cuts.dtype)]) * length + a
    return edges[:-1], edges[1:]


def _closed_form_depth(a: float, length: float, s: float) -> float:
    tail = math.exp(-s * length)
    return a * (1 - tail) + (1 - tail) / s - length * tail


def _homogeneous(s: float, colour: list[float], starts: torch.Tensor, ends: torch.Tensor):
    n = starts.shape[0]
    sigmas = torch.full((n,), s, dtype=starts.dtype)
    rgbs = torch.tensor([colour], dtype=starts.dtype).expand(n, 3)
    return composite(sigmas, rgbs, starts, ends, torch.zeros(n, dtype=torch.int64), 1)


@pytest.mark.parametrize("n_slices", [1, 2, 7, 100])
@pytest.mark.parametrize("s,length", [(0.3, 2.0), (2.5, 1.2), (40.0, 0.5)])
def test_homogeneous_alpha_and_colour_do_not_depend_on_the_slicing(n_slices, s, length):
    g = torch.Generator().manual_seed(n_slices)
    starts, ends = _slab(1.5, length, torch.rand(n_slices - 1, generator=g, dtype=torch.float64))
    colour = [0.2, 0.7, 0.9]
    out = _homogeneous(s, colour, starts, ends)
    alpha = 1 - math.exp(-s * length)
    torch.testing.assert_close(out.alpha, torch.tensor([alpha], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.rgb, alpha * torch.tensor([colour], dtype=torch.float64),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(out.weights.sum(), torch.tensor(alpha, dtype=torch.float64))


@pytest.mark.parametrize("s,length", [(0.3, 2.0), (2.5, 1.2), (10.0, 0.5)])
def test_homogeneous_depth_converges_to_the_truncated_exponential_mean(s, length):
    a = 1.5
    alpha = 1 - math.exp(-s * length)
    exact = _closed_form_depth(a, length, s)
    # the truncated exponential's mean lies inside the slab, nearer the entry than the midpoint
    assert a < exact / alpha < a + length / 2
    errors = []
    for n in (8, 16, 64, 256):
        starts, ends = _slab(a, length, torch.arange(1, n, dtype=torch.float64) / n)
        out = _homogeneous(s, [1.0, 1.0, 1.0], starts, ends)
        h = length / n
        predicted = s * h * h * alpha / 12                 # leading midpoint-rule error
        error = float(out.depth) - exact
        assert abs(error) <= 1.1 * predicted + 1e-12
        assert error == pytest.approx(predicted, rel=0.1)  # the error is the midpoint rule's, O(h^2)
        errors.append(error)
    assert errors[-1] < 1e-5 * exact
    # normalised by alpha: the mean of t under the exponential truncated to the slab
    assert float(out.depth / out.alpha) == pytest.approx(exact / alpha, rel=1e-5)


def test_float32_homogeneous_slab():
    starts, ends = _slab(0.5, 2.0, torch.arange(1, 200, dtype=torch.float32) / 200)
    out = _homogeneous(1.7, [0.1, 0.2, 0.3], starts, ends)
    assert out.alpha.dtype == torch.float32
    alpha = 1 - math.exp(-1.7 * 2.0)
    assert float(out.alpha) == pytest.approx(alpha, abs=1e-6)
    assert float(out.depth) == pytest.approx(_closed_form_depth(0.5, 2.0, 1.7), rel=1e-4)


# ------------------------------------------------------------------------------ per-ray loops

def _loop_composite(sigmas, rgbs, starts, ends, rays, n_rays):
    """NeRF Eq. 3 sample by sample: T_i = prod_{j<i} (1 - alpha_j), w_i = T_i alpha_i."""
    rgb = torch.zeros(n_rays, 3, dtype=torch.float64)
    depth = torch.zeros(n_rays, dtype=torch.float64)
    acc = torch.zeros(n_rays, dtype=torch.float64)
    weights = torch.zeros(sigmas.shape[0], dtype=torch.float64)
    transmittance = [1.0] * n_rays
    for i in range(sigmas.shape[0]):
        r = int(rays[i])
        a = 1 - math.exp(-float(sigmas[i]) * float(ends[i] - starts[i]))
        w = transmittance[r] * a
        transmittance[r] *= 1 - a
        weights[i] = w
        rgb[r] += w * rgbs[i].double()
        depth[r] += w * float(starts[i] + ends[i]) / 2
        acc[r] += w
    return rgb, depth, acc, weights


def _packed_batch(counts: list[int], seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    rays = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    n = rays.numel()
    widths = torch.rand(n, generator=g, dtype=torch.float64) * 0.2 + 0.01
    gaps = torch.rand(n, generator=g, dtype=torch.float64) * 0.05
    starts = torch.zeros(n, dtype=torch.float64)
    for r in range(len(counts)):                       # increasing, non-overlapping intervals per ray
        idx = (rays == r).nonzero().squeeze(-1)
        starts[idx] = 1.0 + torch.cumsum(widths[idx] + gaps[idx], 0) - widths[idx]
    ends = starts + widths
    sigmas = torch.rand(n, generator=g, dtype=torch.float64) * 8
    rgbs = torch.rand(n, 3, generator=g, dtype=torch.float64)
    return (sigmas.to(dtype), rgbs.to(dtype), starts.to(dtype), ends.to(dtype), rays, len(counts))


COUNTS = [3, 0, 1, 12, 0, 0, 5, 40, 2, 0]


def test_packed_rays_match_a_sample_by_sample_loop():
    sigmas, rgbs, starts, ends, rays, n_rays = _packed_batch(COUNTS, seed=1)
    out = composite(sigmas, rgbs, starts, ends, rays, n_rays)
    want = _loop_composite(sigmas, rgbs, starts, ends, rays, n_rays)
    for got, expected in zip((out.rgb, out.depth, out.alpha, out.weights), want):
        torch.testing.assert_close(got.double(), expected, atol=2e-6, rtol=1e-5)
    twin = composite_ref(sigmas, rgbs, starts, ends, rays, n_rays)
    for a, b in zip(out, twin):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_packed_rays_equal_rays_composited_one_at_a_time():
    sigmas, rgbs, starts, ends, rays, n_rays = _packed_batch(COUNTS, seed=2)
    out = composite(sigmas, rgbs, starts, ends, rays, n_rays)
    for r in range(n_rays):
        sel = rays == r
        alone = composite(sigmas[sel], rgbs[sel], starts[sel], ends[sel],
                          torch.zeros(int(sel.sum()), dtype=torch.int64), 1)
        torch.testing.assert_close(out.rgb[r], alone.rgb[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out.depth[r], alone.depth[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out.alpha[r], alone.alpha[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out.weights[sel], alone.weights, atol=1e-6, rtol=1e-6)


def test_rays_without_samples_get_zeros():
    sigmas, rgbs, starts, ends, rays, n_rays = _packed_batch(COUNTS, seed=3)
    out = composite(sigmas, rgbs, starts, ends, rays, n_rays)
    empty = torch.tensor([c == 0 for c in COUNTS])
    assert torch.count_nonzero(out.rgb[empty]) == 0
    assert torch.count_nonzero(out.depth[empty]) == 0
    assert torch.count_nonzero(out.alpha[empty]) == 0
    assert bool((out.alpha[~empty] > 0).all())
    none = composite(torch.zeros(0), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0),
                     torch.zeros(0, dtype=torch.int64), 4)
    assert torch.equal(none.rgb, torch.zeros(4, 3))
    assert torch.equal(none.depth, torch.zeros(4)) and torch.equal(none.alpha, torch.zeros(4))
    assert none.weights.shape == (0,)


def test_one_opaque_sample_takes_all_the_weight_and_hides_what_is_behind():
    out = composite(torch.tensor([1e4, 3.0]), torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]]),
                    torch.tensor([1.0, 1.5]), torch.tensor([1.5, 2.0]), torch.tensor([0, 0]), 1)
    torch.testing.assert_close(out.rgb, torch.tensor([[1.0, 0.5, 0.0]]))
    torch.testing.assert_close(out.depth, torch.tensor([1.25]))
    torch.testing.assert_close(out.alpha, torch.tensor([1.0]))
    torch.testing.assert_close(out.weights, torch.tensor([1.0, 0.0]))


def test_render_weights_transmittance_is_exclusive():
    sigmas, _, starts, ends, rays, n_rays = _packed_batch(COUNTS, seed=4, dtype=torch.float64)
    weights, transmittance = render_weights(sigmas, starts, ends, rays, n_rays)
    first = torch.ones_like(rays, dtype=torch.bool)
    first[1:] = rays[1:] != rays[:-1]
    torch.testing.assert_close(transmittance[first], torch.ones(int(first.sum()), dtype=torch.float64))
    # T_{i+1} = T_i (1 - alpha_i) = T_i - w_i within a ray
    same = ~first[1:]
    torch.testing.assert_close(transmittance[1:][same], (transmittance[:-1] - weights[:-1])[same])


def test_gradcheck_wrt_sigmas_and_rgbs_float64():
    sigmas, rgbs, starts, ends, rays, n_rays = _packed_batch([3, 0, 4, 1], seed=5, dtype=torch.float64)
    sigmas.requires_grad_()
    rgbs.requires_grad_()

    def f(sig, col):
        out = composite(sig, col, starts, ends, rays, n_rays)
        return out.rgb, out.depth, out.alpha, out.weights

    assert torch.autograd.gradcheck(f, (sigmas, rgbs))


def test_sigma_gradient_matches_the_closed_form_for_a_homogeneous_slab():
    """d alpha / d s = L exp(-s L) when every slice shares one density s."""
    s, length = 1.3, 0.8
    starts, ends = _slab(0.0, length, torch.arange(1, 10, dtype=torch.float64) / 10)
    sigma = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    out = composite(sigma.expand(10), torch.ones(10, 3, dtype=torch.float64), starts, ends,
                    torch.zeros(10, dtype=torch.int64), 1)
    (grad,) = torch.autograd.grad(out.alpha.sum(), sigma)
    assert float(grad) == pytest.approx(length * math.exp(-s * length), rel=1e-10)


# ---------------------------------------------------------------------- exclusive_segment_sum

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exclusive_segment_sum_matches_a_loop(dtype):
    g = torch.Generator().manual_seed(6)
    counts = [0, 4, 1, 0, 7, 0]
    rays = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    values = torch.rand(rays.numel(), generator=g, dtype=torch.float64).to(dtype) * 3
    got = exclusive_segment_sum(values, rays, len(counts))
    want, running, previous = [], 0.0, -1
    for v, r in zip(values.tolist(), rays.tolist()):
        if r != previous:
            running, previous = 0.0, r
        want.append(running)
        running += v
    assert got.dtype == dtype
    torch.testing.assert_close(got, torch.tensor(want, dtype=dtype))


def test_exclusive_segment_sum_of_nothing_and_of_a_single_ray():
    assert exclusive_segment_sum(torch.zeros(0), torch.zeros(0, dtype=torch.int64), 3).shape == (0,)
    got = exclusive_segment_sum(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2, 2, 2]), 3)
    torch.testing.assert_close(got, torch.tensor([0.0, 1.0, 3.0]))


def test_median_depth_is_where_half_the_weight_is_reached_and_ignores_haze():
    from nerfkit.ops.compositing import composite_ref, median_depth

    # ray 0: thin haze at t = 1..3 (little weight), then an opaque surface at t = 5
    # ray 1: no samples; ray 2: one opaque sample at t = 2
    t_starts = torch.tensor([1.0, 2.0, 3.0, 4.9, 5.1, 1.9], dtype=torch.float64)
    t_ends = t_starts + torch.tensor([1.0, 1.0, 1.0, 0.2, 0.2, 0.2], dtype=torch.float64)
    sigmas = torch.tensor([0.05, 0.05, 0.05, 50.0, 50.0, 50.0], dtype=torch.float64)
    rays = torch.tensor([0, 0, 0, 0, 0, 2])
    rgbs = torch.zeros(6, 3, dtype=torch.float64)
    out = composite_ref(sigmas, rgbs, t_starts, t_ends, rays, 3)
    median = median_depth(out.weights, t_starts, t_ends, rays, out.alpha, 3)
    assert median[0] == 5.0 and median[1] == 0.0 and median[2] == 2.0
    expected = out.depth[0] / out.alpha[0]
    assert expected < 4.85                       # the expected depth is pulled towards the haze
    # the sample where the accumulated weight first reaches half of alpha, by brute force
    accumulated = torch.cumsum(out.weights[:5], 0)
    first = int(torch.nonzero(accumulated >= 0.5 * out.alpha[0])[0])
    assert median[0] == 0.5 * (t_starts[first] + t_ends[first])

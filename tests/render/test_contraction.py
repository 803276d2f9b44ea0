"""Scene contraction (Mip-NeRF 360 Eq. 10, L-inf norm) and the map into hash-grid coordinates."""

from __future__ import annotations

import pytest
import torch

from nerfkit.render.contraction import contract, to_unit_cube


def _points(n: int, seed: int, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64) * scale


def _linf(x: torch.Tensor) -> torch.Tensor:
    return x.abs().amax(-1)


def test_identity_inside_the_unit_cube():
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    x = torch.cat([x, torch.tensor([[1.0, -1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.3, -0.2]],
                                   dtype=torch.float64)])
    torch.testing.assert_close(contract(x), x, atol=0, rtol=0)


def test_outside_points_keep_their_direction_and_get_linf_norm_2_minus_1_over_norm():
    x = _points(500, seed=1, scale=20.0)
    x = x[_linf(x) > 1]
    y = contract(x)
    norm = _linf(x)
    torch.testing.assert_close(_linf(y), 2 - 1 / norm)
    torch.testing.assert_close(y / _linf(y).unsqueeze(-1), x / norm.unsqueeze(-1))


def test_continuous_at_the_cube_boundary():
    g = torch.Generator().manual_seed(2)
    on = torch.rand(200, 3, generator=g, dtype=torch.float64) * 2 - 1
    on[torch.arange(200), torch.randint(0, 3, (200,), generator=g)] = 1.0    # a face of the cube
    for eps in (1e-7, 1e-4):
        for side in (1 + eps, 1 - eps):
            torch.testing.assert_close(contract(on * side), on, atol=3 * eps, rtol=0)


def test_bounded_by_2_in_linf_even_far_away():
    x = torch.cat([_points(1000, seed=3, scale=1e3), _points(10, seed=4, scale=1e12)])
    y = contract(x)
    assert bool((_linf(y) < 2).all())
    assert float(_linf(y).max()) > 1.999                  # and the bound is approached
    assert bool(torch.isfinite(contract(torch.tensor([[1e30, -1e30, 5.0]]))).all())


def test_monotone_along_rays_from_the_centre():
    """t -> contract(t d) moves outwards along d: its L-inf norm strictly increases with t."""
    directions = _points(20, seed=5, scale=1.0)
    t = torch.logspace(-3, 4, 400, dtype=torch.float64)
    for d in directions:
        y = contract(t.unsqueeze(-1) * d)
        norm = _linf(y)
        assert bool((norm[1:] > norm[:-1]).all())
        torch.testing.assert_close(y / norm.unsqueeze(-1), (d / _linf(d)).expand_as(y))


def test_contracted_norm_is_an_increasing_function_of_the_norm():
    """Ordering points by L-inf norm orders their images the same way (any direction)."""
    x = _points(2000, seed=6, scale=5.0)
    order = _linf(x).argsort()
    assert bool((_linf(contract(x))[order].diff() >= 0).all())


def test_gradients_are_finite_everywhere_including_the_boundary_and_the_origin():
    x = torch.cat([_points(300, seed=7, scale=10.0),
                   torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.5, 0.2],
                                 [1e8, 1.0, -3.0]], dtype=torch.float64)]).requires_grad_()
    contract(x).sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    inside = _linf(x.detach()) < 1
    torch.testing.assert_close(x.grad[inside], torch.ones_like(x.grad[inside]))


def test_contract_gradcheck_away_from_the_kinks():
    x = torch.tensor([[0.2, -0.3, 0.5], [3.0, 1.0, -2.0], [-0.5, -7.0, 2.5]], dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(contract, (x,))


# -------------------------------------------------------------------------------- to_unit_cube

AABB = torch.tensor([[-1.0, 0.0, 2.0], [3.0, 1.0, 2.5]], dtype=torch.float64)


def test_bounded_maps_the_aabb_onto_the_unit_cube():
    corners = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.float64)
    points = AABB[0] + corners * (AABB[1] - AABB[0])
    torch.testing.assert_close(to_unit_cube(points, AABB, unbounded=False), corners)
    x = AABB[0] + torch.rand(300, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64) \
        * (AABB[1] - AABB[0])
    u = to_unit_cube(x, AABB, unbounded=False)
    assert bool(((u >= 0) & (u <= 1)).all())
    torch.testing.assert_close(AABB[0] + u * (AABB[1] - AABB[0]), x)       # affine, invertible


def test_unbounded_maps_all_of_space_into_the_unit_cube():
    box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    x = torch.cat([_points(2000, seed=9, scale=1.0), _points(2000, seed=10, scale=1e4)])
    u = to_unit_cube(x, box, unbounded=True)
    assert bool(((u > 0) & (u < 1)).all())
    # the box itself fills the central half of the cube, its centre goes to the cube's centre
    inner = _linf(x) <= 1
    assert bool(((u[inner] >= 0.25) & (u[inner] <= 0.75)).all())
    torch.testing.assert_close(to_unit_cube(torch.zeros(1, 3, dtype=torch.float64), box, True),
                               torch.full((1, 3), 0.5, dtype=torch.float64))
    corner = torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(to_unit_cube(corner, box, True),
                               torch.tensor([[0.75, 0.25, 0.75]], dtype=torch.float64))


def test_unbounded_uses_the_aabb_as_the_uncontracted_region():
    x = torch.rand(100, 3, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    x = AABB[0] + x * (AABB[1] - AABB[0])
    u = to_unit_cube(x, AABB, unbounded=True)
    # inside the box the map is affine onto [0.25, 0.75]^3
    torch.testing.assert_close(u, 0.25 + 0.5 * to_unit_cube(x, AABB, unbounded=False))


@pytest.mark.parametrize("unbounded", [False, True])
def test_to_unit_cube_keeps_float32(unbounded):
    x = torch.rand(4, 3)
    assert to_unit_cube(x, AABB.float(), unbounded).dtype == torch.float32

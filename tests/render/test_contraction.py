"""Scene contraction (Mip-NeRF 360 Eq. 10, L-inf norm) and the map into hash-grid coordinates."""

from __future__ import annotations

import pytest
import torch

from nerfkit.render.contraction import (
    contract,
    contract_gaussian,
    contracted_scale,
    to_unit_cube,
)


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


# -------------------------------------------------------------------------------- Gaussians

def _jacobians(x: torch.Tensor) -> torch.Tensor:
    """(N, 3) -> (N, 3, 3) Jacobians of ``contract`` from autograd, one point at a time."""
    return torch.stack([torch.autograd.functional.jacobian(lambda p: contract(p[None])[0], p) for p in x])


def _mixed_points() -> torch.Tensor:
    inside = torch.rand(20, 3, generator=torch.Generator().manual_seed(12), dtype=torch.float64) * 1.8 - 0.9
    return torch.cat([inside, _points(40, seed=13, scale=5.0), _points(10, seed=14, scale=300.0)])


def test_contract_gaussian_diagonal_equals_the_linearised_covariance_from_autograd():
    x = _mixed_points()
    v = torch.rand(len(x), 3, generator=torch.Generator().manual_seed(15), dtype=torch.float64) + 0.1
    jac = _jacobians(x)
    expected = (jac @ torch.diag_embed(v) @ jac.transpose(-1, -2)).diagonal(dim1=-2, dim2=-1)
    means, variances = contract_gaussian(x, v)
    torch.testing.assert_close(means, contract(x))
    torch.testing.assert_close(variances, expected)
    assert bool((_linf(x) > 1).sum() >= 40)                      # both regions really are covered


def test_contract_gaussian_is_the_identity_inside_the_unit_cube():
    x = torch.rand(200, 3, generator=torch.Generator().manual_seed(16), dtype=torch.float64) * 2 - 1
    v = torch.rand(200, 3, generator=torch.Generator().manual_seed(17), dtype=torch.float64)
    means, variances = contract_gaussian(x, v)
    assert torch.equal(means, x) and torch.equal(variances, v)


def test_contract_gaussian_shrinks_far_gaussians_and_stays_finite():
    x = torch.tensor([[1e6, 3.0, -2.0], [-5.0, 1e6, 1e5], [1e6, -1e6 + 1, 0.0]], dtype=torch.float64)
    v = torch.full((3, 3), 1e4, dtype=torch.float64)
    _, variances = contract_gaussian(x, v)
    assert bool(torch.isfinite(variances).all())
    assert float(variances.max()) < 1e-6                         # ~ v * (2/n)^2 = 4e-8
    far32 = torch.tensor([[1e30, 1.0, 2.0]])
    assert bool(torch.isfinite(contract_gaussian(far32, torch.ones(1, 3))[1]).all())


def test_contract_gaussian_closed_form_on_an_axis():
    """At x = (n, 0, 0): J = diag(1/n^2, (2n-1)/n^2, (2n-1)/n^2)."""
    x = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)
    _, variances = contract_gaussian(x, torch.ones(1, 3, dtype=torch.float64))
    torch.testing.assert_close(variances, torch.tensor([[1 / 16, 9 / 16, 9 / 16]], dtype=torch.float64))


def test_contract_gaussian_gradients_are_finite():
    x = torch.cat([_mixed_points(), torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1e8, 1.0, -3.0],
                                                  [-1.0, 0.5, 0.2]], dtype=torch.float64)])
    x.requires_grad_()
    v = torch.rand(len(x), 3, generator=torch.Generator().manual_seed(18), dtype=torch.float64)
    v.requires_grad_()
    means, variances = contract_gaussian(x, v)
    (means.sum() + variances.sum()).backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(v.grad).all())


def test_contract_gaussian_gradcheck_away_from_the_kinks():
    x = torch.tensor([[0.2, -0.3, 0.5], [3.0, 1.0, -2.0], [-0.5, -7.0, 2.5]], dtype=torch.float64,
                     requires_grad=True)
    v = torch.tensor([[0.1, 0.2, 0.3], [1.0, 2.0, 0.5], [0.7, 0.1, 4.0]], dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: contract_gaussian(a, b)[1], (x, v))


def test_contracted_scale_is_the_cube_root_of_the_jacobian_determinant():
    x = _mixed_points()
    expected = torch.linalg.det(_jacobians(x)).abs().pow(1 / 3)
    scale = contracted_scale(x)
    assert scale.shape == (len(x),)
    torch.testing.assert_close(scale, expected)
    assert bool((scale[_linf(x) <= 1] == 1).all()) and float(scale[_linf(x) > 2].max()) < 0.8


def test_contracted_scale_far_away_is_finite_with_finite_gradients():
    x = torch.tensor([[1e6, 0.0, 0.0], [1e30, 5.0, -1.0]], requires_grad=True)
    scale = contracted_scale(x)
    scale.sum().backward()
    assert bool(torch.isfinite(scale).all()) and bool(torch.isfinite(x.grad).all())
    assert 0 <= float(scale[0].detach()) < 1e-7

"""Input encodings: the SH basis is the orthonormal real basis (Condon-Shortley phase, m = -l..l) and
HashGrid is a learnable trilinear grid whose gradients land on the right table rows.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from nerfkit.fields.encodings import HashGrid
from nerfkit.render.spherical_harmonics import sh_encode


def _quadrature(n_z: int = 12, n_phi: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre in cos(theta) x uniform in phi: exact on the sphere for the products of two
    real SH of band <= 4 (polynomials of degree <= 8). Returns (P, 3) directions and (P,) weights."""
    z, wz = np.polynomial.legendre.leggauss(n_z)
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    rho = np.sqrt(1 - zz ** 2)
    dirs = np.stack([rho * np.cos(pp), rho * np.sin(pp), zz], -1).reshape(-1, 3)
    weights = np.repeat(wz, n_phi) * (2 * np.pi / n_phi)
    return torch.from_numpy(dirs), torch.from_numpy(weights)


def _random_directions(n: int, seed: int) -> torch.Tensor:
    d = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return d / d.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5])
def test_sh_basis_is_orthonormal_on_the_sphere(degree):
    dirs, weights = _quadrature()
    assert float(weights.sum()) == pytest.approx(4 * math.pi)
    basis = sh_encode(dirs, degree)
    assert basis.shape == (dirs.shape[0], degree ** 2)
    gram = basis.T @ (basis * weights.unsqueeze(-1))
    torch.testing.assert_close(gram, torch.eye(degree ** 2, dtype=torch.float64), atol=1e-10, rtol=0)


def test_sh_gram_matrix_by_monte_carlo_agrees():
    """The same property from 200k random directions (independent of the quadrature above)."""
    basis = sh_encode(_random_directions(200_000, seed=0), 5)
    gram = basis.T @ basis * (4 * math.pi / basis.shape[0])
    torch.testing.assert_close(gram, torch.eye(25, dtype=torch.float64), atol=2e-2, rtol=0)


def _scipy_complex_sh(band: int, m: int, polar: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    """Complex Y_l^m (with the Condon-Shortley phase) from whichever scipy API is installed."""
    special = pytest.importorskip("scipy.special", reason="scipy is the independent SH reference")
    if hasattr(special, "sph_harm_y"):
        return special.sph_harm_y(band, m, polar, azimuth)
    return special.sph_harm(m, band, azimuth, polar)      # older argument order


def test_sh_matches_scipy_real_form_with_condon_shortley_phase():
    """Column l^2 + l + m is sqrt(2) Im Y_l^|m| (m < 0), Y_l^0, sqrt(2) Re Y_l^m (m > 0), where
    Y_l^m is scipy's complex harmonic *including* the (-1)^m Condon-Shortley phase; e.g. band 1 is
    (-c y, c z, -c x)."""
    dirs = torch.cat([_random_directions(16, seed=1),
                      torch.eye(3, dtype=torch.float64), -torch.eye(3, dtype=torch.float64)])
    d = dirs.numpy()
    polar, azimuth = np.arccos(np.clip(d[:, 2], -1, 1)), np.arctan2(d[:, 1], d[:, 0])
    ours = sh_encode(dirs, 5).numpy()
    for band in range(5):
        for m in range(-band, band + 1):
            y = _scipy_complex_sh(band, abs(m), polar, azimuth)
            want = math.sqrt(2) * y.imag if m < 0 else (y.real if m == 0 else math.sqrt(2) * y.real)
            np.testing.assert_allclose(ours[:, band * band + band + m], want, atol=1e-12,
                                       err_msg=f"band {band}, order {m}")
    c1 = math.sqrt(3 / (4 * math.pi))
    np.testing.assert_allclose(ours[:, 1:4], np.stack([-c1 * d[:, 1], c1 * d[:, 2], -c1 * d[:, 0]], -1),
                               atol=1e-12)


def test_sh_lower_degrees_are_prefixes_and_float32_works():
    dirs = _random_directions(50, seed=2)
    full = sh_encode(dirs, 5)
    for degree in range(1, 5):
        torch.testing.assert_close(sh_encode(dirs, degree), full[:, :degree ** 2], atol=0, rtol=0)
    torch.testing.assert_close(sh_encode(dirs.float(), 5), full.float(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("degree", [0, 6])
def test_sh_rejects_unsupported_degrees(degree):
    with pytest.raises(ValueError):
        sh_encode(torch.zeros(1, 3), degree)


# ------------------------------------------------------------------------------------ HashGrid

def test_hash_grid_layout_and_initial_table():
    grid = HashGrid(n_levels=4, features_per_level=2, log2_table_size=12, base_resolution=4,
                    max_resolution=64)
    assert grid.resolutions.tolist() == [4, 10, 25, 64]
    assert grid.table.shape == (int(grid.offsets[-1]), 2)
    assert grid.out_dim == 8
    largest = float(grid.table.detach().abs().max())
    assert 0 < largest <= 1e-4
    assert list(grid.state_dict()) == ["table"]          # the layout is rebuilt, not saved
    out = grid(torch.rand(7, 3))
    assert out.shape == (7, 8)
    assert float(out.detach().abs().max()) <= largest     # a convex blend of the table's entries


def _dense_linear_grid() -> HashGrid:
    """A dense-only grid whose table holds each vertex's own position (3 features per level)."""
    grid = HashGrid(n_levels=3, features_per_level=3, log2_table_size=16, base_resolution=2,
                    max_resolution=8)
    with torch.no_grad():
        for level, r in enumerate(grid.resolutions.tolist()):
            assert (r + 1) ** 3 <= int(grid.offsets[level + 1] - grid.offsets[level])
            for x, y, z in itertools.product(range(r + 1), repeat=3):
                grid.table[int(grid.offsets[level]) + x + y * (r + 1) + z * (r + 1) ** 2] = \
                    torch.tensor([x, y, z]) / r
    return grid


def test_hash_grid_interpolates_a_linear_table_exactly():
    grid = _dense_linear_grid()
    x = torch.rand(40, 3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(grid(x), x.repeat(1, 3), atol=1e-6, rtol=0)


def test_hash_grid_gradient_lands_on_the_eight_corner_rows_with_trilinear_weights():
    grid = _dense_linear_grid()
    point = torch.tensor([[0.3, 0.55, 0.8]])
    grid(point)[:, 0].sum().backward()           # level 0 (r = 2), feature 0
    r = int(grid.resolutions[0])
    pos = point[0].double() * r
    low = pos.floor().long()
    frac = pos - low
    want = torch.zeros(grid.table.shape[0], dtype=torch.float64)
    for corner in itertools.product((0, 1), repeat=3):
        v = low + torch.tensor(corner)
        weight = torch.prod(torch.where(torch.tensor(corner) == 1, frac, 1 - frac))
        want[int(v[0] + v[1] * (r + 1) + v[2] * (r + 1) ** 2)] = weight
    torch.testing.assert_close(grid.table.grad[:, 0].double(), want, atol=1e-6, rtol=0)
    assert torch.count_nonzero(grid.table.grad[:, 1:]) == 0


def test_hash_grid_learns_a_target_by_gradient_descent():
    grid = HashGrid(n_levels=2, features_per_level=2, log2_table_size=8, base_resolution=4,
                    max_resolution=16)
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(4))
    target = torch.sin(3 * x[:, :1]).repeat(1, grid.out_dim)
    opt = torch.optim.Adam(grid.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = ((grid(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]

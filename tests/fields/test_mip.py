"""Mip-NeRF math (Barron et al. 2021): the frustum Gaussian has the mean and covariance of points drawn
uniformly from the real conical frustum (Eq. 7-8), the stable form agrees with the textbook moments
and stays accurate in float32, and IPE is the expectation of the encoding under the Gaussian (Eq. 14),
reducing to plain PE at zero variance and to zero at high frequency. Monte-Carlo checks are z-tests at
5 standard errors, and each one also shows that plausible wrong formulas fail the same test.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from nerfkit.fields.mip import (
    conical_frustum_gaussian,
    conical_frustum_moments,
    integrated_pos_enc,
    lift_gaussian,
)

F64 = torch.float64
Z_MAX = 5.0  # standard errors allowed between a closed form and its Monte-Carlo estimate
N_MC = 200_000

# (t0, t1, radius at t=1): wide frusta (where the corrections of Eq. 7 are large), one touching the apex.
FRUSTA = [(0.0, 2.0, 0.3), (1.0, 3.0, 0.1), (0.5, 4.0, 0.05), (2.0, 2.5, 0.2)]
ORIGIN = torch.tensor([0.3, -0.2, 1.0], dtype=F64)
DIRECTION = torch.tensor([0.6, -1.1, 0.8], dtype=F64)  # oblique and deliberately not unit length


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sample_frustum(o, d, radius, t0, t1, n, gen):
    """Points uniform by volume in the cone {o + t d + p : t0 <= t <= t1, p perpendicular to d,
    |p| <= radius * t}: t has density proportional to t^2 (inverse CDF), p is uniform in the disk."""
    u_t, u_r, u_phi = torch.rand(3, n, generator=gen, dtype=F64)
    t = (t0 ** 3 + u_t * (t1 ** 3 - t0 ** 3)) ** (1 / 3)
    rho = radius * t * u_r.sqrt()
    phi = 2 * math.pi * u_phi
    axis = d / d.norm()
    e1 = torch.linalg.cross(axis, torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(axis, e1)
    perp = rho[:, None] * (phi.cos()[:, None] * e1 + phi.sin()[:, None] * e2)
    return o + t[:, None] * d + perp


def _max_z_mean_cov(samples, mean, cov):
    """Largest |z| of the closed-form mean (3,) and full covariance (3, 3) against the sample
    estimates, each z measured in the estimate's own standard error."""
    n = samples.shape[0]
    z_mean = (samples.mean(0) - mean) / (samples.std(0) / math.sqrt(n))
    centred = samples - samples.mean(0)
    prods = centred[:, :, None] * centred[:, None, :]  # (n, 3, 3)
    z_cov = (prods.mean(0) - cov) / (prods.std(0) / math.sqrt(n))
    return max(float(z_mean.abs().max()), float(z_cov.abs().max()))


def _frustum_gaussian_full(o, d, radius, t0, t1, moments=conical_frustum_moments, lift=lift_gaussian):
    def tt(v):  # (R=1, S=1)
        return torch.tensor([[v]], dtype=F64)

    t_mean, t_var, r_var = moments(tt(t0), tt(t1), tt(radius))
    mean, cov = lift(o, d, t_mean, t_var, r_var, diag=False)
    return mean.reshape(3), cov.reshape(3, 3)


# --- plausible wrong formulas, each must be rejected by the Monte-Carlo test -----------------------

def _moments_uniform_in_t_mean(t0, t1, r):
    _, t_var, r_var = conical_frustum_moments(t0, t1, r)
    return (t0 + t1) / 2, t_var, r_var


def _moments_uniform_in_t_var(t0, t1, r):
    t_mean, _, r_var = conical_frustum_moments(t0, t1, r)
    return t_mean, (t1 - t0) ** 2 / 12, r_var


def _moments_radius_at_midpoint(t0, t1, r):
    t_mean, t_var, _ = conical_frustum_moments(t0, t1, r)
    return t_mean, t_var, r ** 2 * ((t0 + t1) / 2) ** 2 / 4


def _moments_radial_correction_dropped(t0, t1, r):
    t_mean, t_var, _ = conical_frustum_moments(t0, t1, r)
    t_mu, t_delta = (t0 + t1) / 2, (t1 - t0) / 2
    return t_mean, t_var, r ** 2 * (t_mu ** 2 / 4 + 5 / 12 * t_delta ** 2)


def _moments_axial_correction_sign_flipped(t0, t1, r):
    t_mean, _, r_var = conical_frustum_moments(t0, t1, r)
    t_mu, t_delta = (t0 + t1) / 2, (t1 - t0) / 2
    den = 3 * t_mu ** 2 + t_delta ** 2
    return t_mean, t_delta ** 2 / 3 + 4 / 15 * t_delta ** 4 * (12 * t_mu ** 2 - t_delta ** 2) / den ** 2, r_var


def _lift_without_normalising_d(o, d, t_mean, t_var, r_var, diag=False):
    outer = d[..., :, None] * d[..., None, :]
    cov = t_var[..., None, None] * outer + r_var[..., None, None] * (torch.eye(3, dtype=F64) - outer)
    return o + t_mean[..., None] * d, cov


WRONG = {
    "mean uniform in t": {"moments": _moments_uniform_in_t_mean},
    "axial variance uniform in t": {"moments": _moments_uniform_in_t_var},
    "radius at the midpoint": {"moments": _moments_radius_at_midpoint},
    "radial correction dropped": {"moments": _moments_radial_correction_dropped},
    "axial correction sign flipped": {"moments": _moments_axial_correction_sign_flipped},
    "radial projector without |d|^2": {"lift": _lift_without_normalising_d},
}


@pytest.fixture(scope="module")
def frustum_samples():
    return [_sample_frustum(ORIGIN, DIRECTION, r, t0, t1, N_MC, _gen(i)) for i, (t0, t1, r) in enumerate(FRUSTA)]


def test_frustum_gaussian_matches_monte_carlo_samples_of_the_real_frustum(frustum_samples):
    for (t0, t1, r), samples in zip(FRUSTA, frustum_samples):
        mean, cov = _frustum_gaussian_full(ORIGIN, DIRECTION, r, t0, t1)
        assert _max_z_mean_cov(samples, mean, cov) < Z_MAX, (t0, t1, r)


@pytest.mark.parametrize("name", list(WRONG))
def test_monte_carlo_check_rejects_plausible_wrong_formulas(frustum_samples, name):
    z = max(_max_z_mean_cov(samples, *_frustum_gaussian_full(ORIGIN, DIRECTION, r, t0, t1, **WRONG[name]))
            for (t0, t1, r), samples in zip(FRUSTA, frustum_samples))
    assert z > 2 * Z_MAX, f"{name}: z = {z:.1f} would pass the Monte-Carlo test"


def test_stable_form_equals_textbook_moments_in_float64():
    gen = _gen(1)
    t0 = torch.rand(1000, generator=gen, dtype=F64) * 5
    t1 = t0 + torch.rand(1000, generator=gen, dtype=F64) * 5 + 1e-3
    r = torch.rand(1000, generator=gen, dtype=F64) * 0.1
    m1 = 3 / 4 * (t1 ** 4 - t0 ** 4) / (t1 ** 3 - t0 ** 3)  # E[t] for density ~ t^2 on [t0, t1]
    m2 = 3 / 5 * (t1 ** 5 - t0 ** 5) / (t1 ** 3 - t0 ** 3)  # E[t^2]
    t_mean, t_var, r_var = conical_frustum_moments(t0, t1, r)
    torch.testing.assert_close(t_mean, m1, rtol=1e-10, atol=0)
    torch.testing.assert_close(t_var, m2 - m1 ** 2, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(r_var, r ** 2 * m2 / 4, rtol=1e-10, atol=0)  # E[|p|^2] / 2 per axis


def test_stable_form_stays_accurate_in_float32_for_thin_distant_frusta():
    t0 = torch.tensor([100.0, 1000.0, 50.0])
    t1 = t0 + torch.tensor([1e-2, 1e-1, 1e-3])
    r = torch.full_like(t0, 1e-3)
    ref = conical_frustum_moments(t0.double(), t1.double(), r.double())
    got = conical_frustum_moments(t0, t1, r)
    for g, e in zip(got, ref):
        torch.testing.assert_close(g.double(), e, rtol=1e-5, atol=0)
    # The textbook ratio form loses the variance entirely in float32 on the same input.
    m1 = 3 / 4 * (t1 ** 4 - t0 ** 4) / (t1 ** 3 - t0 ** 3)
    m2 = 3 / 5 * (t1 ** 5 - t0 ** 5) / (t1 ** 3 - t0 ** 3)
    naive_rel_err = ((m2 - m1 ** 2).double() - ref[1]).abs() / ref[1]
    assert float(naive_rel_err.max()) > 0.5


def test_full_covariance_has_axial_and_radial_eigenvalues_and_diag_is_its_diagonal():
    gen = _gen(2)
    o, d = torch.randn(4, 3, generator=gen, dtype=F64), torch.randn(4, 3, generator=gen, dtype=F64) * 2
    radii = torch.rand(4, generator=gen, dtype=F64) * 0.1
    t0 = torch.rand(4, 3, generator=gen, dtype=F64) + 0.5
    t1 = t0 + torch.rand(4, 3, generator=gen, dtype=F64)
    mean_f, full = conical_frustum_gaussian(o, d, radii, t0, t1, diag=False)
    mean_d, diag = conical_frustum_gaussian(o, d, radii, t0, t1)
    assert full.shape == (4, 3, 3, 3) and diag.shape == mean_d.shape == (4, 3, 3)
    torch.testing.assert_close(mean_f, mean_d)
    torch.testing.assert_close(torch.diagonal(full, dim1=-2, dim2=-1), diag)
    t_mean, t_var, r_var = conical_frustum_moments(t0, t1, radii[:, None])
    torch.testing.assert_close(mean_d, o[:, None] + t_mean[..., None] * d[:, None])
    # d is an eigenvector with eigenvalue sigma_t^2 |d|^2; the plane perpendicular to it has sigma_r^2.
    expected = torch.stack([r_var, r_var, t_var * (d ** 2).sum(-1, keepdim=True)], -1).sort(-1).values
    torch.testing.assert_close(torch.linalg.eigvalsh(full).sort(-1).values, expected)


def test_batched_and_packed_layouts_agree():
    gen = _gen(3)
    o, d = torch.randn(3, 3, generator=gen, dtype=F64), torch.randn(3, 3, generator=gen, dtype=F64)
    radii = torch.rand(3, generator=gen, dtype=F64) * 0.1
    edges = torch.rand(3, 5, generator=gen, dtype=F64).cumsum(-1)
    t0, t1 = edges[:, :-1], edges[:, 1:]
    mean_b, cov_b = conical_frustum_gaussian(o, d, radii, t0, t1)
    ray_indices = torch.arange(3).repeat_interleave(4)
    mean_p, cov_p = conical_frustum_gaussian(o, d, radii, t0.reshape(-1), t1.reshape(-1), ray_indices=ray_indices)
    assert mean_p.shape == cov_p.shape == (12, 3)
    torch.testing.assert_close(mean_p, mean_b.reshape(12, 3))
    torch.testing.assert_close(cov_p, cov_b.reshape(12, 3))


def test_bad_shapes_raise():
    o, d, r = torch.zeros(2, 3), torch.ones(2, 3), torch.ones(2)
    with pytest.raises(ValueError):
        conical_frustum_gaussian(o, d, r, torch.zeros(3, 4), torch.ones(3, 4))  # R mismatch
    with pytest.raises(ValueError):
        conical_frustum_gaussian(o, d, r, torch.zeros(2, 4), torch.ones(2, 5))
    with pytest.raises(ValueError):
        conical_frustum_gaussian(o, d, r, torch.zeros(4), torch.ones(4), ray_indices=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        integrated_pos_enc(torch.zeros(2, 3), torch.zeros(2, 3), 3, 2)


# --- integrated positional encoding ----------------------------------------------------------------

def _monte_carlo_encoding(samples, min_deg, max_deg):
    """Sample mean and standard error of [sin(2^l x) ..., cos(2^l x) ...] in IPE's layout."""
    scales = 2.0 ** torch.arange(min_deg, max_deg, dtype=F64)
    scaled = (samples[:, None, :] * scales[:, None]).reshape(samples.shape[0], -1)
    feats = torch.cat([scaled.sin(), scaled.cos()], -1)
    return feats.mean(0), feats.std(0) / math.sqrt(samples.shape[0])


def test_ipe_equals_monte_carlo_expectation_under_a_correlated_gaussian():
    mean = torch.tensor([0.4, -1.3, 2.2], dtype=F64)
    a = torch.tensor([[0.3, 0.0, 0.0], [0.2, 0.2, 0.0], [-0.1, 0.15, 0.1]], dtype=F64)
    cov = a @ a.T  # correlated: IPE needs only the diagonal, exactly (each feature sees one axis)
    samples = mean + torch.randn(N_MC, 3, generator=_gen(4), dtype=F64) @ a.T
    est, se = _monte_carlo_encoding(samples, -1, 4)
    ipe = integrated_pos_enc(mean, torch.diagonal(cov), -1, 4)
    assert ipe.shape == (2 * 3 * 5,)
    assert float(((ipe - est) / se).abs().max()) < Z_MAX
    # The same test rejects a wrong damping, e.g. exp(-var/2) without the 4^l, or exp(-4^l var).
    scales = 2.0 ** torch.arange(-1, 4, dtype=F64)
    scaled_mean = (mean * scales[:, None]).reshape(-1)
    for damp in (torch.exp(-0.5 * torch.diagonal(cov) * scales[:, None]).reshape(-1),
                 torch.exp(-torch.diagonal(cov) * scales[:, None] ** 2).reshape(-1)):
        wrong = torch.cat([scaled_mean.sin() * damp, scaled_mean.cos() * damp])
        assert float(((wrong - est) / se).abs().max()) > 2 * Z_MAX


def test_ipe_approximates_the_average_over_the_frustum_at_low_frequencies(frustum_samples):
    tol, pe_errors = 0.02, []
    for (t0, t1, r), samples in zip(FRUSTA, frustum_samples):
        mean, cov = conical_frustum_gaussian(ORIGIN[None], DIRECTION[None], torch.tensor([r], dtype=F64),
                                             torch.tensor([[t0]], dtype=F64), torch.tensor([[t1]], dtype=F64))
        est, _ = _monte_carlo_encoding(samples, -3, 0)  # wavelengths 2pi * 1..8 vs frusta ~1-5 long
        ipe = integrated_pos_enc(mean.reshape(3), cov.reshape(3), -3, 0)
        assert float((ipe - est).abs().max()) < tol, (t0, t1, r)
        pe_errors.append(float((_plain_pos_enc(mean.reshape(3), -3, 0) - est).abs().max()))
    assert max(pe_errors) > 2 * tol  # plain PE at the mean (no integration) is visibly worse


def _plain_pos_enc(x, min_deg, max_deg):
    feats = [torch.sin(2.0 ** l * x) for l in range(min_deg, max_deg)]
    feats += [torch.cos(2.0 ** l * x) for l in range(min_deg, max_deg)]
    return torch.cat(feats, -1)


def test_ipe_tends_to_plain_positional_encoding_as_variance_vanishes():
    x = torch.randn(5, 7, 3, generator=_gen(5), dtype=F64)
    pe = _plain_pos_enc(x, 0, 6)
    torch.testing.assert_close(integrated_pos_enc(x, torch.zeros_like(x), 0, 6), pe, rtol=0, atol=1e-12)
    errors = [float((integrated_pos_enc(x, torch.full_like(x, v), 0, 6) - pe).abs().max())
              for v in (1e-4, 1e-6, 1e-8, 1e-10)]
    assert all(b < a / 50 for a, b in itertools.pairwise(errors)), errors  # O(var) convergence
    assert errors[-1] < 1e-6


def test_ipe_high_frequencies_vanish_for_large_variance():
    x = torch.randn(100, 3, generator=_gen(6), dtype=F64)
    ipe = integrated_pos_enc(x, torch.ones_like(x), 0, 12).reshape(100, 2, 12, 3)
    envelope = torch.exp(-0.5 * 4.0 ** torch.arange(12, dtype=F64))
    assert bool((ipe.abs() <= envelope[:, None] + 1e-15).all())
    assert float(ipe[:, :, 4:].abs().max()) < 1e-50
    assert float(ipe[:, :, 0].abs().max()) > 0.3  # the lowest frequency survives


def test_gradients_are_finite_and_match_finite_differences():
    gen = _gen(7)
    o = torch.randn(2, 3, generator=gen, dtype=F64, requires_grad=True)
    d = torch.randn(2, 3, generator=gen, dtype=F64, requires_grad=True)
    radii = (torch.rand(2, generator=gen, dtype=F64) * 0.2 + 0.05).requires_grad_()
    t0 = (torch.rand(2, 2, generator=gen, dtype=F64) + 0.2).requires_grad_()
    t1 = (t0.detach() + torch.rand(2, 2, generator=gen, dtype=F64) + 0.1).requires_grad_()

    def f(o, d, radii, t0, t1):
        return integrated_pos_enc(*conical_frustum_gaussian(o, d, radii, t0, t1), -1, 3)

    assert torch.autograd.gradcheck(f, (o, d, radii, t0, t1))
    # Degenerate frusta (at the apex, zero width, both) still give finite values and gradients.
    t0 = torch.tensor([[0.0, 0.0, 0.7]], dtype=F64, requires_grad=True)
    t1 = torch.tensor([[0.0, 0.5, 0.7]], dtype=F64, requires_grad=True)
    out = f(o[:1], d[:1], radii[:1], t0, t1)
    out.sum().backward()
    for v in (out, t0.grad, t1.grad, radii.grad, d.grad):
        assert bool(torch.isfinite(v).all())

"""EWA projection and SH colours of Gaussians: closed forms, Monte Carlo, culling, gradients."""

from __future__ import annotations

import math

import torch

from nerfkit.render.spherical_harmonics import sh_encode
from nerfkit.render.gaussians import covariance_3d, quat_to_rotmat, rotmat_to_quat
from nerfkit.render.splat_project import ALPHA_THRESHOLD, project_gaussians, sh_colors

INTRINSICS = torch.tensor([120.0, 110.0, 64.0, 48.0], dtype=torch.float64)
WIDTH, HEIGHT = 128, 96


def look_from(position: list[float]) -> torch.Tensor:
    """(4, 4) world-to-camera of an OpenCV camera at ``position`` looking at the origin."""
    eye = torch.tensor(position, dtype=torch.float64)
    forward = -eye / eye.norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.stack([right, down, forward], 1)
    c2w[:3, 3] = eye
    return torch.linalg.inv(c2w)


def test_quaternions_give_rotations_and_back():
    quats = torch.randn(500, 4, dtype=torch.float64)
    rotations = quat_to_rotmat(quats)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(500, 3, 3))
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(500, dtype=torch.float64))
    back = rotmat_to_quat(rotations)
    unit = torch.nn.functional.normalize(quats, dim=-1)
    torch.testing.assert_close(back, torch.where(unit[:, :1] < 0, -unit, unit))


def test_projected_mean_and_covariance_match_monte_carlo_samples():
    generator = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.05, -0.03, 0.02], [-0.1, 0.08, 0.0]], dtype=torch.float64)
    quats = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    log_scales = torch.log(torch.tensor([[0.01, 0.004, 0.002], [0.006, 0.006, 0.001]], dtype=torch.float64))
    w2c = look_from([2.0, -1.0, 1.0])
    projected = project_gaussians(means, quats, log_scales, torch.ones(2, dtype=torch.float64), w2c, INTRINSICS,
                                  WIDTH, HEIGHT, eps2d=0.0)
    covariances = covariance_3d(quats, log_scales)
    for i in range(2):
        samples = torch.distributions.MultivariateNormal(means[i], covariances[i]).sample((200_000,))
        cam = samples @ w2c[:3, :3].T + w2c[:3, 3]
        pixels = torch.stack([INTRINSICS[0] * cam[:, 0] / cam[:, 2] + INTRINSICS[2],
                              INTRINSICS[1] * cam[:, 1] / cam[:, 2] + INTRINSICS[3]], -1)
        torch.testing.assert_close(projected.means2d[i], pixels.mean(0), atol=0.01, rtol=0)
        a, b, c = projected.conics[i]
        empirical = torch.cov(pixels.T)
        inverse = torch.linalg.inv(torch.tensor([[a, b], [b, c]]))
        torch.testing.assert_close(inverse, empirical, rtol=0.03, atol=0.01)


def test_screen_extent_bounds_every_pixel_above_the_alpha_threshold():
    generator = torch.Generator().manual_seed(1)
    n = 50
    means = (torch.rand(n, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.6
    quats = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    log_scales = torch.log(torch.rand(n, 3, generator=generator, dtype=torch.float64) * 0.05 + 0.005)
    opacities = torch.rand(n, generator=generator, dtype=torch.float64)
    p = project_gaussians(means, quats, log_scales, opacities, look_from([0.0, -3.0, 0.5]), INTRINSICS, WIDTH, HEIGHT)
    ys, xs = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    px, py = xs.reshape(-1).double() + 0.5, ys.reshape(-1).double() + 0.5
    assert int(p.visible.sum()) > n // 2
    for i in range(n):
        dx, dy = p.means2d[i, 0] - px, p.means2d[i, 1] - py
        a, b, c = p.conics[i]
        alpha = p.opacities[i] * torch.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy))
        reached = alpha >= ALPHA_THRESHOLD
        if not bool(p.visible[i]):
            assert not bool(reached.any()), f"culled Gaussian {i} reaches a pixel"
            continue
        assert bool((dx[reached].abs() <= p.radii[i, 0] + 1e-9).all())
        assert bool((dy[reached].abs() <= p.radii[i, 1] + 1e-9).all())


def test_gaussians_behind_the_camera_or_off_screen_are_culled():
    means = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 0.005], [50.0, 0.0, 2.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    p = project_gaussians(means, torch.tensor([[1.0, 0, 0, 0]] * 4, dtype=torch.float64),
                          torch.full((4, 3), math.log(0.01), dtype=torch.float64), torch.full((4,), 0.9, dtype=torch.float64),
                          torch.eye(4, dtype=torch.float64), INTRINSICS, WIDTH, HEIGHT)
    assert p.visible.tolist() == [False, False, False, True]
    assert float(p.radii[:3].abs().max()) == 0


def test_antialiased_mode_scales_opacity_by_the_determinant_ratio():
    means = torch.tensor([[0.0, 0.0, 4.0], [0.0, 0.0, 4.0]], dtype=torch.float64)
    log_scales = torch.log(torch.tensor([[0.0005] * 3, [0.05] * 3], dtype=torch.float64))
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    args = (means, quats, log_scales, torch.full((2,), 0.8, dtype=torch.float64), torch.eye(4, dtype=torch.float64),
            INTRINSICS, WIDTH, HEIGHT)
    classic = project_gaussians(*args, eps2d=0.3)
    anti = project_gaussians(*args, eps2d=0.3, antialiased=True)
    torch.testing.assert_close(classic.opacities, torch.full((2,), 0.8, dtype=torch.float64))
    a, b, c = classic.conics.unbind(-1)
    det_dilated = 1.0 / (a * c - b * b)
    sigma = torch.tensor([0.0005, 0.05], dtype=torch.float64) / 4.0      # on the axis: J = diag(f / z)
    det_original = (INTRINSICS[0] * sigma) ** 2 * (INTRINSICS[1] * sigma) ** 2
    expected = 0.8 * torch.sqrt(det_original / det_dilated)
    torch.testing.assert_close(anti.opacities, expected, rtol=1e-3, atol=0)
    assert float(anti.opacities[0]) < 0.1 < 0.65 < float(anti.opacities[1])   # tiny ones fade, big ones stay


def test_projection_gradients_match_finite_differences():
    generator = torch.Generator().manual_seed(2)
    means = ((torch.rand(4, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.5).requires_grad_()
    quats = torch.randn(4, 4, generator=generator, dtype=torch.float64).requires_grad_()
    log_scales = torch.log(torch.rand(4, 3, generator=generator, dtype=torch.float64) * 0.1 + 0.02).requires_grad_()
    opacities = (torch.rand(4, generator=generator, dtype=torch.float64) * 0.5 + 0.4).requires_grad_()
    w2c = look_from([0.5, -2.5, 1.0])

    def outputs(m, q, s, o):
        p = project_gaussians(m, q, s, o, w2c, INTRINSICS, WIDTH, HEIGHT, antialiased=True)
        return p.means2d, p.conics, p.opacities

    assert torch.autograd.gradcheck(outputs, (means, quats, log_scales, opacities))


def test_sh_colours_use_the_3dgs_basis_and_offset():
    generator = torch.Generator().manual_seed(3)
    sh = torch.randn(6, 16, 3, generator=generator, dtype=torch.float64)
    means = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    center = torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(sh_colors(sh, means, center, 0), torch.clamp_min(0.28209479177387814 * sh[:, 0] + 0.5, 0))
    direction = torch.nn.functional.normalize(means - center, dim=-1)
    x, y, z = direction.unbind(-1)
    c1 = 0.4886025119029199
    band1 = (0.28209479177387814 * sh[:, 0] - c1 * y[:, None] * sh[:, 1] + c1 * z[:, None] * sh[:, 2]
             - c1 * x[:, None] * sh[:, 3])
    torch.testing.assert_close(sh_colors(sh, means, center, 1), torch.clamp_min(band1 + 0.5, 0))
    full = torch.einsum("nk,nkc->nc", sh_encode(direction, 4), sh) + 0.5
    torch.testing.assert_close(sh_colors(sh, means, center, 3), torch.clamp_min(full, 0))

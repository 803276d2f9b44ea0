"""The splat geometry regularisers (render/splat_geometry.py): normals of flat Gaussians and of depth
maps against closed forms, the depth-normal term vanishing exactly when they agree, and the
moment form of the depth distortion equal to its double sum."""

from __future__ import annotations

import math

import pytest
import torch

from nerfkit.render.splat_geometry import (depth_distortion_loss, depth_normal_loss, depth_normals,
                                           gaussian_normals)

INTRINSICS = torch.tensor([20.0, 20.0, 8.0, 6.0])


def test_a_flat_gaussian_has_the_normal_of_its_shortest_axis_facing_the_camera():
    angle = math.radians(30)
    quat = torch.tensor([[math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0]])     # about x
    scales = torch.log(torch.tensor([[1.0, 1.0, 0.01]]))
    camera = torch.eye(4)                                                          # at the origin, looking +z
    means = torch.tensor([[0.0, 0.0, 3.0]])
    normal = gaussian_normals(quat, scales, means, camera)
    expected = torch.tensor([0.0, -math.sin(angle), math.cos(angle)])              # the rotated z axis ...
    torch.testing.assert_close(normal[0], -expected, atol=1e-6, rtol=0)            # ... turned towards the camera
    assert float(normal[0] @ means[0]) < 0


@pytest.mark.parametrize("slope", [0.0, 0.5])
def test_depth_normals_of_a_plane_are_its_normal(slope):
    height, width = 12, 16
    v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    x = (u - INTRINSICS[2]) / INTRINSICS[0]
    z = 2.0 / (1.0 - slope * x)                     # the plane z = 2 + slope * X (X = x z)
    normal, valid = depth_normals(z, INTRINSICS)
    expected = torch.nn.functional.normalize(torch.tensor([slope, 0.0, -1.0]), dim=0)
    torch.testing.assert_close(normal[valid], expected.expand(int(valid.sum()), 3), atol=1e-4, rtol=0)
    assert not bool(valid[0].any()) and bool(valid[1:-1, 1:-1].all())


def test_depth_normal_loss_is_zero_when_the_normals_agree_and_grows_when_they_do_not():
    z = torch.full((10, 10), 2.0)
    alpha = torch.ones(10, 10)
    agree = torch.tensor([0.0, 0.0, -1.0]).expand(10, 10, 3)
    assert float(depth_normal_loss(agree, alpha, z * alpha, INTRINSICS)) == pytest.approx(0.0, abs=1e-6)
    tilted = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, -1.0]), dim=0).expand(10, 10, 3)
    assert float(depth_normal_loss(tilted, alpha, z * alpha, INTRINSICS)) == pytest.approx(1 - 2 ** -0.5, abs=1e-5)


def test_the_moment_form_of_the_distortion_is_the_double_sum():
    weights = torch.tensor([0.2, 0.5, 0.1])
    depths = torch.tensor([1.0, 1.5, 3.0])
    double_sum = sum(float(weights[i] * weights[j] * (depths[i] - depths[j]) ** 2) for i in range(3) for j in range(3))
    alpha = weights.sum().reshape(1, 1)
    z_sum = (weights * depths).sum().reshape(1, 1)
    z2_sum = (weights * depths ** 2).sum().reshape(1, 1)
    median = float(z_sum / alpha)
    loss = depth_distortion_loss(alpha.expand(2, 2), z_sum.expand(2, 2), z2_sum.expand(2, 2))
    assert float(loss) == pytest.approx(double_sum / median ** 2, rel=1e-5)
    one_layer = depth_distortion_loss(torch.ones(2, 2), torch.full((2, 2), 2.0), torch.full((2, 2), 4.0))
    assert float(one_layer) == pytest.approx(0.0, abs=1e-7)

"""Pose refinement's maths: the so3 exponential against the matrix exponential, zero corrections that
change no bit, rays and poses that move alike, gradients that reach the corrections (rays and splat's
projection), the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch

from nerfkit.core.errors import NerfkitError
from nerfkit.data.cameras import Cameras, generate_rays, image_pixels
from nerfkit.data.inputs import ImageBatch, RayBatch
from nerfkit.render.pose_options import PoseRefineOptions
from nerfkit.render.pose_refine import PoseRefinement, corrected_poses, skew, so3_exp, so3_exp_minus_identity
from nerfkit.render.splat import RasterSettings, render_gaussians
from nerfkit.render.splat_project import project_gaussians


def _look_at(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(4, 4) OpenCV camera-to-world at ``eye`` looking at ``target`` (z up in the world)."""
    z = torch.nn.functional.normalize(target - eye, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(z, torch.tensor([0.0, 0.0, 1.0])), dim=0)
    y = torch.linalg.cross(z, x)
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.stack([x, y, z], 1)
    c2w[:3, 3] = eye
    return c2w


def _cameras(n: int = 4, size: int = 24) -> Cameras:
    angles = torch.arange(n) * 2 * math.pi / n
    c2w = torch.stack([_look_at(torch.stack([3 * torch.cos(a), 3 * torch.sin(a), torch.tensor(1.0)]),
                                torch.zeros(3)) for a in angles])
    intrinsics = torch.tensor([[30.0, 30.0, size / 2, size / 2]]).repeat(n, 1)
    return Cameras(c2w, intrinsics, torch.tensor([[size, size]]).repeat(n, 1), torch.zeros(n, 5))


def _rays(cameras: Cameras, ids: torch.Tensor, pixels: torch.Tensor) -> RayBatch:
    origins, directions = generate_rays(cameras, ids, pixels)
    n = len(ids)
    return RayBatch(origins, directions, torch.zeros(n, 3), torch.zeros(n, 3), ids)


def test_so3_exp_matches_the_matrix_exponential():
    generator = torch.Generator().manual_seed(0)
    axes = torch.nn.functional.normalize(torch.randn(40, 3, generator=generator, dtype=torch.float64), dim=-1)
    angles = torch.logspace(-7, math.log10(3.1), 40, dtype=torch.float64)
    w = axes * angles[:, None]
    brute = torch.linalg.matrix_exp(skew(w))
    assert torch.allclose(so3_exp(w), brute, atol=1e-14, rtol=0)
    # float32: exp - I stays accurate relative to the angle also where 1 - cos(theta) would cancel
    # (the half-angle form of B); measured 1.1e-7
    single = w.float()
    truth = torch.linalg.matrix_exp(skew(single.double())) - torch.eye(3, dtype=torch.float64)
    error = (so3_exp_minus_identity(single).double() - truth).abs().amax((-1, -2)) / angles
    assert float(error.max()) < 5e-7, float(error.max())
    rotations = so3_exp(w)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(40, 3, 3),
                          atol=1e-14)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(40, dtype=torch.float64), atol=1e-14)
    # a closed form: a quarter turn about z
    quarter = so3_exp(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    assert torch.allclose(quarter, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64), atol=1e-15)


def test_so3_exp_gradients_are_exact_also_at_zero():
    w = torch.tensor([[0.3, -0.2, 0.5], [1e-6, 0.0, -2e-6], [0.0, 0.0, 0.0]], dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(so3_exp, (w,))
    # d exp([w]_x) / d w at 0 is the generators [e_i]_x
    jacobian = torch.autograd.functional.jacobian(so3_exp, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(jacobian, skew(torch.eye(3, dtype=torch.float64)).permute(1, 2, 0))


def test_zero_corrections_change_no_bit():
    cameras = _cameras()
    poses = PoseRefinement(cameras.c2w[1:], [1, 2, 3], len(cameras))
    ids = torch.tensor([1, 2, 3, 3, 1])
    rays = _rays(cameras, ids, torch.rand(5, 2) * 24)
    moved = poses.apply(rays)
    assert torch.equal(moved.origins, rays.origins) and torch.equal(moved.directions, rays.directions)
    image = ImageBatch(cameras[2], torch.zeros(24, 24, 3), torch.zeros(3), 2)
    assert torch.equal(poses.apply(image).camera.c2w, cameras.c2w[2:3])
    assert torch.equal(poses.refined_c2w(), cameras.c2w[1:])
    with pytest.raises(ValueError, match="not a training camera"):
        poses.apply(ImageBatch(cameras[0], torch.zeros(24, 24, 3), torch.zeros(3), 0))


def test_corrected_rays_are_the_rays_of_the_corrected_camera():
    """The ray path (each ray moved by its camera's correction in world axes) and the pose path
    (c2w @ [[exp(w), t], [0, 1]], the correction in the camera's frame) agree."""
    cameras = _cameras()
    poses = PoseRefinement(cameras.c2w, range(4), 4)
    with torch.no_grad():
        poses.tangent.copy_(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)) * 0.05)
    pixels = image_pixels(24, 24)
    for index in range(4):
        ids = torch.full((pixels.shape[0],), index)
        moved = poses.apply(_rays(cameras, ids, pixels))
        delta = torch.eye(4)
        delta[:3, :3] = so3_exp(poses.tangent[index, 3:].detach())
        delta[:3, 3] = poses.tangent[index, :3].detach()
        truth = Cameras(cameras.c2w @ delta, cameras.intrinsics, cameras.sizes, cameras.distortion)
        origins, directions = generate_rays(truth, ids, pixels)
        assert torch.allclose(moved.origins, origins, atol=1e-6)
        assert torch.allclose(moved.directions, directions, atol=1e-6)
        assert torch.allclose(poses.refined_c2w()[index], truth.c2w[index], atol=1e-6)


def test_gradients_reach_the_corrections_of_the_rays_cameras():
    cameras = _cameras()
    poses = PoseRefinement(cameras.c2w, range(4), 4)
    ids = torch.tensor([0, 2, 2])
    moved = poses.apply(_rays(cameras, ids, torch.tensor([[3.0, 4.0], [12.0, 12.0], [20.0, 5.0]])))
    (moved.origins.sum() + (moved.directions * torch.tensor([1.0, 2.0, 3.0])).sum()).backward()
    grad = poses.tangent.grad
    assert bool(grad[[0, 2]].abs().sum(-1).gt(0).all()) and bool(grad[[1, 3]].eq(0).all())


def _gaussians(n: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"means": (torch.rand(n, 3, generator=generator) - 0.5) * 1.6,
            "quats": torch.nn.functional.normalize(torch.randn(n, 4, generator=generator), dim=-1),
            "scales": torch.full((n, 3), -2.3) + 0.2 * torch.randn(n, 3, generator=generator),
            "opacities": torch.full((n,), 1.0), "sh0": (torch.rand(n, 1, 3, generator=generator) - 0.5) * 3,
            "shN": torch.zeros(n, 0, 3)}


def test_splat_projection_is_differentiable_in_the_correction(one_torch_thread):
    """Means, conics and depths of the projected Gaussians against central differences (float64):
    the view matrix that projection gets is a differentiable function of the tangent."""
    g = {key: value.double() for key, value in _gaussians(12, 2).items()}
    c2w = _cameras().c2w[1:2].double()

    def project(tangent: torch.Tensor) -> tuple[torch.Tensor, ...]:
        w2c = torch.linalg.inv(corrected_poses(c2w, tangent)[0])
        out = project_gaussians(g["means"], g["quats"], g["scales"], torch.sigmoid(g["opacities"]), w2c,
                                torch.tensor([30.0, 30.0, 12.0, 12.0], dtype=torch.float64), 24, 24)
        return out.means2d, out.conics, out.depths

    tangent = (torch.randn(1, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 0.02)
    assert torch.autograd.gradcheck(project, (tangent.requires_grad_(),))


def test_a_splat_camera_recovers_its_pose_from_its_correction_alone(one_torch_thread):
    """Known Gaussians, a target image from the true camera, a camera 2.5 degrees and 0.07 units off:
    Adam on its correction (through the rasterizer) brings it back."""
    gaussians = _gaussians(80, 3)
    cameras = _cameras(size=32)
    settings = RasterSettings(backend="nerfkit")

    def render(c2w: torch.Tensor) -> torch.Tensor:
        return render_gaussians(gaussians, c2w, cameras.intrinsics[1], 32, 32, torch.zeros(3), 0, settings)["rgb"]

    target = render(cameras.c2w[1])
    wrong = corrected_poses(cameras.c2w[1:2], torch.tensor([[0.04, -0.03, 0.05, 0.03, -0.02, 0.025]]))
    camera = Cameras(wrong, cameras.intrinsics[1:2], cameras.sizes[1:2], cameras.distortion[1:2])
    poses = PoseRefinement(wrong, [0], 1)
    optimizer = torch.optim.Adam([poses.tangent], lr=3e-3, eps=1e-15)

    def errors() -> tuple[float, float]:
        c2w = poses.refined_c2w().detach()[0]
        cos = (float((c2w[:3, :3].T @ cameras.c2w[1, :3, :3]).trace()) - 1) / 2
        return math.degrees(math.acos(min(1.0, max(-1.0, cos)))), float((c2w[:3, 3] - cameras.c2w[1, :3, 3]).norm())

    start = errors()
    for _ in range(60):
        optimizer.zero_grad()
        batch = poses.apply(ImageBatch(camera, target, torch.zeros(3), 0))
        (render(batch.camera.c2w[0]) - target).abs().mean().backward()
        assert bool(poses.tangent.grad.ne(0).any())
        optimizer.step()
    end = errors()
    # measured: 2.51 -> 0.16 degrees, 0.071 -> 0.010
    assert end[0] < 0.25 * start[0] and end[1] < 0.25 * start[1], (start, end)


def test_corrected_poses_keep_their_last_row_and_rotation():
    c2w = _cameras().c2w
    out = corrected_poses(c2w, torch.tensor([[0.1, 0.2, -0.1, 0.3, -0.2, 0.1]]).repeat(4, 1))
    assert torch.equal(out[:, 3], c2w[:, 3])
    rotation = out[:, :3, :3]
    assert torch.allclose(rotation @ rotation.transpose(-1, -2), torch.eye(3).expand(4, 3, 3), atol=1e-6)


def test_the_learning_rate_ramps_up_then_decays():
    options = PoseRefineOptions(pose_refine="on", pose_lr=1e-3, pose_lr_final=1e-4, pose_warmup=0.2)
    assert options.lr_factor(0.0) == 0.0
    assert options.lr_factor(0.1) == pytest.approx(0.5 * 0.1 ** 0.1)
    assert options.lr_factor(0.2) == pytest.approx(0.1 ** 0.2)
    assert options.lr_factor(1.0) == pytest.approx(0.1)
    assert PoseRefineOptions(pose_warmup=0.0).lr_factor(0.0) == 1.0
    with pytest.raises(NerfkitError, match="pose_warmup"):
        PoseRefineOptions(pose_warmup=1.0)
    with pytest.raises(NerfkitError, match="pose_lr"):
        PoseRefineOptions(pose_lr=0.0)

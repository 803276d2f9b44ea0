"""The normalising similarity: where the centre goes, what the scale is, and that it is harmless."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scene_writers import look_at

from nerfkit.core.errors import NerfkitError
from nerfkit.data.cameras import Cameras, project
from nerfkit.data.normalize import (
    OBJECT_CAMERA_DISTANCE,
    cameras_look_inward,
    check_poses,
    normalize_poses,
    optical_axis_center,
    resolve_kind,
)
from nerfkit.data.similarity import transform_c2w, transform_points

CENTER = np.array([3.0, -2.0, 1.5])


def sphere_cameras(n: int = 12, radius: float = 5.0, center=CENTER,
                   jitter: float = 0.0) -> torch.Tensor:
    """(n, 4, 4) float64 cameras on a sphere around ``center``, looking at ``center + jitter``."""
    rng = np.random.default_rng(0)
    c2w = []
    for i in range(n):
        azimuth = 2 * math.pi * i / n
        elevation = rng.uniform(-0.6, 0.9)
        eye = center + radius * np.array([math.cos(azimuth) * math.cos(elevation),
                                          math.sin(azimuth) * math.cos(elevation),
                                          math.sin(elevation)])
        c2w.append(look_at(eye, center + jitter))
    return torch.from_numpy(np.stack(c2w))


def test_object_cameras_are_centred_and_put_at_mean_distance_2_667():
    c2w = sphere_cameras()
    norm = normalize_poses(c2w, kind="object")
    center = transform_points(norm.world_to_scene, torch.from_numpy(CENTER)[None])
    np.testing.assert_allclose(center.numpy(), 0.0, atol=1e-9)
    scene_c2w = transform_c2w(norm.world_to_scene, c2w)
    np.testing.assert_allclose(scene_c2w[:, :3, 3].norm(dim=-1).numpy(), 1 / 0.375, rtol=1e-9)
    assert norm.scale == pytest.approx(OBJECT_CAMERA_DISTANCE / 5.0)
    assert not norm.unbounded
    np.testing.assert_array_equal(norm.aabb.numpy(), [[-1, -1, -1], [1, 1, 1]])
    # rotations are untouched: only translation and uniform scale
    torch.testing.assert_close(scene_c2w[:, :3, :3], c2w[:, :3, :3])


def test_unbounded_puts_the_farthest_camera_at_distance_one():
    c2w = sphere_cameras()
    c2w[3, :3, 3] = torch.from_numpy(CENTER + 2 * (c2w[3, :3, 3].numpy() - CENTER))  # 10 away
    norm = normalize_poses(c2w, kind="unbounded")
    distances = transform_c2w(norm.world_to_scene, c2w)[:, :3, 3].norm(dim=-1)
    assert norm.unbounded
    assert distances.max().item() == pytest.approx(1.0)
    assert distances[3].item() == pytest.approx(1.0) and distances[0].item() == pytest.approx(0.5)


def test_unbounded_centre_is_the_points_median_with_at_least_100_points():
    c2w = sphere_cameras()
    rng = np.random.default_rng(1)
    points = torch.from_numpy(CENTER + np.array([0.5, 0.2, -0.3]) + rng.normal(0, 0.1, (101, 3)))
    norm = normalize_poses(c2w, points, kind="unbounded")
    moved = transform_points(norm.world_to_scene, points)
    np.testing.assert_allclose(moved.median(dim=0).values.numpy(), 0.0, atol=1e-12)
    few = normalize_poses(c2w, points[:99], kind="unbounded")
    center = transform_points(few.world_to_scene, torch.from_numpy(CENTER)[None])
    np.testing.assert_allclose(center.numpy(), 0.0, atol=1e-9)   # axes point, not the points


def test_optical_axis_centre_is_least_squares_and_falls_back():
    c2w = sphere_cameras(jitter=0.0)
    np.testing.assert_allclose(optical_axis_center(c2w).numpy(), CENTER, atol=1e-9)
    # two cameras whose axes miss each other: the midpoint of the common perpendicular
    a = look_at(np.array([0.0, -5.0, 0.0]), np.array([0.0, 0.0, 0.0]))
    b = look_at(np.array([5.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(optical_axis_center(torch.from_numpy(np.stack([a, b]))).numpy(),
                               [0.0, 0.0, 0.5], atol=1e-9)
    parallel = c2w.clone()
    parallel[:, :3, :3] = c2w[0, :3, :3]
    parallel[:, :3, 3] = torch.arange(12, dtype=torch.float64)[:, None] * torch.tensor(
        [0.1, 0.0, 0.05])
    assert optical_axis_center(parallel) is None
    norm = normalize_poses(parallel, kind="unbounded")     # falls back to the cameras' mean
    centres = transform_c2w(norm.world_to_scene, parallel)[:, :3, 3]
    np.testing.assert_allclose(centres.mean(0).numpy(), 0.0, atol=1e-12)


def test_points_project_identically_before_and_after_normalisation():
    c2w = sphere_cameras(jitter=0.3)
    n = c2w.shape[0]
    intrinsics = torch.tensor([[40.0, 38.0, 16.2, 11.9]]).repeat(n, 1)
    distortion = torch.tensor([[-0.1, 0.02, 0.001, -0.002, 0.0]]).repeat(n, 1)
    sizes = torch.tensor([[32, 24]]).repeat(n, 1)
    world = Cameras(c2w, intrinsics.double(), sizes, distortion.double())
    rng = np.random.default_rng(2)
    points = torch.from_numpy(CENTER + rng.uniform(-1, 1, (n, 3)))
    ids = torch.arange(n)
    for kind in ("object", "unbounded"):
        norm = normalize_poses(c2w, kind=kind)
        scene = Cameras(transform_c2w(norm.world_to_scene, c2w), world.intrinsics, sizes,
                        world.distortion)
        torch.testing.assert_close(project(scene, ids, transform_points(norm.world_to_scene,
                                                                         points)),
                                   project(world, ids, points), atol=1e-9, rtol=0)


def test_look_inward_detects_object_captures_only():
    assert cameras_look_inward(sphere_cameras())
    forward = sphere_cameras()
    forward[:, :3, :3] = forward[0, :3, :3]          # all look the same way
    assert not cameras_look_inward(forward)
    outward = sphere_cameras()
    outward[:, :3, 1:3] *= -1                        # y and z flipped: looking away
    assert not cameras_look_inward(outward)
    assert resolve_kind("auto", sphere_cameras()) == "object"
    assert resolve_kind("auto", forward) == "unbounded"
    assert resolve_kind("object", forward, override="unbounded") == "unbounded"


@pytest.mark.parametrize("damage, match", [
    ("nan", "frame 'img_4.png' contains non-finite values"),
    ("inf", "frame 'img_4.png' contains non-finite values"),
    ("singular", "frame 'img_4.png' is not a rotation plus translation"),
    ("reflection", "frame 'img_4.png' is not a rotation .*determinant -1"),
    ("scaled", "frame 'img_4.png' is not a rotation"),
    ("last_row", "frame 'img_4.png' has last row"),
])
def test_bad_poses_are_rejected_by_name(damage, match):
    c2w = sphere_cameras()
    names = [f"img_{i}.png" for i in range(len(c2w))]
    if damage == "nan":
        c2w[4, 0, 3] = float("nan")
    elif damage == "inf":
        c2w[4, 1, 1] = float("inf")
    elif damage == "singular":
        c2w[4, :3, 0] = 0.0
    elif damage == "reflection":
        c2w[4, :3, 0] *= -1
    elif damage == "scaled":
        c2w[4, :3, :3] *= 2.0
    else:
        c2w[4, 3, 0] = 0.5
    with pytest.raises(NerfkitError, match=match):
        check_poses(c2w, names)
    with pytest.raises(NerfkitError, match=match):
        normalize_poses(c2w, kind="object", names=names)

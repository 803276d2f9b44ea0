"""Browser camera <-> camera-to-world conversions, and scene -> world poses for keyframes."""

from __future__ import annotations

import numpy as np
import pytest

from nerfkit.viewer.camera_math import (
    image_size,
    matrix_to_pose,
    matrix_to_quaternion,
    pose_to_matrix,
    quaternion_to_matrix,
    z_depth_from_ray_distance,
)


def _random_rotations(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return np.stack([quaternion_to_matrix(v) for v in q])


def test_quaternion_round_trip_including_half_turns():
    rotations = list(_random_rotations(50)) + [np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]),
                                               np.diag([-1.0, -1, 1]), np.eye(3)]
    for rotation in rotations:
        assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.allclose(quaternion_to_matrix(matrix_to_quaternion(rotation)), rotation, atol=1e-10)


def test_quaternion_matches_viser_transforms():
    import viser.transforms as vtf

    for rotation in _random_rotations(20, seed=1):
        ours = matrix_to_quaternion(rotation)
        theirs = vtf.SO3.from_matrix(rotation).wxyz
        assert np.allclose(ours, theirs * np.sign(theirs[0]), atol=1e-8)


def test_viser_camera_is_opencv_looking_along_plus_z():
    """viser's own look-at maths (the camera handle's wxyz setter) puts the look direction in the
    third column and 'up' in minus the second, i.e. OpenCV axes: our matrix needs no flip."""
    import inspect

    from viser._viser import CameraHandle

    source = inspect.getsource(CameraHandle)
    assert "look_direction = R_world_camera[:, 2]" in source
    assert "up_direction = -R_world_camera[:, 1]" in source
    # A camera at (0, -3, 0) looking at the origin with +z up: forward +y, down -z, right +x.
    rotation = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    pose = pose_to_matrix(matrix_to_quaternion(rotation), [0.0, -3.0, 0.0])
    assert np.allclose(pose[:3, 2], [0, 1, 0]) and np.allclose(pose[:3, 1], [0, 0, -1])
    wxyz, position = matrix_to_pose(pose)
    assert np.allclose(pose_to_matrix(wxyz, position), pose)


def test_matrix_to_pose_removes_scale_and_noise():
    pose = np.eye(4)
    pose[:3, :3] = _random_rotations(1, seed=2)[0] * 1.0001
    wxyz, _ = matrix_to_pose(pose)
    assert np.isclose(np.linalg.norm(wxyz), 1.0)
    assert np.allclose(quaternion_to_matrix(wxyz), pose[:3, :3] / 1.0001, atol=1e-6)


@pytest.mark.parametrize("aspect, long_side, expected", [(4 / 3, 200, (200, 150)), (0.5, 200, (100, 200)),
                                                         (1.0, 64, (64, 64)), (float("nan"), 50, (50, 50))])
def test_image_size(aspect, long_side, expected):
    assert image_size(aspect, long_side) == expected


def test_z_depth_of_a_fronto_parallel_plane_is_constant():
    height, width, focal = 6, 8, 5.0
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    ray_length = np.sqrt(((xs - width / 2) / focal) ** 2 + ((ys - height / 2) / focal) ** 2 + 1)
    distance = 2.5 * ray_length          # every ray hits the plane z = 2.5
    assert np.allclose(z_depth_from_ray_distance(distance, focal), 2.5, atol=1e-6)

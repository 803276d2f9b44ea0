"""Similarities ``x -> s R x + t`` (uniform scale ``s > 0``, proper rotation ``R``) as (4, 4)
matrices ``[[s R, t], [0, 1]]``: applied to points and camera poses, split into their parts, inverted.

nerfkit normalises every scene on load by such a similarity, ``x_scene = world_to_scene @ x_world``
(:mod:`nerfkit.data.normalize`), and moves everything it writes back to the original world
coordinates with the inverse (docs/design.md, "Conventions").
"""

from __future__ import annotations

import torch
from torch import Tensor

UNIFORM_SCALE_TOLERANCE = 1e-5
"""Largest relative spread of the singular values of ``s R`` still taken as a uniform scale."""


def decompose_similarity(similarity: Tensor) -> tuple[float, Tensor, Tensor]:
    """Split a (4, 4) similarity ``[[s R, t], [0, 1]]`` into ``s``, ``R`` and ``t``.

    Returns:
        ``s`` (float > 0), ``R`` (3, 3) float64 exactly orthonormal (the nearest rotation to the
        upper-left block / ``s``), ``t`` (3,) float64; both on the CPU.
    Raises:
        ValueError: the matrix is not (4, 4), not finite, has a last row other than (0, 0, 0, 1),
            a singular, non-uniformly scaled or reflecting upper-left block.
    """
    if tuple(similarity.shape) != (4, 4):
        raise ValueError(f"a similarity must be a (4, 4) matrix, got shape {tuple(similarity.shape)}")
    matrix = similarity.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError("the similarity holds NaN or infinite values")
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    if not torch.allclose(matrix[3], bottom, rtol=0.0, atol=1e-9):
        raise ValueError(f"the similarity's last row must be (0, 0, 0, 1), got {matrix[3].tolist()}")
    u, singular, vh = torch.linalg.svd(matrix[:3, :3])
    if float(singular[-1]) <= 1e-12 * max(float(singular[0]), 1e-300):
        raise ValueError("the similarity's 3x3 block is singular (scale 0)")
    if float(singular[0] / singular[-1]) - 1.0 > UNIFORM_SCALE_TOLERANCE:
        raise ValueError(f"the similarity must scale all axes alike, but its scales are "
                         f"{[round(v, 9) for v in singular.tolist()]}")
    rotation = u @ vh
    if float(torch.linalg.det(rotation)) < 0:
        raise ValueError("the similarity contains a reflection (det < 0); only proper rotations are "
                         "supported")
    return float(singular.mean()), rotation, matrix[:3, 3].clone()


def invert_similarity(similarity: Tensor) -> Tensor:
    """The inverse ``[[R^T / s, -R^T t / s], [0, 1]]`` of a (4, 4) similarity, float64 on its device.

    >>> invert_similarity(torch.tensor([[2.0, 0, 0, 1], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]))[0]
    tensor([ 0.5000,  0.0000,  0.0000, -0.5000], dtype=torch.float64)
    """
    scale, rotation, translation = decompose_similarity(similarity)
    inverse = torch.eye(4, dtype=torch.float64)
    inverse[:3, :3] = rotation.T / scale
    inverse[:3, 3] = -(rotation.T @ translation) / scale
    return inverse.to(similarity.device)


def transform_c2w(world_to_scene: Tensor, c2w: Tensor) -> Tensor:
    """Apply a uniform-scale similarity to (N, 4, 4) c2w; rotations stay orthonormal. float64."""
    world_to_scene = world_to_scene.double()
    scale = float(torch.linalg.det(world_to_scene[:3, :3]).abs() ** (1.0 / 3.0))
    out = world_to_scene @ c2w.double()
    out[:, :3, :3] /= scale
    return out


def transform_points(world_to_scene: Tensor, points: Tensor) -> Tensor:
    """Apply a (4, 4) similarity to (P, 3) points; float64."""
    world_to_scene = world_to_scene.double()
    return points.double() @ world_to_scene[:3, :3].T + world_to_scene[:3, 3]


def transform_camera(camera_to_world: Tensor, similarity: Tensor) -> Tensor:
    """Move camera poses by ``x -> s R x + t``; the camera frame stays orthonormal (no scale).

    Args:
        camera_to_world: (..., 4, 4) poses (any axis convention; OpenCV in nerfkit).
        similarity: (4, 4) uniform-scale proper similarity.
    Returns:
        (..., 4, 4) ``[[R R_c, s R t_c + t], [0, 1]]`` in ``camera_to_world``'s dtype and device.
    """
    if camera_to_world.ndim < 2 or tuple(camera_to_world.shape[-2:]) != (4, 4):
        raise ValueError(f"camera_to_world must have shape (..., 4, 4), got {tuple(camera_to_world.shape)}")
    scale, rotation, translation = decompose_similarity(similarity)
    device = float64_device(camera_to_world.device)
    rotation, translation = rotation.to(device), translation.to(device)
    pose = camera_to_world.to(device, torch.float64)
    out = pose.clone()
    out[..., :3, :3] = rotation @ pose[..., :3, :3]
    out[..., :3, 3] = scale * pose[..., :3, 3] @ rotation.T + translation
    return out.to(camera_to_world.device, camera_to_world.dtype)


def camera_to_world_from_scene(c2w_scene: Tensor, world_to_scene: Tensor) -> Tensor:
    """The same camera(s) as ``c2w_scene`` (scene coordinates), in the original world coordinates.

    Args:
        c2w_scene: (..., 4, 4) camera-to-scene poses.
        world_to_scene: (4, 4) similarity, ``x_scene = world_to_scene @ x_world``.
    Returns:
        (..., 4, 4) camera-to-world poses with orthonormal rotation blocks.
    """
    return transform_camera(c2w_scene, invert_similarity(world_to_scene))


def float64_device(device: torch.device) -> torch.device:
    """Where to compute in float64: the tensor's own device, except MPS (no float64 there)."""
    return torch.device("cpu") if device.type == "mps" else device

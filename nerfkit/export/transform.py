"""Move Gaussians and cameras by a similarity, e.g. from nerfkit's scene coordinates back to the world.

nerfkit normalises every scene on load by a similarity ``x_scene = world_to_scene @ x_world`` with
``world_to_scene = [[s R, t], [0, 1]]`` (DESIGN.md, "Conventions"), and every export is written back
in the ORIGINAL world coordinates. For Gaussians a similarity ``x -> s R x + t`` (``s > 0``, ``R`` a
proper rotation) acts on each parameter as follows:

- ``means``: ``s R mu + t``.
- ``quats``: ``q_R * q`` (Hamilton product), i.e. rotation ``R R_q``; the product keeps ``|q|``, so
  the optimised (not necessarily unit) quaternions stay as they were up to the rotation.
- ``scales`` (log std-devs): ``+ log s``; together with the rotation the covariance becomes
  ``s^2 R Sigma R^T``.
- ``opacities`` and ``sh0`` (band 0 is constant over the sphere): unchanged.
- ``shN``: rotated band by band, so that the colour seen along ``R d`` after the move is the colour
  that was seen along ``d`` before it. A camera moved by the same similarity sees every Gaussian
  along ``R d`` (``s`` and ``t`` do not change directions), so it renders the same image; depths
  scale by ``s``.

Rotating the SH (see :func:`sh_rotation_matrix`): the real spherical harmonics of one band ``l`` span
a ``(2l + 1)``-dimensional space that rotations map onto itself (an irreducible representation of
SO(3)), so ``Y_l(R^T d) = D_l(R) Y_l(d)`` for all unit ``d`` with an orthogonal ``(2l+1) x (2l+1)``
matrix ``D_l`` (the real Wigner D-matrix; Ivanic & Ruedenberg, J. Phys. Chem. 100 (1996) 6342,
Eq. 1-3; R. Green, "Spherical Harmonic Lighting: The Gritty Details" (2003), Sec. "Rotation").
nerfkit obtains ``D_l`` without the recurrences: it evaluates both sides at a fixed set of
well-spread directions (a Fibonacci sphere) and solves the linear system by least squares. Because
``Y_l(R^T d)`` lies exactly in the span of the ``Y_l`` and the sample matrix has full column rank,
the solution is exact up to float64 round-off (checked against orthogonality and composition in
``tests/export/test_transform.py``). With ``f(d) = sum_k Y_k(d) c_k`` the rotated coefficients that
give ``f'(R d) = f(d)`` are ``c'_l = D_l(R)^T c_l``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from nerfkit.export.splat_ply import GAUSSIAN_KEYS, sh_degree_of
from nerfkit.fields.encodings import sh_encode
from nerfkit.render.gaussians import rotmat_to_quat

MAX_SH_DEGREE = 4
"""The highest SH degree :func:`sh_rotation_matrix` handles (``sh_encode`` gives 5 bands)."""

UNIFORM_SCALE_TOLERANCE = 1e-5
"""Largest relative spread of the singular values of ``s R`` still taken as a uniform scale."""

_SAMPLE_DIRECTIONS = 64   # Fibonacci-sphere points for the least-squares fit (>= 2 l + 1 = 9 needed)


def sh_rotation_matrix(rotation: Tensor, degree: int) -> Tensor:
    """The matrix that rotates real SH coefficients of bands ``0..degree`` by ``rotation``.

    Args:
        rotation: (3, 3) proper rotation ``R``.
        degree: SH degree, 0..4 (3DGS basis and coefficient order, as ``sh_encode``).
    Returns:
        (M, M) float64 block-diagonal orthogonal matrix, M = (degree + 1)^2, on ``rotation``'s
        device: ``c' = matrix @ c`` satisfies ``sum_k Y_k(R d) c'_k == sum_k Y_k(d) c_k`` for
        every unit ``d`` (block ``l`` is ``D_l(R)^T``; see the module docstring).

    A quarter turn about z (x -> y, y -> -x) on band 1, whose basis is ``(-y, z, -x)`` times a
    constant: the ``-x`` lobe becomes the ``-y`` lobe and the ``-y`` lobe becomes ``+x``.

    >>> quarter_turn_z = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> sh_rotation_matrix(quarter_turn_z, 1).round(decimals=9) + 0.0
    tensor([[ 1.,  0.,  0.,  0.],
            [ 0.,  0.,  0.,  1.],
            [ 0.,  0.,  1.,  0.],
            [ 0., -1.,  0.,  0.]], dtype=torch.float64)
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be 0..{MAX_SH_DEGREE}, got {degree}")
    rotation = rotation.to(torch.float64)
    directions = _fibonacci_sphere(_SAMPLE_DIRECTIONS, rotation.device)   # (P, 3) rows d_i
    basis = sh_encode(directions, degree + 1)                            # Y(d_i)
    rotated = sh_encode(directions @ rotation, degree + 1)               # Y(R^T d_i)
    size = (degree + 1) ** 2
    matrix = torch.zeros(size, size, dtype=torch.float64, device=rotation.device)
    matrix[0, 0] = 1.0
    for band in range(1, degree + 1):
        block = slice(band * band, (band + 1) ** 2)
        # rotated = basis @ D_l^T in band l, so the least-squares solution is D_l^T itself.
        matrix[block, block] = torch.linalg.lstsq(basis[:, block], rotated[:, block]).solution
    return matrix


def rotate_sh(sh: Tensor, rotation: Tensor) -> Tensor:
    """Rotate SH coefficients so that the function they describe is rotated by ``rotation``.

    Args:
        sh: (..., M, C) coefficients of bands 0..degree, M = (degree + 1)^2 (e.g. ``sh0`` and
            ``shN`` concatenated along dim -2), any C (3 for RGB).
        rotation: (3, 3) proper rotation ``R``.
    Returns:
        (..., M, C) in ``sh``'s dtype and device: ``colour'(R d) == colour(d)`` for every unit ``d``.
    """
    degree = math.isqrt(sh.shape[-2]) - 1
    if sh.ndim < 2 or (degree + 1) ** 2 != sh.shape[-2]:
        raise ValueError(f"sh must have shape (..., (degree + 1)^2, C), got {tuple(sh.shape)}")
    device = _work_device(sh.device)
    matrix = sh_rotation_matrix(rotation.to(device), degree)
    out = torch.einsum("jk,...kc->...jc", matrix, sh.to(device, torch.float64))
    return out.to(sh.device, sh.dtype)


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


def transform_gaussians(gaussians: Mapping[str, Tensor], similarity: Tensor) -> dict[str, Tensor]:
    """Apply ``x -> s R x + t`` to Gaussians (see the module docstring for each parameter).

    Args:
        gaussians: ``means (N, 3)``, ``quats (N, 4)`` (w, x, y, z), ``scales (N, 3)`` (log),
            ``opacities (N,)`` (logit), ``sh0 (N, 1, 3)``, ``shN (N, K, 3)``, K in {0, 3, 8, 15, 24}.
        similarity: (4, 4) ``[[s R, t], [0, 1]]``, ``s > 0``, ``R`` a proper rotation.
    Returns:
        A new dict with exactly those six keys (others are dropped: their meaning under the move is
        unknown), each tensor in its input's dtype and device; computed in float64.
    Raises:
        ValueError: a key is missing or ``similarity`` is not a uniform-scale proper similarity.

    >>> g = {"means": torch.tensor([[1.0, 0.0, 0.0]]), "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
    ...      "scales": torch.zeros(1, 3), "opacities": torch.zeros(1), "sh0": torch.zeros(1, 1, 3),
    ...      "shN": torch.zeros(1, 0, 3)}
    >>> quarter_turn_z = torch.tensor([[0.0, -2, 0, 5], [2, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]])
    >>> out = transform_gaussians(g, quarter_turn_z)
    >>> out["means"], out["quats"], out["scales"]
    (tensor([[5., 2., 0.]]), tensor([[0.7071, 0.0000, 0.0000, 0.7071]]), tensor([[0.6931, 0.6931, 0.6931]]))
    """
    missing = [key for key in GAUSSIAN_KEYS if key not in gaussians]
    if missing:
        raise ValueError(f"the Gaussians lack {missing}: expected the keys {list(GAUSSIAN_KEYS)}")
    scale, rotation, translation = decompose_similarity(similarity)
    sh_degree_of(gaussians["shN"])          # rejects a K that is not (degree + 1)^2 - 1

    def work(tensor: Tensor) -> Tensor:
        return tensor.to(_work_device(tensor.device), torch.float64)

    means = work(gaussians["means"])
    means = scale * means @ rotation.to(means.device).T + translation.to(means.device)
    quats = work(gaussians["quats"])
    quats = _quat_multiply(rotmat_to_quat(rotation.to(quats.device)[None]).expand_as(quats), quats)
    scales = work(gaussians["scales"]) + math.log(scale)
    sh = torch.cat([gaussians["sh0"], gaussians["shN"].to(gaussians["sh0"])], -2)
    shN = rotate_sh(sh, rotation)[..., 1:, :]

    def like(value: Tensor, key: str) -> Tensor:
        return value.to(gaussians[key].device, gaussians[key].dtype)

    return {"means": like(means, "means"), "quats": like(quats, "quats"), "scales": like(scales, "scales"),
            "opacities": gaussians["opacities"].clone(), "sh0": gaussians["sh0"].clone(),
            "shN": like(shN, "shN")}


def gaussians_to_world(gaussians: Mapping[str, Tensor], world_to_scene: Tensor) -> dict[str, Tensor]:
    """Gaussians trained in scene coordinates, moved back to the original world coordinates.

    Args:
        gaussians: as :func:`transform_gaussians`, in scene coordinates.
        world_to_scene: (4, 4) similarity, ``x_scene = world_to_scene @ x_world``.
    """
    return transform_gaussians(gaussians, invert_similarity(world_to_scene))


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
    device = _work_device(camera_to_world.device)
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


def _quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of (..., 4) (w, x, y, z) quaternions: rotation of ``a * b`` = R_a R_b."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)


def _fibonacci_sphere(count: int, device: torch.device) -> Tensor:
    """(count, 3) float64 unit vectors spread evenly over the sphere (golden-angle spiral)."""
    index = torch.arange(count, dtype=torch.float64, device=device) + 0.5
    z = 1.0 - 2.0 * index / count
    radius = torch.sqrt(1.0 - z * z)
    angle = index * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), z], -1)


def _work_device(device: torch.device) -> torch.device:
    """Where to compute in float64: the tensor's own device, except MPS (no float64 there)."""
    return torch.device("cpu") if device.type == "mps" else device

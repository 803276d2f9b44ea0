"""Real spherical harmonics: the basis (3DGS / instant-ngp order and constants) and its rotation.

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

import torch
from torch import Tensor

from nerfkit.data.similarity import float64_device

SH_C0 = 0.28209479177387814
"""The constant band-0 basis value: a Gaussian's base colour is ``SH_C0 * sh0 + 0.5``."""

MAX_SH_DEGREE = 4
"""The highest SH degree :func:`sh_rotation_matrix` handles (``sh_encode`` gives 5 bands)."""

_SAMPLE_DIRECTIONS = 64   # Fibonacci-sphere points for the least-squares fit (>= 2 l + 1 = 9 needed)


def sh_encode(directions: Tensor, degree: int) -> Tensor:
    """Real spherical harmonics of unit directions, bands 0..degree-1.

    Args:
        directions: (N, 3) unit vectors.
        degree: number of bands, 1..5 (instant-ngp uses 4: 16 coefficients).
    Returns:
        (N, degree**2) orthonormal real SH basis values (Condon-Shortley phase included).
    """
    if not 1 <= degree <= 5:
        raise ValueError(f"sh_encode supports 1..5 bands, got {degree}")
    x, y, z = directions.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree > 1:
        c1 = 0.4886025119029199
        out += [-c1 * y, c1 * z, -c1 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [1.0925484305920792 * xy, -1.0925484305920792 * yz,
                0.31539156525252005 * (3 * zz - 1), -1.0925484305920792 * xz,
                0.5462742152960396 * (xx - yy)]
    if degree > 3:
        out += [-0.5900435899266435 * y * (3 * xx - yy), 2.890611442640554 * xy * z,
                -0.4570457994644658 * y * (5 * zz - 1), 0.3731763325901154 * z * (5 * zz - 3),
                -0.4570457994644658 * x * (5 * zz - 1), 1.445305721320277 * z * (xx - yy),
                -0.5900435899266435 * x * (xx - 3 * yy)]
    if degree > 4:
        out += [2.5033429417967046 * xy * (xx - yy), -1.7701307697799304 * yz * (3 * xx - yy),
                0.9461746957575601 * xy * (7 * zz - 1), -0.6690465435572892 * yz * (7 * zz - 3),
                0.10578554691520431 * (35 * zz * zz - 30 * zz + 3),
                -0.6690465435572892 * xz * (7 * zz - 3), 0.47308734787878004 * (xx - yy) * (7 * zz - 1),
                -1.7701307697799304 * xz * (xx - 3 * yy),
                0.6258357354491761 * (xx * (xx - 3 * yy) - yy * (3 * xx - yy))]
    return torch.stack(out, -1)


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
    device = float64_device(sh.device)
    matrix = sh_rotation_matrix(rotation.to(device), degree)
    out = torch.einsum("jk,...kc->...jc", matrix, sh.to(device, torch.float64))
    return out.to(sh.device, sh.dtype)


def _fibonacci_sphere(count: int, device: torch.device) -> Tensor:
    """(count, 3) float64 unit vectors spread evenly over the sphere (golden-angle spiral)."""
    index = torch.arange(count, dtype=torch.float64, device=device) + 0.5
    z = 1.0 - 2.0 * index / count
    radius = torch.sqrt(1.0 - z * z)
    angle = index * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), z], -1)

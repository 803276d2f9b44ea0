"""Geometry of 3D Gaussians: rotations from quaternions and covariances from rotation and scale.

Conventions (as 3DGS and gsplat): quaternions are (w, x, y, z) and need not be normalised; scales
are stored as log standard deviations; opacities as logits.
"""

from __future__ import annotations

import torch
from torch import Tensor


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(N, 4) quaternions (w, x, y, z), any norm > 0 -> (N, 3, 3) rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(quats.shape[:-1] + (3, 3))


def rotmat_to_quat(rotations: Tensor) -> Tensor:
    """(N, 3, 3) rotation matrices -> (N, 4) unit quaternions (w, x, y, z) with w >= 0."""
    m = rotations
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = torch.stack([
        torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                     m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], -2)                                   # (..., 4, 4): row i is 4 q_i q, largest when q_i is
    diagonal = torch.stack([1 + trace, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                            1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                            1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = diagonal.argmax(-1)
    quats = torch.gather(candidates, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    quats = torch.nn.functional.normalize(quats, dim=-1)
    return torch.where(quats[..., :1] < 0, -quats, quats)


def covariance_3d(quats: Tensor, log_scales: Tensor) -> Tensor:
    """(N, 4) quaternions and (N, 3) log standard deviations -> (N, 3, 3) covariances R S S^T R^T."""
    rotations = quat_to_rotmat(quats)
    m = rotations * torch.exp(log_scales).unsqueeze(-2)
    return m @ m.transpose(-1, -2)

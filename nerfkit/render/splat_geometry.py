"""Geometry regularisers for Gaussian splats, in the spirit of 2DGS (Huang et al. 2024, Sec. 4.2)
and Gaussian Opacity Fields: each Gaussian's normal is the axis of its smallest scale, and

- **depth-normal consistency** (2DGS Eq. 14): ``sum_i w_i (1 - n_i . N)`` per pixel, with ``N`` the
  normal of the rendered depth map. With the composited normal ``n = sum_i w_i n_i`` and alpha
  ``A = sum_i w_i`` this is ``A - n . N``;
- **depth distortion** (2DGS Eq. 13, in its squared form): ``sum_ij w_i w_j (z_i - z_j)^2 =
  2 (A sum_i w_i z_i^2 - (sum_i w_i z_i)^2)``, from two composited moments of the depth, divided by
  the squared median depth so it does not depend on the scene's scale.

Both pull Gaussians onto thin, surface-aligned layers, which makes meshes fused from their depth
cleaner. They cost four extra composited channels per pixel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfkit.render.gaussians import quat_to_rotmat


def gaussian_normals(quats: Tensor, log_scales: Tensor, means: Tensor, world_to_camera: Tensor) -> Tensor:
    """(N, 3) unit normals in camera axes: each Gaussian's shortest axis, turned to face the camera.

    Args:
        quats: (N, 4) (w, x, y, z); log_scales: (N, 3); means: (N, 3) world points;
        world_to_camera: (4, 4).
    """
    rotations = quat_to_rotmat(quats)                                     # (N, 3, 3), columns = axes
    shortest = log_scales.argmin(-1)
    axis = torch.gather(rotations, 2, shortest[:, None, None].expand(-1, 3, 1)).squeeze(-1)
    rotation = world_to_camera[:3, :3]
    normal = axis @ rotation.T
    centres = means @ rotation.T + world_to_camera[:3, 3]
    facing = torch.where((normal * centres).sum(-1, keepdim=True) > 0, -normal, normal)
    return torch.nn.functional.normalize(facing, dim=-1)


def depth_normals(z: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """Normals of a depth map by central differences of its back-projected points.

    Args:
        z: (H, W) camera depth; intrinsics: (4,) fx, fy, cx, cy.
    Returns:
        (H, W, 3) unit normals in camera axes facing the camera, and (H, W) bool: where all four
        neighbours exist (the border is False).
    """
    height, width = z.shape
    fx, fy, cx, cy = intrinsics.unbind(-1)
    v, u = torch.meshgrid(torch.arange(height, device=z.device, dtype=z.dtype) + 0.5,
                          torch.arange(width, device=z.device, dtype=z.dtype) + 0.5, indexing="ij")
    points = torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], -1)
    dx = torch.zeros_like(points)
    dy = torch.zeros_like(points)
    dx[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dy[1:-1] = points[2:] - points[:-2]
    normal = torch.nn.functional.normalize(torch.cross(dy, dx, dim=-1), dim=-1)
    normal = torch.where((normal * points).sum(-1, keepdim=True) > 0, -normal, normal)
    valid = torch.zeros_like(z, dtype=torch.bool)
    valid[1:-1, 1:-1] = True
    return normal, valid


def depth_normal_loss(normals: Tensor, alpha: Tensor, z_sum: Tensor, intrinsics: Tensor,
                      min_alpha: float = 0.5) -> Tensor:
    """Mean of ``A - n . N`` over pixels at least ``min_alpha`` opaque (and their neighbours).

    Args:
        normals: (H, W, 3) composited Gaussian normals ``sum_i w_i n_i``; alpha: (H, W);
        z_sum: (H, W) composited depth ``sum_i w_i z_i``; intrinsics: (4,).
    """
    z = z_sum / alpha.clamp(min=1e-6)
    surface, valid = depth_normals(z, intrinsics)
    opaque = alpha > min_alpha
    keep = valid & opaque
    keep[1:-1, 1:-1] &= opaque[:-2, 1:-1] & opaque[2:, 1:-1] & opaque[1:-1, :-2] & opaque[1:-1, 2:]
    if not bool(keep.any()):
        return z_sum.sum() * 0.0
    return (alpha - (normals * surface).sum(-1))[keep].mean()


def depth_distortion_loss(alpha: Tensor, z_sum: Tensor, z2_sum: Tensor) -> Tensor:
    """Mean over pixels of ``2 (A sum w z^2 - (sum w z)^2)`` / median depth^2 (all (H, W) inputs)."""
    spread = 2.0 * (alpha * z2_sum - z_sum ** 2)
    opaque = alpha > 0.5
    scale = (z_sum[opaque] / alpha[opaque]).median().detach() if bool(opaque.any()) else z_sum.new_tensor(1.0)
    return spread.clamp(min=0.0).mean() / scale.clamp(min=1e-6) ** 2

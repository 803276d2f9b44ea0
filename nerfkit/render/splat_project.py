"""EWA projection of 3D Gaussians into one pinhole camera, and their view-dependent colours.

A Gaussian with mean ``mu`` and covariance ``Sigma`` (world) seen by a camera with world-to-camera
rotation ``W`` and intrinsics ``fx fy cx cy`` becomes, to first order (Zwicker et al. 2002, EWA;
Kerbl et al. 2023, Eq. 5), a 2D Gaussian with mean ``(fx x/z + cx, fy y/z + cy)`` and covariance
``J W Sigma W^T J^T`` where ``J`` is the Jacobian of the perspective map at the mean. The
conventions follow gsplat so that both rasterizers agree: pixel centres at ``+0.5``, the view-space
``x/z`` clamped to 1.3x the field of view in ``J``, a dilation of ``eps2d`` pixel^2, and the
opacity-aware screen extent ``k * sqrt(Sigma_2d)`` with ``k = min(3.33, sqrt(2 ln(255 o)))``
beyond which ``o exp(-sigma) < 1/255``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nerfkit.render.gaussians import quat_to_rotmat
from nerfkit.render.spherical_harmonics import SH_C0, sh_encode

ALPHA_THRESHOLD = 1.0 / 255.0


@dataclass
class Projected:
    """Gaussians in screen space (N = all input Gaussians; invisible ones have ``radii == 0``).

    Attributes:
        means2d: (N, 2) pixel coordinates of the centres.
        conics: (N, 3) upper triangle (a, b, c) of the inverse 2D covariance, pixels^-2.
        depths: (N,) camera-space z.
        opacities: (N,) in [0, 1] (times the anti-aliasing compensation when enabled).
        radii: (N, 2) float screen half-extents in pixels along x and y (0 = culled).
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    opacities: Tensor
    radii: Tensor

    @property
    def visible(self) -> Tensor:
        """(N,) bool: the Gaussian touches the image."""
        return self.radii[:, 0] > 0


def project_gaussians(means: Tensor, quats: Tensor, log_scales: Tensor, opacities: Tensor,
                      world_to_camera: Tensor, intrinsics: Tensor, width: int, height: int,
                      near: float = 0.01, eps2d: float = 0.3, antialiased: bool = False) -> Projected:
    """Project Gaussians into one camera (differentiable in every float input).

    Args:
        means: (N, 3) centres; quats: (N, 4) (w, x, y, z); log_scales: (N, 3) log std-devs.
        opacities: (N,) in [0, 1].
        world_to_camera: (4, 4) OpenCV axes (x right, y down, z forward).
        intrinsics: (4,) fx, fy, cx, cy in pixels.
        width, height: image size in pixels.
        near: Gaussians with z <= near are culled.
        eps2d: dilation added to the 2D covariance (pixels^2).
        antialiased: scale opacity by sqrt(det(S) / det(S + eps2d I)) (Mip-Splatting's 2D filter).
    """
    fx, fy, cx, cy = intrinsics.unbind(-1)
    rotation, translation = world_to_camera[:3, :3], world_to_camera[:3, 3]
    p_cam = means @ rotation.T + translation
    x, y, z = p_cam.unbind(-1)
    in_front = z > near
    z_safe = torch.where(in_front, z, torch.ones_like(z))

    # Sigma_2d = J W R S S^T R^T W^T J^T = T T^T with T = J W R S: three small products instead of the
    # five of forming W Sigma_3d W^T first (a fifth less time forward + backward on the CPU).
    spread = rotation @ (quat_to_rotmat(quats) * torch.exp(log_scales).unsqueeze(-2))   # (N, 3, 3): W R S
    margin_x = 0.3 * 0.5 * width / fx      # gsplat: x/z may reach 0.3 half-fovs beyond the border
    margin_y = 0.3 * 0.5 * height / fy
    tx = z_safe * torch.clamp(x / z_safe, min=-(cx / fx + margin_x), max=(width - cx) / fx + margin_x)
    ty = z_safe * torch.clamp(y / z_safe, min=-(cy / fy + margin_y), max=(height - cy) / fy + margin_y)
    zeros = torch.zeros_like(z_safe)
    jacobian = torch.stack([
        torch.stack([fx / z_safe, zeros, -fx * tx / z_safe ** 2], -1),
        torch.stack([zeros, fy / z_safe, -fy * ty / z_safe ** 2], -1),
    ], -2)                                                           # (N, 2, 3)
    footprint = jacobian @ spread                                              # (N, 2, 3): J W R S
    cov2d = footprint @ footprint.transpose(-1, -2)                            # (N, 2, 2)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det_original = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    valid = in_front & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)
    if antialiased:
        opacities = opacities * torch.sqrt(torch.clamp(det_original / det_safe, min=0.0))
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], -1)

    with torch.no_grad():
        extent = torch.sqrt(2.0 * torch.log(torch.clamp(opacities / ALPHA_THRESHOLD, min=1.0)))
        extent = torch.clamp(extent, max=3.33)
        radii = extent.unsqueeze(-1) * torch.sqrt(torch.stack([a, c], -1).clamp(min=0))
        on_screen = ((means2d + radii > 0) & (means2d - radii < torch.tensor([width, height],
                                                                             device=means.device))).all(-1)
        keep = valid & on_screen & (opacities >= ALPHA_THRESHOLD) & (radii > 0).all(-1)
        radii = torch.where(keep.unsqueeze(-1), radii, torch.zeros_like(radii))
    return Projected(means2d, conics, z, opacities, radii)


def sh_colors(sh: Tensor, means: Tensor, camera_center: Tensor, degree: int) -> Tensor:
    """View-dependent colours from spherical harmonics (3DGS basis and sign conventions).

    Args:
        sh: (N, M, 3) coefficients, M >= (degree + 1)^2.
        means: (N, 3) centres; camera_center: (3,) the viewpoint.
        degree: SH degree in use, 0..3.
    Returns:
        (N, 3) colours, ``sum_k Y_k(d) sh_k + 0.5`` clamped at 0.
    """
    n_coeffs = (degree + 1) ** 2
    if degree == 0:
        return torch.clamp_min(sh[:, 0] * SH_C0 + 0.5, 0.0)
    directions = torch.nn.functional.normalize(means - camera_center, dim=-1)
    basis = sh_encode(directions, degree + 1)                       # (N, n_coeffs)
    return torch.clamp_min(torch.einsum("nk,nkc->nc", basis, sh[:, :n_coeffs]) + 0.5, 0.0)


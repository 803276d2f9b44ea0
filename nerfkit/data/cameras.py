"""Cameras and their maths in one place: the :class:`Cameras` type, pose conventions, lens
distortion, ray generation and projection.

Inside nerfkit every camera is camera-to-world, OpenCV axes (x right, y down, z forward).
OpenGL/Blender poses (y up, z backward) are converted once, by :func:`opengl_to_opencv`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Cameras:
    """N pinhole cameras with optional OpenCV radial-tangential distortion.

    Attributes:
        c2w: (N, 4, 4) float32 camera-to-world, OpenCV axes, normalised scene coordinates.
        intrinsics: (N, 4) float32 ``fx, fy, cx, cy`` in pixels of the (downscaled) image; the
            centre of the top-left pixel is at (0.5, 0.5).
        sizes: (N, 2) int64 ``width, height`` in pixels.
        distortion: (N, 5) float32 OpenCV ``k1, k2, p1, p2, k3``; all zeros for a pinhole.
    """

    c2w: Tensor
    intrinsics: Tensor
    sizes: Tensor
    distortion: Tensor

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def __getitem__(self, index) -> "Cameras":
        """Cameras at ``index`` (an int, slice, list or tensor); always keeps the batch dim."""
        if isinstance(index, int):
            index = [index]
        return Cameras(self.c2w[index], self.intrinsics[index], self.sizes[index],
                       self.distortion[index])

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(self.c2w.to(device), self.intrinsics.to(device), self.sizes.to(device),
                       self.distortion.to(device))

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for images resized by ``factor`` (0.5 = half the width)."""
        sizes = torch.round(self.sizes.double() * factor).long()
        intrinsics = self.intrinsics.clone()
        intrinsics[:, 0] *= sizes[:, 0] / self.sizes[:, 0]
        intrinsics[:, 1] *= sizes[:, 1] / self.sizes[:, 1]
        intrinsics[:, 2] *= sizes[:, 0] / self.sizes[:, 0]
        intrinsics[:, 3] *= sizes[:, 1] / self.sizes[:, 1]
        return Cameras(self.c2w.clone(), intrinsics, sizes, self.distortion.clone())

    def downscaled(self, factor: int) -> "Cameras":
        """The same cameras for images area-downsampled by an integer ``factor`` (multiscale eval).

        Sizes become ``(W // factor, H // factor)`` and ``fx, fy, cx, cy`` are divided by
        ``factor`` exactly (no rounding), so downscaled pixel (i, j) covers exactly the full-size
        pixels ``[i*f, (i+1)*f) x [j*f, (j+1)*f)``: the full image cropped to multiples of ``f`` at
        the right and bottom. Distortion (in normalised coordinates) is unchanged. A cone-tracing
        NeRF derives its pixel footprint from the focal length, so the footprint widens by ``f``.

        Args:
            factor: positive integer divisor of the image size.
        Returns:
            N cameras with (N, 2) sizes ``W // f, H // f`` and (N, 4) intrinsics in the new pixels.
        """
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"downscale factor must be a positive integer, got {factor!r}")
        sizes = torch.div(self.sizes, factor, rounding_mode="floor")
        return Cameras(self.c2w.clone(), self.intrinsics / factor, sizes, self.distortion.clone())

    @property
    def has_distortion(self) -> bool:
        return bool((self.distortion != 0).any())

    def without_distortion(self) -> "Cameras":
        """The same cameras as pinholes (distortion zeroed): for views that a method renders and
        that are used with the same pinhole model (mesh fusion, textures)."""
        return Cameras(self.c2w.clone(), self.intrinsics.clone(), self.sizes.clone(),
                       torch.zeros_like(self.distortion))


_OPENGL_TO_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """Flip the camera's y and z axes: (..., 4, 4) OpenGL/Blender c2w -> OpenCV c2w (an involution)."""
    return c2w @ _OPENGL_TO_OPENCV.to(c2w)


def distort(xy: Tensor, distortion: Tensor) -> Tensor:
    """Apply OpenCV radial-tangential distortion to normalised image coordinates.

    Args:
        xy: (..., 2) undistorted normalised coordinates (x/z, y/z).
        distortion: (..., 5) ``k1, k2, p1, p2, k3``.
    Returns:
        (..., 2) distorted normalised coordinates.
    """
    k1, k2, p1, p2, k3 = distortion.unbind(-1)
    x, y = xy.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack([xd, yd], -1)


def undistort(xy_distorted: Tensor, distortion: Tensor, iterations: int = 10) -> Tensor:
    """Invert :func:`distort` by Newton's method (as COLMAP does).

    Args:
        xy_distorted: (..., 2) distorted normalised coordinates.
        distortion: (..., 5) ``k1, k2, p1, p2, k3`` (broadcastable).
    Returns:
        (..., 2) undistorted normalised coordinates ``xy`` with ``distort(xy) == xy_distorted``.
    """
    xy = xy_distorted.clone()
    eps = 1e-9
    for _ in range(iterations):
        # Jacobian by forward differences keeps this short and exact enough in float64.
        f = distort(xy, distortion) - xy_distorted
        dx = torch.tensor([eps, 0.0], dtype=xy.dtype, device=xy.device)
        dy = torch.tensor([0.0, eps], dtype=xy.dtype, device=xy.device)
        jx = (distort(xy + dx, distortion) - xy_distorted - f) / eps
        jy = (distort(xy + dy, distortion) - xy_distorted - f) / eps
        a, c = jx.unbind(-1)
        b, d = jy.unbind(-1)
        det = a * d - b * c
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        step_x = (d * f[..., 0] - b * f[..., 1]) / det
        step_y = (-c * f[..., 0] + a * f[..., 1]) / det
        xy = xy - torch.stack([step_x, step_y], -1)
    return xy


def generate_rays(cameras: Cameras, camera_ids: Tensor, pixels: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through pixel positions.

    Args:
        cameras: the scene's cameras.
        camera_ids: (R,) int64 camera index per ray.
        pixels: (R, 2) float pixel positions (x, y); pixel centres are at +0.5.
    Returns:
        origins (R, 3) and unit directions (R, 3), float32, scene coordinates.
    """
    intr = cameras.intrinsics[camera_ids].double()
    xy = torch.stack([(pixels[:, 0].double() - intr[:, 2]) / intr[:, 0],
                      (pixels[:, 1].double() - intr[:, 3]) / intr[:, 1]], -1)
    dist = cameras.distortion[camera_ids]
    if bool((dist != 0).any()):
        xy = undistort(xy, dist.double())
    dirs_cam = torch.cat([xy, torch.ones_like(xy[:, :1])], -1).float()
    c2w = cameras.c2w[camera_ids]
    dirs = torch.einsum("rij,rj->ri", c2w[:, :3, :3], dirs_cam)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    return c2w[:, :3, 3].contiguous(), dirs


def image_pixels(width: int, height: int, device: torch.device | str = "cpu") -> Tensor:
    """(H*W, 2) pixel-centre positions of an image, row-major (x varies fastest)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                            indexing="ij")
    return torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5


def project(cameras: Cameras, camera_ids: Tensor, points: Tensor) -> Tensor:
    """Project scene points to pixels (with distortion): (R, 3) -> (R, 2) pixel positions."""
    c2w = cameras.c2w[camera_ids].double()
    rot, trans = c2w[:, :3, :3], c2w[:, :3, 3]
    local = torch.einsum("rji,rj->ri", rot, points.double() - trans)
    xy = local[:, :2] / local[:, 2:3]
    xy = distort(xy, cameras.distortion[camera_ids].double())
    intr = cameras.intrinsics[camera_ids].double()
    return torch.stack([xy[:, 0] * intr[:, 0] + intr[:, 2], xy[:, 1] * intr[:, 1] + intr[:, 3]], -1)


def pixel_footprint_radii(cameras: Cameras, camera_ids: Tensor, pixels: Tensor,
                          directions: Tensor | None = None) -> Tensor:
    """Mip-NeRF's cone radius of each pixel's ray, at unit distance along the unit ray.

    The distance between the unit directions of a pixel and of its right-hand neighbour is the
    pixel's angular width; the cone whose disk has the pixel square's variance has radius
    ``width * 2 / sqrt(12)`` (Mip-NeRF Sec. 3.1). Measured on the actual rays, so it includes lens
    distortion and the narrowing towards the image corners. A camera downscaled by ``f``
    (``Cameras.scaled``) gives ``f`` times wider cones.

    Args:
        cameras, camera_ids (R,), pixels (R, 2): as :func:`generate_rays`.
        directions: (R, 3) the unit directions :func:`generate_rays` gave for ``pixels``, when the
            caller has them (saves generating them again).
    Returns:
        (R,) float32 radii in scene units per scene unit of distance (radians, for small angles).
    """
    here = directions if directions is not None else generate_rays(cameras, camera_ids, pixels)[1]
    _, right = generate_rays(cameras, camera_ids, pixels + torch.tensor([1.0, 0.0], device=pixels.device))
    return (right - here).norm(dim=-1) * (2.0 / 12.0 ** 0.5)

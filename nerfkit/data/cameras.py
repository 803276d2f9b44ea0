"""Cameras and their maths in one place: the :class:`Cameras` type, pose conventions, lens
distortion, ray generation and projection.

Two lens models: OpenCV's radial-tangential distortion of pinhole coordinates (COLMAP's
``SIMPLE_PINHOLE`` .. ``OPENCV``) and OpenCV's equidistant fisheye (COLMAP's ``OPENCV_FISHEYE``):
a ray at angle ``theta`` from the optical axis lands at normalised radius
``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)``, so a fisheye sees
rays up to and beyond 90 degrees from the axis that no pinhole image holds.

Inside nerfkit every camera is camera-to-world, OpenCV axes (x right, y down, z forward).
OpenGL/Blender poses (y up, z backward) are converted once, by :func:`opengl_to_opencv`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Cameras:
    """N cameras: pinholes with optional OpenCV radial-tangential distortion, or OpenCV fisheyes.

    Attributes:
        c2w: (N, 4, 4) float32 camera-to-world, OpenCV axes, normalised scene coordinates.
        intrinsics: (N, 4) float32 ``fx, fy, cx, cy`` in pixels of the (downscaled) image; the
            centre of the top-left pixel is at (0.5, 0.5).
        sizes: (N, 2) int64 ``width, height`` in pixels.
        distortion: (N, 5) float32: OpenCV ``k1, k2, p1, p2, k3`` of a pinhole (all zeros: none);
            of a fisheye its ``k1, k2, k3, k4, 0``.
        fisheye: (N,) bool, True for an equidistant fisheye (``OPENCV_FISHEYE``); None on
            construction means all False.
    """

    c2w: Tensor
    intrinsics: Tensor
    sizes: Tensor
    distortion: Tensor
    fisheye: Tensor = field(default=None)

    def __post_init__(self) -> None:
        if self.fisheye is None:
            self.fisheye = torch.zeros(self.c2w.shape[0], dtype=torch.bool, device=self.c2w.device)

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def __getitem__(self, index) -> "Cameras":
        """Cameras at ``index`` (an int, slice, list or tensor); always keeps the batch dim."""
        if isinstance(index, int):
            index = [index]
        return Cameras(self.c2w[index], self.intrinsics[index], self.sizes[index],
                       self.distortion[index], self.fisheye[index])

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(self.c2w.to(device), self.intrinsics.to(device), self.sizes.to(device),
                       self.distortion.to(device), self.fisheye.to(device))

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for images resized by ``factor`` (0.5 = half the width)."""
        sizes = torch.round(self.sizes.double() * factor).long()
        intrinsics = self.intrinsics.clone()
        intrinsics[:, 0] *= sizes[:, 0] / self.sizes[:, 0]
        intrinsics[:, 1] *= sizes[:, 1] / self.sizes[:, 1]
        intrinsics[:, 2] *= sizes[:, 0] / self.sizes[:, 0]
        intrinsics[:, 3] *= sizes[:, 1] / self.sizes[:, 1]
        return Cameras(self.c2w.clone(), intrinsics, sizes, self.distortion.clone(), self.fisheye.clone())

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
        return Cameras(self.c2w.clone(), self.intrinsics / factor, sizes, self.distortion.clone(),
                       self.fisheye.clone())

    @property
    def has_distortion(self) -> bool:
        """Whether any camera is not an ideal pinhole (distortion, or a fisheye)."""
        return bool((self.distortion != 0).any()) or self.has_fisheye

    @property
    def has_fisheye(self) -> bool:
        return bool(self.fisheye.any())

    def without_distortion(self) -> "Cameras":
        """The same cameras as pinholes (distortion zeroed, fisheyes made pinholes of the same
        focal length): for views that a method renders and that are used with the same pinhole
        model (mesh fusion, textures)."""
        return Cameras(self.c2w.clone(), self.intrinsics.clone(), self.sizes.clone(),
                       torch.zeros_like(self.distortion), torch.zeros_like(self.fisheye))


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


def fisheye_radius(theta: Tensor, coefficients: Tensor) -> Tensor:
    """The equidistant fisheye's distorted radius of rays at angle ``theta`` from the axis.

    Args:
        theta: (...,) angles in radians.
        coefficients: (..., 4) ``k1, k2, k3, k4`` (broadcastable).
    Returns:
        (...,) ``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)``, the
        radius in normalised image coordinates.
    """
    k1, k2, k3, k4 = coefficients.unbind(-1)
    t2 = theta * theta
    return theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))


def fisheye_max_angle(coefficients: Tensor, samples: int = 4096) -> Tensor:
    """The angle up to which a fisheye's radius grows (its lens model's field of view), at most pi.

    Args:
        coefficients: (..., 4) ``k1, k2, k3, k4``.
        samples: the angles [0, pi] are searched on a grid of this many steps; the result is the
            last grid angle before the radius stops growing (at most pi / samples short of it).
    Returns:
        (...,) radians.
    """
    flat = coefficients.reshape(-1, 4)
    lenses, which = torch.unique(flat, dim=0, return_inverse=True)
    theta = torch.linspace(0.0, torch.pi, samples + 1, dtype=flat.dtype, device=flat.device)
    k1, k2, k3, k4 = (k[:, None] for k in lenses.unbind(-1))
    t2 = theta * theta
    slope = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))       # (L, samples + 1)
    falling = slope <= 0
    first_falling = torch.where(falling.any(-1), falling.int().argmax(-1), samples + 1)
    return theta[(first_falling - 1).clamp(0, samples)][which].reshape(coefficients.shape[:-1])


def fisheye_angle(radius: Tensor, coefficients: Tensor, max_angle: Tensor | None = None,
                  iterations: int = 50, tolerance: float = 1e-14) -> Tensor:
    """Invert :func:`fisheye_radius`: the ray angle of a distorted radius, by Newton's method kept
    inside a bracket that shrinks every step (a step that would leave it bisects instead), so it
    converges for every radius the lens reaches, also where plain Newton overshoots. Stops once
    every radius is matched to ``tolerance`` (a few steps for ordinary lenses).

    Args:
        radius: (...,) ``theta_d`` >= 0, normalised image coordinates.
        coefficients: (..., 4) ``k1, k2, k3, k4`` (broadcastable).
        max_angle: (...,) :func:`fisheye_max_angle` of the coefficients, when the caller has it.
    Returns:
        (...,) ``theta`` in [0, max_angle] radians with ``fisheye_radius(theta) == radius`` (to
        ``tolerance``); the largest angle for a radius beyond the lens's reach.
    """
    coefficients = coefficients.expand(*radius.shape, 4)
    k1, k2, k3, k4 = coefficients.unbind(-1)
    low = torch.zeros_like(radius)
    high = (fisheye_max_angle(coefficients) if max_angle is None else max_angle).to(radius).expand_as(radius)
    theta = torch.minimum(radius, high)
    for _ in range(iterations):
        t2 = theta * theta
        error = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - radius
        low = torch.where(error < 0, theta, low)
        high = torch.where(error > 0, theta, high)
        if not bool(((error.abs() > tolerance) & (high - low > tolerance)).any()):
            break
        slope = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
        newton = theta - error / slope.clamp_min(1e-12)
        inside = (newton >= low) & (newton <= high)
        theta = torch.where(inside, newton, 0.5 * (low + high))
    return theta


def fisheye_directions(xy_distorted: Tensor, coefficients: Tensor, max_angle: Tensor | None = None) -> Tensor:
    """Camera-space unit ray directions of a fisheye's normalised image coordinates.

    Args:
        xy_distorted: (R, 2) ``((u - cx) / fx, (v - cy) / fy)`` of pixels ``(u, v)``.
        coefficients: (R, 4) ``k1, k2, k3, k4``.
        max_angle: (R,) :func:`fisheye_max_angle` of the coefficients, or None: computed here.
    Returns:
        (R, 3) unit directions, OpenCV axes; ``z < 0`` beyond 90 degrees from the axis.
    """
    radius = xy_distorted.norm(dim=-1)
    theta = fisheye_angle(radius, coefficients, max_angle)
    # sin(theta) / radius -> 1 at the centre, where theta / radius -> 1
    scale = torch.where(radius > 1e-12, torch.sin(theta) / radius.clamp_min(1e-12), torch.ones_like(radius))
    return torch.cat([xy_distorted * scale[:, None], torch.cos(theta)[:, None]], -1)


def fisheye_project(local: Tensor, coefficients: Tensor) -> Tensor:
    """Normalised (distorted) image coordinates of camera-space points through a fisheye.

    Args:
        local: (R, 3) points or directions in camera space, OpenCV axes (any distance).
        coefficients: (R, 4) ``k1, k2, k3, k4``.
    Returns:
        (R, 2) ``theta_d * (x, y) / sqrt(x^2 + y^2)``; the centre for points on the axis.
    """
    x, y, z = local.unbind(-1)
    radius = torch.sqrt(x * x + y * y)
    theta_d = fisheye_radius(torch.atan2(radius, z), coefficients)
    scale = torch.where(radius > 0, theta_d / radius.clamp_min(1e-300), torch.zeros_like(radius))
    return local[:, :2] * scale[:, None]


def camera_directions(cameras: Cameras, camera_ids: Tensor, pixels: Tensor) -> Tensor:
    """(R, 3) float64 camera-space ray directions of pixel positions (R, 2), in each camera's lens:
    ``(x, y, 1)`` for pinholes (undistorted), unit vectors for fisheyes."""
    intr = cameras.intrinsics[camera_ids].double()
    xy = torch.stack([(pixels[:, 0].double() - intr[:, 2]) / intr[:, 0],
                      (pixels[:, 1].double() - intr[:, 3]) / intr[:, 1]], -1)
    dist = cameras.distortion[camera_ids].double()
    fisheye = cameras.fisheye[camera_ids]
    dirs = torch.cat([xy, torch.ones_like(xy[:, :1])], -1)
    radial = ~fisheye & (dist != 0).any(-1)
    if bool(radial.any()):
        dirs[radial, :2] = undistort(xy[radial], dist[radial])
    if bool(fisheye.any()):
        reach = fisheye_max_angle(cameras.distortion[:, :4].double())      # per camera, not per ray
        dirs[fisheye] = fisheye_directions(xy[fisheye], dist[fisheye, :4], reach[camera_ids[fisheye]])
    return dirs


def generate_rays(cameras: Cameras, camera_ids: Tensor, pixels: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through pixel positions.

    Args:
        cameras: the scene's cameras.
        camera_ids: (R,) int64 camera index per ray.
        pixels: (R, 2) float pixel positions (x, y); pixel centres are at +0.5.
    Returns:
        origins (R, 3) and unit directions (R, 3), float32, scene coordinates.
    """
    dirs_cam = camera_directions(cameras, camera_ids, pixels).float()
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
    """Project scene points to pixels in each camera's lens: (R, 3) -> (R, 2) float64 pixel
    positions. Pinholes divide by depth (points behind the camera land mirrored: check the depth);
    fisheyes map the angle from the axis, so points behind them land outside the 180-degree circle."""
    c2w = cameras.c2w[camera_ids].double()
    rot, trans = c2w[:, :3, :3], c2w[:, :3, 3]
    local = torch.einsum("rji,rj->ri", rot, points.double() - trans)
    dist = cameras.distortion[camera_ids].double()
    fisheye = cameras.fisheye[camera_ids]
    xy = distort(local[:, :2] / local[:, 2:3], dist)
    if bool(fisheye.any()):
        xy[fisheye] = fisheye_project(local[fisheye], dist[fisheye, :4])
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

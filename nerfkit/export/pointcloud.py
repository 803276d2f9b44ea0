"""Coloured point clouds of any method, in world coordinates.

NeRF methods: one point per opaque training pixel at ``origin + direction * depth`` on its rendered
depth, coloured by the rendered colour (:mod:`nerfkit.export.views`). Methods with Gaussians
(:class:`~nerfkit.methods.capabilities.HasGaussians`): the centres of the Gaussians at least
:data:`MIN_POINT_OPACITY` opaque, coloured by their view-independent (degree 0 SH) colour. Subsampled
to at most ``max_points``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.data.scene import Scene
from nerfkit.export import views as export_views
from nerfkit.export.mesh_io import write_mesh
from nerfkit.export.views import to_world, view_points
from nerfkit.methods.base import Method
from nerfkit.methods.capabilities import HasGaussians
from nerfkit.render.spherical_harmonics import SH_C0

MIN_POINT_OPACITY = 0.1
"""Gaussians less opaque than this are left out of a point cloud."""


@dataclass
class PointCloud:
    """Points in the scene's ORIGINAL world coordinates.

    Attributes:
        points: (P, 3) float64; colors: (P, 3) uint8; views: the number of views rendered (0 for
            Gaussians).
    """

    points: np.ndarray
    colors: np.ndarray
    views: int

    def write(self, path: Path) -> list[Path]:
        """Write as a .ply of vertices with colours and no faces."""
        return write_mesh(path, self.points, np.zeros((0, 3), np.int64), self.colors)


def export_pointcloud(method: Method, scene: Scene, max_points: int = 1_000_000, seed: int = 0) -> PointCloud:
    """A coloured point cloud of ``method`` on ``scene``, in world coordinates.

    Args:
        max_points: at most this many points are kept (a uniform random subset, seeded by ``seed``).
    Raises:
        NerfkitError: a bad ``max_points``, or no point at all.
    """
    if max_points < 1:
        raise NerfkitError(f"--max-points must be at least 1, got {max_points}")
    if isinstance(method, HasGaussians):
        xyz, rgb = _gaussian_points(method.gaussians)
        views = 0
    else:
        indices = scene.split("train")
        points, colors = [], []
        for index in indices:
            view_xyz, view_rgb = view_points(scene, index, export_views.render_view(method, scene.cameras[index]))
            points.append(view_xyz)
            colors.append(view_rgb)
        xyz, rgb = torch.cat(points), torch.cat(colors)
        views = len(indices)
    if len(xyz) == 0:
        raise NerfkitError("the run rendered no opaque pixel in its training views, so there are no "
                           "points to write: train longer")
    if len(xyz) > max_points:
        keep = torch.randperm(len(xyz), generator=torch.Generator().manual_seed(seed))[:max_points]
        keep = keep.sort().values
        xyz, rgb = xyz[keep], rgb[keep]
    rgb8 = (rgb * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    return PointCloud(to_world(xyz.numpy(), scene.world_to_scene), rgb8, views)


def _gaussian_points(gaussians) -> tuple[Tensor, Tensor]:
    """Centres (P, 3) float64 scene coordinates and degree-0 colours (P, 3) in [0, 1] of the
    Gaussians with opacity >= MIN_POINT_OPACITY."""
    with torch.no_grad():
        opaque = torch.sigmoid(gaussians["opacities"].detach().float().cpu()) >= MIN_POINT_OPACITY
        means = gaussians["means"].detach().cpu().double()[opaque]
        dc = gaussians["sh0"].detach().float().cpu()[opaque, 0]
    return means, (dc * SH_C0 + 0.5).clamp(0.0, 1.0)

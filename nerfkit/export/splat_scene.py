"""A splat file from any tool, placed for rendering: in a scene's coordinates when its cameras are
given, else in a frame fitted to the Gaussians.

Coordinates: a 3DGS .ply from Inria 3DGS, gsplat or nerfstudio trained on a scene is in that
scene's world coordinates (COLMAP's, or the transforms.json poses'; nerfkit's own exports are too),
so with ``scene`` the Gaussians are moved by its ``world_to_scene`` exactly as a nerfkit run's, and
its cameras see them where the photos were taken. Without a scene the frame is fitted: the centre
is the median of the opaque Gaussians' means, the scale puts 90 % of them within distance 1, and up
is -y (the .ply convention of those tools: x right, y down, z forward, as OpenCV/COLMAP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.data.scene import Scene
from nerfkit.export.splat_files import read_splat_file
from nerfkit.export.transform import transform_gaussians
from nerfkit.methods.loaded_splat import LoadedGaussians

FIT_QUANTILE = 0.9
VIEW_DISTANCE = 2.6          # initial camera distance from the centre, in fitted units
VIEW_FOV_DEGREES = 50.0


@dataclass(frozen=True)
class SplatFrame:
    """How Gaussians without a scene are shown.

    Attributes:
        world_to_scene: (4, 4) float64 similarity from the file's coordinates to the frame's.
        aabb: (2, 3) float32 box (min, max) of the region of interest in the frame.
        camera_to_world: (4, 4) float64 initial camera (OpenCV axes) in the frame.
        fov_y: its vertical field of view in radians.
        up: (3,) float64 up direction in the frame.
    """

    world_to_scene: Tensor
    aabb: Tensor
    camera_to_world: Tensor
    fov_y: float
    up: Tensor


def fitted_frame(gaussians: dict[str, Tensor]) -> SplatFrame:
    """The frame of Gaussians without a scene (see the module docstring)."""
    means = gaussians["means"].double()
    if means.shape[0] == 0:
        raise NerfkitError("the splat file holds no Gaussians: nothing to show")
    opaque = means[torch.sigmoid(gaussians["opacities"].double()) >= 0.1]
    points = opaque if opaque.shape[0] >= 16 else means
    centre = points.median(dim=0).values
    radius = float(torch.quantile((points - centre).norm(dim=-1), FIT_QUANTILE))
    scale = 1.0 / radius if math.isfinite(radius) and radius > 1e-12 else 1.0
    world_to_scene = torch.eye(4, dtype=torch.float64)
    world_to_scene[:3, :3] *= scale
    world_to_scene[:3, 3] = -scale * centre
    camera = torch.eye(4, dtype=torch.float64)                 # looking down +z, y down: up is -y
    camera[2, 3] = -VIEW_DISTANCE
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    return SplatFrame(world_to_scene, aabb, camera, math.radians(VIEW_FOV_DEGREES),
                      torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))


def load_splat_scene(path: Path, scene: Scene | None = None,
                     device: torch.device | str = "cpu") -> tuple[LoadedGaussians, Tensor, SplatFrame | None]:
    """Read a splat file (:func:`~nerfkit.export.splat_files.read_splat_file`) and place it.

    Returns:
        ``(gaussians to render, world_to_scene (4, 4) float64, frame)``: with ``scene`` its
        ``world_to_scene`` and no frame; without, the fitted :class:`SplatFrame`.
    """
    gaussians = read_splat_file(path)
    frame = None
    if scene is not None:
        world_to_scene = scene.world_to_scene.double()
    else:
        frame = fitted_frame(gaussians)
        world_to_scene = frame.world_to_scene
    placed = transform_gaussians(gaussians, world_to_scene)
    return LoadedGaussians(placed, source=str(path)).to(device).eval(), world_to_scene, frame

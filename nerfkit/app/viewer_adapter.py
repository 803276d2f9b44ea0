"""A trained method as the viewer's render function, and a scene's cameras as the viewer's
training views: the only place where the viewer's plain-numpy world meets the Method protocol.

Coordinates: the viewer works in the method's (normalised) scene coordinates, cameras with OpenCV
axes, exactly as ``Scene.cameras``; only camera-path keyframes go back to world coordinates.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from nerfkit.data.cameras import Cameras
from nerfkit.data.sampler import image_on_background
from nerfkit.data.scene import Scene
from nerfkit.methods.base import Method, inference
from nerfkit.viewer.camera_math import z_depth_from_ray_distance
from nerfkit.viewer.types import RenderResult, TrainingView, ViewRequest

THUMBNAIL_HEIGHT = 64      # pixels of the frustum thumbnails


def request_camera(request: ViewRequest) -> Cameras:
    """A :class:`ViewRequest` as one pinhole camera (square pixels, centred principal point)."""
    focal = request.focal
    return Cameras(
        c2w=torch.as_tensor(request.camera_to_world, dtype=torch.float32)[None],
        intrinsics=torch.tensor([[focal, focal, request.width / 2, request.height / 2]], dtype=torch.float32),
        sizes=torch.tensor([[request.width, request.height]], dtype=torch.int64),
        distortion=torch.zeros(1, 5))


class MethodRenderer:
    """``request -> RenderResult`` for a method: eval mode and no gradients for the call, the
    training state restored afterwards (it runs between training steps).

    The crop box hides pixels whose rendered surface point (the expected ray distance) lies
    outside the box: exact for opaque surfaces, approximate for semi-transparent ones.
    """

    def __init__(self, method: Method) -> None:
        self.method = method

    def __call__(self, request: ViewRequest) -> RenderResult:
        background = torch.tensor(request.background, dtype=torch.float32)
        with inference(self.method):
            out = self.method.render(request_camera(request), background)
        rgb = out["rgb"].float().clamp(0, 1).cpu().numpy()
        alpha = out["alpha"].float().clamp(0, 1).cpu().numpy()
        distance = (out["depth"].float() / out["alpha"].float().clamp(min=1e-6)).cpu().numpy()
        empty = alpha < 0.5
        if request.crop is not None:
            outside = ~_inside_box(request, distance)
            rgb = np.where(outside[..., None], np.asarray(request.background, dtype=np.float32), rgb)
            alpha = np.where(outside, 0.0, alpha).astype(np.float32)
            empty |= outside
        depth = z_depth_from_ray_distance(distance, request.focal)
        depth[empty] = np.inf
        return RenderResult(rgb=rgb, depth=depth, alpha=alpha, normals=normals_from_depth(depth, request.focal))


def _inside_box(request: ViewRequest, distance: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixel's surface point (at ``distance`` along its ray) is in the crop box."""
    height, width = distance.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(xs + 0.5 - width / 2) / request.focal, (ys + 0.5 - height / 2) / request.focal,
                     np.ones_like(xs)], -1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    c2w = np.asarray(request.camera_to_world, dtype=np.float64)
    points = (rays * distance[..., None]) @ c2w[:3, :3].T + c2w[:3, 3]
    low, high = np.asarray(request.crop[0]), np.asarray(request.crop[1])
    return np.all((points >= low) & (points <= high), axis=-1)


def normals_from_depth(depth: np.ndarray, focal: float) -> np.ndarray:
    """(H, W) z-depth (``inf`` = empty) -> (H, W, 3) float32 unit normals in camera axes (OpenCV),
    facing the camera; zero where the depth or a neighbour is empty.

    The surface points are back-projected and the normal is the cross product of their
    horizontal and vertical central differences.
    """
    height, width = depth.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    z = np.where(np.isfinite(depth), depth, np.nan).astype(np.float64)
    points = np.stack([(xs + 0.5 - width / 2) / focal * z, (ys + 0.5 - height / 2) / focal * z, z], -1)
    dx = np.zeros_like(points)
    dy = np.zeros_like(points)
    dx[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dy[1:-1] = points[2:] - points[:-2]
    normals = np.cross(dy, dx)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    normals = normals / np.where(norm > 0, norm, 1.0)
    facing = np.sum(normals * points, axis=-1, keepdims=True) > 0
    normals = np.where(facing, -normals, normals)
    return np.nan_to_num(normals, nan=0.0).astype(np.float32)


def training_views(scene: Scene, split: str = "train") -> list[TrainingView]:
    """The scene's cameras of ``split`` with small thumbnails (RGBA composited on white)."""
    views = []
    for index in scene.split(split):
        camera = scene.cameras[index]
        width, height = (int(v) for v in camera.sizes[0])
        fy = float(camera.intrinsics[0, 1])
        image = (image_on_background(scene, index, torch.ones(3)) * 255.0).round().to(torch.uint8).numpy()
        thumb_height = min(THUMBNAIL_HEIGHT, height)
        thumb_width = max(1, round(width * thumb_height / height))
        thumbnail = np.asarray(Image.fromarray(image).resize((thumb_width, thumb_height), Image.BILINEAR))
        views.append(TrainingView(camera.c2w[0].double().numpy(), 2.0 * math.atan(0.5 * height / fy),
                                  width / height, thumbnail, scene.image_paths[index].name
                                  if scene.image_paths else str(index)))
    return views


def scene_up(scene: Scene) -> np.ndarray:
    """(3,) unit 'up' of the training cameras in scene coordinates: their mean -y axis."""
    c2w = scene.cameras.c2w[scene.split("train")].double().numpy()
    up = -c2w[:, :3, 1].mean(0)
    norm = np.linalg.norm(up)
    return up / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])

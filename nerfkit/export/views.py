"""A method's views rendered for export: colour un-composited from white, a trusted depth, and the
scene points under each opaque pixel.

Colours: views are rendered on white and un-composited, ``c = (rgb - (1 - alpha)) / alpha``, so
pixels at the silhouette (``0.5 < alpha < 1``) do not carry the background into vertex colours.
Depth: the median depth where the method renders one
(:class:`~nerfkit.methods.capabilities.RendersMedianDepth`), else the expected distance
``depth / alpha``; trusted only where ``alpha > MIN_ALPHA``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nerfkit.data.cameras import Cameras, generate_rays, image_pixels
from nerfkit.data.scene import Scene
from nerfkit.data.similarity import invert_similarity, transform_points
from nerfkit.methods.base import Method
from nerfkit.methods.capabilities import renders_median_depth

MIN_ALPHA = 0.5
"""Pixels less opaque than this carry no trusted depth."""


@dataclass
class View:
    """One rendered view, on the CPU: rgb un-composited from white, depth along the ray."""

    rgb: Tensor     # (H, W, 3) in [0, 1]
    depth: Tensor   # (H, W) distance along the ray; 0 where alpha <= MIN_ALPHA
    alpha: Tensor   # (H, W)


@torch.no_grad()
def render_view(method: Method, camera: Cameras) -> View:
    """Render camera 0 of ``camera`` on white (see the module docstring for colour and depth)."""
    out = method.render(camera, torch.ones(3))
    alpha = out["alpha"].detach().float().cpu()
    rgb = out["rgb"].detach().float().cpu()
    safe = alpha.clamp(min=1e-6)
    opaque = alpha > MIN_ALPHA
    if renders_median_depth(method):        # NeRFs: robust to haze and floaters
        depth = torch.where(opaque, out["median_depth"].detach().float().cpu(), torch.zeros_like(alpha))
    else:
        depth = torch.where(opaque, out["depth"].detach().float().cpu() / safe, torch.zeros_like(alpha))
    rgb = ((rgb - (1.0 - alpha[..., None])) / safe[..., None]).clamp(0.0, 1.0)
    return View(rgb, depth, alpha)


def view_points(scene: Scene, index: int, view: View, camera: Cameras | None = None) -> tuple[Tensor, Tensor]:
    """Scene-coordinate points (P, 3) float64 and their colours (P, 3) of a view's opaque pixels.

    ``camera``: the one camera the view was rendered with (e.g. a pinhole twin of a fisheye), or
    None: the scene's camera ``index``, in its own lens."""
    height, width = view.depth.shape
    mask = (view.alpha.reshape(-1) > MIN_ALPHA) & (view.depth.reshape(-1) > 0)
    pixels = image_pixels(width, height)[mask]
    cameras = scene.cameras if camera is None else camera
    camera_ids = torch.full((len(pixels),), index if camera is None else 0, dtype=torch.long)
    origins, directions = generate_rays(cameras, camera_ids, pixels)
    points = origins.double() + directions.double() * view.depth.reshape(-1)[mask, None].double()
    return points, view.rgb.reshape(-1, 3)[mask]


def to_world(points: np.ndarray, world_to_scene: Tensor) -> np.ndarray:
    """(N, 3) scene coordinates -> (N, 3) float64 original world coordinates."""
    scene_to_world = invert_similarity(world_to_scene.double().cpu())
    return transform_points(scene_to_world, torch.as_tensor(np.asarray(points, np.float64))).numpy()

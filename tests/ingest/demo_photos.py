"""A test helper: "photos" of the demo object (textured, on white) from known cameras along a
rising spiral, as a phone walk-around would take them, for the pycolmap tests."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch


def look_at(eye: list[float]) -> torch.Tensor:
    """(4, 4) OpenCV camera-to-world at ``eye`` looking at the origin, z up."""
    eye_t = torch.tensor(eye, dtype=torch.float64)
    forward = -eye_t / eye_t.norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    right = right / right.norm()
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.stack([right, torch.linalg.cross(forward, right), forward], 1)
    c2w[:3, 3] = eye_t
    return c2w


def write_demo_photos(folder: Path, count: int = 60, size: int = 320, turn_degrees: float = 450.0,
                      radius: float = 2.6) -> tuple[dict[str, torch.Tensor], float]:
    """``folder/view_NNN.jpg`` (JPEG, quality 95): ``count`` pinhole photos, ``turn_degrees`` of
    azimuth in all, rising from 20 to 50 degrees elevation, at ``radius`` from the object.

    Returns:
        Each photo's stem -> its true (4, 4) OpenCV camera-to-world, and the focal length in pixels
        (principal point at the centre, the demo's 40-degree field of view).
    """
    from nerfkit.data.demo import CAMERA_ANGLE_X, render_demo_view

    folder.mkdir(parents=True, exist_ok=True)
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    truth = {}
    for i in range(count):
        azimuth = math.radians(i * turn_degrees / count)
        elevation = math.radians(20 + 30 * i / (count - 1))
        c2w = look_at([radius * math.cos(elevation) * math.cos(azimuth),
                       radius * math.cos(elevation) * math.sin(azimuth), radius * math.sin(elevation)])
        view = render_demo_view(c2w, focal, focal, size / 2, size / 2, size, size)
        rgb = view["rgb"] * view["alpha"][..., None] + (1 - view["alpha"][..., None])
        iio.imwrite(folder / f"view_{i:03d}.jpg", (rgb.numpy() * 255 + 0.5).astype(np.uint8), quality=95)
        truth[f"view_{i:03d}"] = c2w
    return truth, focal

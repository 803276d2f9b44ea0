"""A test helper: the demo object photographed through a known OpenCV fisheye from close up, as a
transforms.json capture, and its pinhole twin (same poses and focal length, ``PINHOLE`` camera).

The cameras stand at :data:`CLOSER` times the demo's distance and each looks :data:`ASIDE` off the
object, so the object lies ~10 to ~40 degrees from the optical axis, where a fisheye's radius
(``f theta (1 + ...)``) and a pinhole's (``f tan theta``) differ by pixels. The photos are ray
traced per (supersampled) pixel; each ray's angle comes from inverting the fisheye polynomial by
bisection here, independent of nerfkit's Newton inversion.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import torch

from nerfkit.data.cameras import opengl_to_opencv
from nerfkit.data.demo import demo_camera_poses, render_demo_rays

FISHEYE = (0.05, -0.01, 0.002, -0.0005)       # k1, k2, k3, k4
CLOSER = 0.6                                  # camera distance, as a fraction of the demo's
ASIDE = math.radians(25.0)                    # how far each camera looks off the object


def fisheye_ray_angle(radius: torch.Tensor, k: tuple[float, ...], steps: int = 60) -> torch.Tensor:
    """theta with theta (1 + k1 t^2 + k2 t^4 + k3 t^6 + k4 t^8) = radius, by bisection on [0, pi/2]."""
    low, high = torch.zeros_like(radius), torch.full_like(radius, math.pi / 2)
    for _ in range(steps):
        mid = 0.5 * (low + high)
        t2 = mid * mid
        above = mid * (1 + k[0] * t2 + k[1] * t2 ** 2 + k[2] * t2 ** 3 + k[3] * t2 ** 4) > radius
        low, high = torch.where(above, low, mid), torch.where(above, mid, high)
    return 0.5 * (low + high)


def render_view(c2w: torch.Tensor, focal: float, size: int, fisheye: tuple[float, ...] | None,
                supersample: int = 2) -> torch.Tensor:
    """(size, size, 4) float RGBA of the demo object from OpenCV ``c2w`` through a fisheye
    (``k1..k4``) or, for None, a pinhole; principal point at the centre."""
    s = supersample
    coords = (torch.arange(size * s, dtype=torch.float64) + 0.5) / s
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    xy = torch.stack([(xx - size / 2) / focal, (yy - size / 2) / focal], -1).reshape(-1, 2)
    if fisheye is None:
        local = torch.cat([xy, torch.ones_like(xy[:, :1])], -1)
    else:
        radius = xy.norm(dim=-1)
        theta = fisheye_ray_angle(radius, fisheye)
        local = torch.cat([xy * (torch.sin(theta) / radius.clamp_min(1e-12))[:, None], torch.cos(theta)[:, None]], -1)
    view = render_demo_rays(c2w, local, size, size, s)
    return torch.cat([view["rgb"], view["alpha"][..., None]], -1)


def _look_aside(c2w: torch.Tensor) -> torch.Tensor:
    """OpenGL ``c2w`` turned in place by :data:`ASIDE` about the world's up axis: every camera turns
    the same way, so the optical axes still meet, in least squares, near the object (the centre
    that normalisation finds), and the object appears left of the middle."""
    c, s = math.cos(ASIDE), math.sin(ASIDE)
    turned = c2w.clone()
    turned[:3, :3] = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64) @ c2w[:3, :3]
    return turned


def write_fisheye_demo(root: Path, fisheye: tuple[float, ...] | None = FISHEYE, size: int = 48,
                       focal: float = 28.0, n_train: int = 12, n_test: int = 3) -> Path:
    """``root/transforms.json`` (``OPENCV_FISHEYE`` with ``k1..k4``, or ``PINHOLE`` for None; OpenGL
    poses; train/test file lists) and ``root/images/{train,test}_NN.png`` (RGBA)."""
    (root / "images").mkdir(parents=True)
    frames, names = [], {"train": [], "test": []}
    for split, poses in demo_camera_poses(n_train, n_test, 0, 0).items():
        if split == "val":
            continue
        for i, c2w in enumerate(poses):
            c2w = _look_aside(c2w)
            c2w[:3, 3] *= CLOSER
            rgba = render_view(opengl_to_opencv(c2w), focal, size, fisheye)
            name = f"images/{split}_{i:02d}.png"
            iio.imwrite(root / name, (rgba * 255.0).round().to(torch.uint8).numpy())
            frames.append({"file_path": name, "transform_matrix": c2w.tolist()})
            names[split].append(name)
    lens = ({"camera_model": "PINHOLE"} if fisheye is None else
            {"camera_model": "OPENCV_FISHEYE", **dict(zip(("k1", "k2", "k3", "k4"), fisheye))})
    meta = {**lens, "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size, "h": size,
            "aabb_scale": 1, "frames": frames, "train_filenames": names["train"], "test_filenames": names["test"]}
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root

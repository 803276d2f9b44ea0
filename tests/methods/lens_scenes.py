"""A test helper: the demo object photographed through a known OpenCV lens, as a transforms.json
capture (the same poses with a zero distortion give its pinhole twin)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import imageio.v3 as iio
import torch

from nerfkit.data.cameras import opengl_to_opencv
from nerfkit.data.demo import CAMERA_ANGLE_X, _write_mesh, demo_camera_poses, render_demo_view
from nerfkit.render.pose_refine import so3_exp

# k1, k2, p1, p2, k3: a strong barrel (still one-to-one out to the image corners), so that at a few
# dozen pixels the corners move by several pixels
LENS = (-0.6, 0.15, 0.01, -0.01, 0.0)


def write_lens_demo(root: Path, distortion=LENS, size: int = 48, n_train: int = 12, n_test: int = 3,
                    mesh_resolution: int = 48, turn_deg: float = 0.0) -> Path:
    """``root/transforms.json`` (OPENCV camera ``k1 k2 p1 p2``, OpenGL poses, train/test file lists),
    ``root/images/{train,test}_NN.png`` (RGBA, rendered through the lens) and ``root/gt_mesh.ply``.

    ``turn_deg``: each camera is turned by this angle off the object's centre, in a
    direction that goes round from view to view, so the object sits in a different part of the
    frame in every photo (where the lens bends it differently).
    """
    images = root / "images"
    images.mkdir(parents=True)
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    lens = torch.tensor(distortion, dtype=torch.float64)
    frames, names = [], {"train": [], "test": []}
    for split, poses in demo_camera_poses(n_train, n_test, 0, 0).items():
        if split == "val":
            continue
        for i, c2w in enumerate(poses):
            direction = 2.39996 * (i + 0.5)             # the golden angle: round the frame, view to view
            axis = torch.tensor([math.cos(direction), math.sin(direction), 0.0], dtype=torch.float64)
            c2w = c2w.clone()
            c2w[:3, :3] = c2w[:3, :3] @ so3_exp(axis * math.radians(turn_deg))   # about an image-plane axis
            view = render_demo_view(opengl_to_opencv(c2w), focal, focal, size / 2, size / 2, size, size,
                                    supersample=2, distortion=lens if bool(lens.any()) else None)
            rgba = torch.cat([view["rgb"], view["alpha"][..., None]], -1)
            name = f"images/{split}_{i:02d}.png"
            iio.imwrite(root / name, (rgba * 255.0).round().to(torch.uint8).numpy())
            frames.append({"file_path": name, "transform_matrix": c2w.tolist()})
            names[split].append(name)
    k1, k2, p1, p2, k3 = distortion
    meta = {"camera_model": "OPENCV", "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size,
            "h": size, "k1": k1, "k2": k2, "p1": p1, "p2": p2, "k3": k3, "aabb_scale": 1, "frames": frames,
            "train_filenames": names["train"], "test_filenames": names["test"]}
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    _write_mesh(root / "gt_mesh.ply", mesh_resolution)
    return root


def without_lens(scene: Path, root: Path) -> Path:
    """A copy of ``scene`` whose ``transforms.json`` drops the lens (a PINHOLE camera, the photos as
    they are): what a pipeline that ignores distortion trains on."""
    shutil.copytree(scene, root)
    meta = json.loads((root / "transforms.json").read_text())
    meta["camera_model"] = "PINHOLE"
    for key in ("k1", "k2", "p1", "p2", "k3"):
        meta.pop(key, None)
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root

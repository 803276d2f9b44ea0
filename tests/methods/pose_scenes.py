"""A test helper: the demo object photographed from known poses, written as a NeRF-synthetic folder
whose TRAINING poses are perturbed by a known, seeded amount (the held-out poses are exact), so a run
that refines poses can be compared with the truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import torch
from torch import Tensor

from nerfkit.data.cameras import opengl_to_opencv
from nerfkit.data.demo import _write_mesh, demo_camera_poses, render_demo_view
from nerfkit.render.pose_refine import so3_exp


def perturb_poses(c2w: Tensor, rotation_deg: float, translation: float, seed: int, along_axis: bool) -> Tensor:
    """(N, 4, 4) poses each turned by exactly ``rotation_deg`` about a random axis through its centre
    and moved by exactly ``translation`` (world units): forward or back along its optical axis
    (``along_axis``), else in a random direction (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    out = c2w.clone()
    for i in range(c2w.shape[0]):
        axis = torch.nn.functional.normalize(torch.randn(3, generator=generator, dtype=torch.float64), dim=0)
        step = torch.nn.functional.normalize(torch.randn(3, generator=generator, dtype=torch.float64), dim=0)
        if along_axis:
            step = c2w[i, :3, 2] * (1.0 if float(step[0]) >= 0 else -1.0)      # OpenGL's z: backwards
        out[i, :3, :3] = so3_exp(axis * math.radians(rotation_deg)) @ c2w[i, :3, :3]
        out[i, :3, 3] = c2w[i, :3, 3] + translation * step
    return out


def write_perturbed_demo(root: Path, rotation_deg: float, translation: float, size: int = 32, n_train: int = 12,
                         n_test: int = 3, radius: float = 2.6, fov_deg: float = 50.0, seed: int = 0,
                         along_axis: bool = True) -> Tensor:
    """``root/transforms_{train,test}.json`` + ``root/{train,test}/r_N.png`` (RGBA, rendered from the
    true poses) + ``gt_mesh.ply``; the train poses in the json are :func:`perturb_poses` of the true ones.

    The cameras sit at ``radius`` world units from the object (the demo's 4 would leave a 32 px view
    too little parallax to tell a camera's turn from its shift), with a ``fov_deg`` horizontal view.

    Returns:
        (n_train, 4, 4) float64 the TRUE training camera-to-world poses, OpenCV axes, world units.
    """
    focal = 0.5 * size / math.tan(0.5 * math.radians(fov_deg))
    truth = {}
    for split, poses in demo_camera_poses(n_train, n_test, 0, seed).items():
        if split == "val":
            continue
        poses = poses.clone()
        poses[:, :3, 3] *= radius / poses[:, :3, 3].norm(dim=-1, keepdim=True)
        truth[split] = poses
        written = perturb_poses(poses, rotation_deg, translation, seed + 1, along_axis) if split == "train" else poses
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i, c2w in enumerate(poses):
            view = render_demo_view(opengl_to_opencv(c2w), focal, focal, size / 2, size / 2, size, size, supersample=2)
            rgba = torch.cat([view["rgb"], view["alpha"][..., None]], -1)
            iio.imwrite(root / split / f"r_{i}.png", (rgba * 255.0).round().to(torch.uint8).numpy())
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": written[i].tolist()})
        meta = {"camera_angle_x": math.radians(fov_deg), "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))
    _write_mesh(root / "gt_mesh.ply", 32)
    return opengl_to_opencv(truth["train"])

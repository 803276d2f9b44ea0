"""Rendering a split and scoring it: the shared core of training-time eval, ``nerfkit eval`` and
``nerfkit render``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from nerfkit.data.sampler import background_color, image_on_background
from nerfkit.data.scene import Scene
from nerfkit.methods.base import Method, inference
from nerfkit.metrics import psnr, ssim
from nerfkit.visualize import colorize_depth, save_image, to_uint8


def evaluate_split(method: Method, scene: Scene, split: str = "test", background: str = "white",
                   limit: int = 0, out_dir: Path | None = None) -> dict:
    """Render every image of ``split`` and score it against the ground truth.

    Args:
        limit: score only the first ``limit`` images (0 = all).
        out_dir: when given, write ``<name>.png`` (render), ``<name>_depth.png`` (colour-mapped
            depth) and ``<name>_gt.png`` for each image.
    Returns:
        ``{"psnr": mean dB, "ssim": mean, "images": [{"name", "psnr", "ssim"}], "seconds_per_image"}``.
    """
    indices = scene.split(split)
    if limit > 0:
        indices = indices[:limit]
    bg = background_color(background, 1)[0]
    per_image, start = [], time.perf_counter()
    with inference(method):
        for index in indices:
            out = method.render(scene.cameras[index], bg)
            pred = out["rgb"].clamp(0.0, 1.0)
            target = image_on_background(scene, index, bg)
            name = Path(scene.image_paths[index]).stem if scene.image_paths else f"{index:05d}"
            per_image.append({"name": name, "index": index, "psnr": psnr(pred, target),
                              "ssim": ssim(pred, target)})
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                save_image(out_dir / f"{name}.png", to_uint8(pred))
                save_image(out_dir / f"{name}_depth.png", colorize_depth(out["depth"], out["alpha"]))
                save_image(out_dir / f"{name}_gt.png", to_uint8(target))
    elapsed = time.perf_counter() - start
    return {
        "split": split,
        "background": background,
        "psnr": float(np.mean([p["psnr"] for p in per_image])) if per_image else float("nan"),
        "ssim": float(np.mean([p["ssim"] for p in per_image])) if per_image else float("nan"),
        "images": per_image,
        "seconds_per_image": elapsed / max(len(per_image), 1),
    }

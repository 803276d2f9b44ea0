"""Rendering a split and scoring it: the shared core of training-time eval, ``nerfkit eval`` and
``nerfkit render``.

Each image is rendered from the scene's camera as it is: held-out (test, val) cameras keep their
given poses also in a run with ``pose_refine=on``, whose refined poses are the training cameras'
only (:func:`nerfkit.runs.session.refine_training_cameras`).

Multiscale evaluation (as Mip-NeRF's multiscale Blender benchmark): at ``scale = f`` every image is
rendered with :meth:`Cameras.downscaled` (sizes ``W // f, H // f``, intrinsics divided by ``f``, so
each pixel's footprint is ``f`` times wider) and scored against the ground truth composited on the
background at full size, cropped to multiples of ``f`` and box-averaged over ``f x f`` blocks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.data.cameras import Cameras
from nerfkit.data.lens import covering_pinhole, warp_to_distorted
from nerfkit.data.sampler import background_color, image_on_background
from nerfkit.data.scene import Scene
from nerfkit.image.lpips import LpipsMetric
from nerfkit.image.metrics import SSIM_WINDOW, psnr, ssim
from nerfkit.image.visualize import colorize_depth, save_image, side_by_side, to_uint8
from nerfkit.methods.base import Method, inference
from nerfkit.methods.capabilities import renders_pinhole_only


def area_downscale(image: Tensor, factor: int) -> Tensor:
    """Average ``factor x factor`` blocks of an image (area downsampling).

    Args:
        image: (H, W, C) float image (already composited on its background for RGBA scenes).
        factor: positive integer; the right and bottom are cropped to multiples of it.
    Returns:
        (H // factor, W // factor, C) image, same dtype; ``image`` itself for ``factor == 1``.
    """
    if factor == 1:
        return image
    height, width = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    cropped = image[:height, :width].permute(2, 0, 1).unsqueeze(0)     # (1, C, H', W')
    return F.avg_pool2d(cropped, factor).squeeze(0).permute(1, 2, 0).contiguous()


def ground_truth(scene: Scene, index: int, background: Tensor, scale: int = 1) -> Tensor:
    """(H // scale, W // scale, 3) float target in [0, 1] for image ``index`` at ``scale``.

    Composites on ``background`` (3,) at full size first, then area-downsamples, so a
    half-transparent pixel counts as its composited colour, not as its straight RGB.
    """
    return area_downscale(image_on_background(scene, index, background), scale)


def ground_truth_keep(scene: Scene, index: int, scale: int = 1) -> Tensor | None:
    """(H // scale, W // scale) bool: the pixels of image ``index`` that count in its scores (the
    scene's ignore mask; at ``scale`` a pixel counts when its whole block does), or None: all do."""
    if scene.masks is None:
        return None
    keep = torch.from_numpy(scene.masks[index]).float()[..., None]
    return area_downscale(keep, scale)[..., 0] >= 1.0 - 1e-6


def render_in_lens(method: Method, camera: Cameras, background: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
    """``method.render(camera)``, in the camera's own lens model: a method that renders pinholes only
    (:func:`~nerfkit.methods.capabilities.renders_pinhole_only`) renders the covering pinhole camera,
    warped into the lens (``rgb``, ``depth``, ``alpha``). Returns the render and the (H, W) bool of
    pixels it covers (None: all)."""
    if not (renders_pinhole_only(method) and camera.has_distortion):
        return method.render(camera, background), None
    pinhole = covering_pinhole(camera.to("cpu")).to(camera.c2w.device)
    out = method.render(pinhole, background)
    stacked = torch.cat([out["rgb"], out["depth"][..., None], out["alpha"][..., None]], -1)
    warped, covered = warp_to_distorted(stacked, pinhole.to("cpu"), camera.to("cpu"))
    return {"rgb": warped[..., :3], "depth": warped[..., 3], "alpha": warped[..., 4]}, covered


def evaluate_split(method: Method, scene: Scene, split: str = "test", background: str = "white",
                   limit: int = 0, out_dir: Path | None = None, scale: int = 1,
                   lpips: LpipsMetric | None = None,
                   on_render: Callable[[str, dict[str, np.ndarray]], None] | None = None) -> dict:
    """Render every image of ``split`` and score it against the ground truth (where the scene has
    ignore masks, only on the pixels that count: PSNR over them, SSIM and LPIPS with the others
    set to the render's colour).

    Args:
        limit: score only the first ``limit`` images (0 = all).
        out_dir: when given, write ``<name>.png`` (render), ``<name>_depth.png`` (colour-mapped
            depth) and ``<name>_gt.png`` for each image; at ``scale > 1`` the names get ``_x{scale}``
            (``<name>_x2.png``, ``<name>_x2_depth.png``, ``<name>_x2_gt.png``).
        scale: integer downscale factor: render ``(W // scale, H // scale)`` images with
            proportionally wider pixels and score them against the area-downsampled ground truth.
        lpips: also score LPIPS (``"lpips"`` per image and mean) with its model; when the metric
            has no model, ``"lpips": None`` and ``"lpips_note"`` (why) are reported instead.
        on_render: called per image with its name and pictures as (H, W, 3) uint8: ``rgb`` (ground
            truth | render side by side) and ``depth`` (colour-mapped), e.g. for the training logs.
    Returns:
        ``{"psnr": mean dB, "ssim": mean, "images": [{"name", "psnr", "ssim"}], "seconds_per_image"}``
        plus ``"split"``, ``"background"`` and ``"scale"`` (and the LPIPS entries when asked).
    """
    indices = scene.split(split)
    if limit > 0:
        indices = indices[:limit]
    bg = background_color(background, 1)[0]
    suffix = f"_x{scale}" if scale > 1 else ""
    per_image, start = [], time.perf_counter()
    with inference(method):
        for index in indices:
            camera = scene.cameras[index]
            out, covered = render_in_lens(method, camera.downscaled(scale) if scale > 1 else camera, bg)
            pred = out["rgb"].clamp(0.0, 1.0)
            target = ground_truth(scene, index, bg, scale).to(pred.device)
            keep = ground_truth_keep(scene, index, scale)
            if keep is not None:
                keep = keep.to(pred.device)
            if covered is not None:
                keep = covered if keep is None else keep & covered
            if keep is not None:        # ignored pixels take the render's colour: no error there
                target = torch.where(keep[..., None], target, pred)
            name = Path(scene.image_paths[index]).stem if scene.image_paths else f"{index:05d}"
            per_image.append({"name": name, "index": index, "psnr": psnr(pred, target, keep),
                              "ssim": ssim(pred, target)})
            if lpips is not None and lpips.model is not None:
                per_image[-1]["lpips"] = _lpips_or_none(lpips, pred, target)
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                save_image(out_dir / f"{name}{suffix}.png", to_uint8(pred))
                save_image(out_dir / f"{name}{suffix}_depth.png", colorize_depth(out["depth"], out["alpha"]))
                save_image(out_dir / f"{name}{suffix}_gt.png", to_uint8(target))
            if on_render is not None:
                on_render(name, {"rgb": side_by_side(to_uint8(target), to_uint8(pred)),
                                 "depth": colorize_depth(out["depth"], out["alpha"])})
    elapsed = time.perf_counter() - start
    result = {
        "split": split,
        "background": background,
        "scale": scale,
        "psnr": float(np.mean([p["psnr"] for p in per_image])) if per_image else float("nan"),
        "ssim": float(np.mean([p["ssim"] for p in per_image])) if per_image else float("nan"),
        "images": per_image,
        "seconds_per_image": elapsed / max(len(per_image), 1),
    }
    if lpips is not None:
        result.update(lpips_summary(lpips, per_image))
    return result


def _lpips_or_none(metric: LpipsMetric, pred: Tensor, target: Tensor) -> float | None:
    """LPIPS of one image pair; None for an image too small for the network."""
    try:
        return metric.model.distance(pred, target)
    except ValueError:
        return None


def lpips_summary(metric: LpipsMetric, per_image: list[dict]) -> dict:
    """``{"lpips": mean or None, "lpips_net": "alex"|"vgg"}`` plus ``"lpips_note"`` (one line)
    when there is no value."""
    if metric.model is None:
        return {"lpips": None, "lpips_net": metric.net, "lpips_note": metric.reason}
    values = [p["lpips"] for p in per_image if p.get("lpips") is not None]
    if not values:
        from nerfkit.image.lpips import MIN_SIZE

        return {"lpips": None, "lpips_net": metric.net,
                "lpips_note": f"the images are smaller than the {MIN_SIZE} px LPIPS needs"}
    return {"lpips": float(np.mean(values)), "lpips_net": metric.net}


def check_scales_fit(scales: list[int], scene: Scene, split: str) -> None:
    """Each scale must leave the split's smallest image at least one pixel, and as large as the
    SSIM window; one sentence otherwise."""
    sizes = scene.cameras.sizes[scene.split(split)]
    if len(sizes) == 0:
        return
    smallest = int(sizes.min())
    for scale in scales:
        if scale > smallest:
            raise NerfkitError(f"--scales {scale} is larger than the smallest {split} image dimension "
                               f"({smallest} px): expected at most {smallest}")
        if smallest // scale < SSIM_WINDOW:
            raise NerfkitError(f"--scales {scale} shrinks the smallest {split} image dimension to "
                               f"{smallest // scale} px, below the {SSIM_WINDOW} px SSIM window: expected "
                               f"at most {smallest // SSIM_WINDOW}")


def evaluate_scales(method: Method, scene: Scene, split: str, background: str, scales: list[int],
                    lpips: LpipsMetric | None = None) -> dict:
    """:func:`evaluate_split` at every scale (Mip-NeRF's multiscale protocol).

    Returns:
        ``{"split", "background", "scales": {"f": result of evaluate_split}, "psnr": {"f": dB},
        "ssim": {"f": ssim}}`` with the scales as strings (JSON keys).
    """
    check_scales_fit(scales, scene, split)
    results = {str(f): evaluate_split(method, scene, split, background, scale=f, lpips=lpips) for f in scales}
    return {"split": split, "background": background, "scales": results,
            "psnr": {f: r["psnr"] for f, r in results.items()},
            "ssim": {f: r["ssim"] for f, r in results.items()}}

"""Between distorted photos and pinhole images, for methods that rasterize through a pinhole
(splat): training photos are resampled once onto a pinhole camera that covers them
(:func:`undistorted_scene`), and renders of such a camera are warped back into a photo's own lens
(:func:`warp_to_distorted`) so held-out photos are scored in their own camera model.

Both resample with bilinear interpolation of premultiplied colour. Pixels with nothing to sample
(outside the source image) come back as ``keep = False``, which training and scores ignore as they
ignore a mask's 0 pixels (:mod:`nerfkit.data.masks`).

Fisheyes are refused (:func:`refuse_fisheye`): a pinhole holds no ray 90 degrees or more from its
axis, and a wide fisheye's periphery would need a pinhole image many times its size.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.data.cameras import Cameras, distort, image_pixels, undistort
from nerfkit.data.scene import Scene

MAX_GROWTH = 2.0        # a covering pinhole image is at most this many times the photo's width / height


def _normalised(pixels: Tensor, intrinsics: Tensor) -> Tensor:
    fx, fy, cx, cy = intrinsics.double().unbind(-1)
    return torch.stack([(pixels[:, 0] - cx) / fx, (pixels[:, 1] - cy) / fy], -1)


def _to_pixels(xy: Tensor, intrinsics: Tensor) -> Tensor:
    fx, fy, cx, cy = intrinsics.double().unbind(-1)
    return torch.stack([xy[:, 0] * fx + cx, xy[:, 1] * fy + cy], -1)


def refuse_fisheye(cameras: Cameras, what: str = "rendering through a pinhole") -> None:
    """NerfkitError when any of ``cameras`` is a fisheye: ``what`` does not support them."""
    if cameras.has_fisheye:
        raise NerfkitError(f"{what} does not support OPENCV_FISHEYE cameras yet; use --method ngp "
                           "or undistort the photos")


def covering_pinhole(camera: Cameras) -> Cameras:
    """A pinhole camera with ``camera``'s pose and focal lengths whose image holds every pixel of
    ``camera``'s (distorted) image: widened (and its principal point shifted) where the undistorted
    border reaches beyond the photo (barrel distortion), at most :data:`MAX_GROWTH` times its size.

    Args:
        camera: one camera (batch of 1), any OpenCV distortion (a fisheye is refused).
    Returns:
        One pinhole camera (distortion zero) with its own ``sizes`` and ``intrinsics``.
    """
    refuse_fisheye(camera)
    width, height = (int(v) for v in camera.sizes[0])
    intrinsics = camera.intrinsics[0].double()
    xs, ys = torch.arange(width + 1, dtype=torch.float64), torch.arange(height + 1, dtype=torch.float64)
    border = torch.cat([torch.stack([xs, torch.zeros_like(xs)], -1), torch.stack([xs, torch.full_like(xs, height)], -1),
                        torch.stack([torch.zeros_like(ys), ys], -1), torch.stack([torch.full_like(ys, width), ys], -1)])
    ideal = _to_pixels(undistort(_normalised(border, intrinsics), camera.distortion[0].double()), intrinsics)
    grow_x, grow_y = (MAX_GROWTH - 1.0) * width / 2, (MAX_GROWTH - 1.0) * height / 2
    left = max(-grow_x, min(0.0, float(ideal[:, 0].min())))
    right = min(width + grow_x, max(float(width), float(ideal[:, 0].max())))
    top = max(-grow_y, min(0.0, float(ideal[:, 1].min())))
    bottom = min(height + grow_y, max(float(height), float(ideal[:, 1].max())))
    shift_x, shift_y = math.floor(left), math.floor(top)
    size = torch.tensor([[math.ceil(right) - shift_x, math.ceil(bottom) - shift_y]], dtype=torch.int64)
    shifted = camera.intrinsics.clone()
    shifted[0, 2] -= shift_x
    shifted[0, 3] -= shift_y
    return Cameras(camera.c2w.clone(), shifted, size, torch.zeros_like(camera.distortion))


def _sample(image: Tensor, source_pixels: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Bilinear samples of ``image`` (H, W, C) float at (P, 2) pixel positions -> (h, w, C) and the
    (h, w) bool of positions whose four neighbours lie inside it."""
    height, width = image.shape[:2]
    grid = torch.stack([2.0 * source_pixels[:, 0] / width - 1.0, 2.0 * source_pixels[:, 1] / height - 1.0], -1)
    grid = grid.reshape(1, size[1], size[0], 2).to(image.dtype)
    sampled = F.grid_sample(image.permute(2, 0, 1)[None], grid, mode="bilinear", align_corners=False,
                            padding_mode="border")
    inside = ((source_pixels[:, 0] >= 0.5) & (source_pixels[:, 0] <= width - 0.5)
              & (source_pixels[:, 1] >= 0.5) & (source_pixels[:, 1] <= height - 0.5))
    return sampled[0].permute(1, 2, 0), inside.reshape(size[1], size[0])


def _resample(image: Tensor, source_pixels: Tensor, size: tuple[int, int], keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """Premultiplied bilinear resampling of an (H, W, 3|4) float image (and its keep mask)."""
    if image.shape[2] == 4:
        image = torch.cat([image[..., :3] * image[..., 3:], image[..., 3:]], -1)
    if keep is not None:
        image = torch.cat([image, keep.to(image.dtype)[..., None]], -1)
    sampled, inside = _sample(image, source_pixels, size)
    if keep is not None:
        inside = inside & (sampled[..., -1] >= 1.0 - 1e-4)
        sampled = sampled[..., :-1]
    if sampled.shape[2] == 4:
        alpha = sampled[..., 3:]
        sampled = torch.cat([torch.where(alpha > 1e-6, sampled[..., :3] / alpha.clamp_min(1e-6), 0.0), alpha], -1)
    return sampled.clamp(0.0, 1.0), inside


def undistort_image(image: np.ndarray, camera: Cameras, pinhole: Cameras,
                    keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A photo of distorted ``camera`` resampled onto the ``pinhole`` camera (same pose).

    Args:
        image: (H, W, 3|4) uint8 photo of ``camera`` (one camera).
        pinhole: one camera without distortion, e.g. :func:`covering_pinhole` of ``camera``.
        keep: (H, W) bool, the photo's pixels that count, or None: all.
    Returns:
        (h, w, 3|4) uint8 image of ``pinhole`` and (h, w) bool: True where it was sampled from
        pixels that count.
    """
    refuse_fisheye(camera)
    width, height = (int(v) for v in pinhole.sizes[0])
    ideal = _normalised(image_pixels(width, height).double(), pinhole.intrinsics[0])
    source = _to_pixels(distort(ideal, camera.distortion[0].double()), camera.intrinsics[0])
    float_image = torch.from_numpy(image.astype(np.float64) / 255.0)     # a copy: loaded images are read-only
    keep_tensor = None if keep is None else torch.from_numpy(keep)
    sampled, inside = _resample(float_image, source, (width, height), keep_tensor)
    return (sampled * 255.0).round().to(torch.uint8).numpy(), inside.numpy()


def warp_to_distorted(render: Tensor, pinhole: Cameras, camera: Cameras) -> tuple[Tensor, Tensor]:
    """A render of the ``pinhole`` camera warped into ``camera``'s lens (same pose).

    Args:
        render: (h, w, C) float image of ``pinhole`` (one camera without distortion).
        camera: one camera with distortion; its image is (H, W).
    Returns:
        (H, W, C) image (same dtype and device as ``render``) and (H, W) bool: True where the
        render covers the pixel.
    """
    refuse_fisheye(camera)
    width, height = (int(v) for v in camera.sizes[0])
    distorted = _normalised(image_pixels(width, height).double(), camera.intrinsics[0].cpu())
    source = _to_pixels(undistort(distorted, camera.distortion[0].double().cpu()), pinhole.intrinsics[0].cpu())
    warped, inside = _sample(render.double().cpu(), source, (width, height))
    return warped.to(render), inside.to(render.device)


def undistorted_scene(scene: Scene, indices: list[int]) -> Scene:
    """``scene`` with the photos at ``indices`` that have lens distortion resampled onto their
    :func:`covering_pinhole` cameras (the others unchanged); ``masks`` then marks, per image, the
    pixels that hold photo pixels that count. The scene's own arrays are not modified."""
    todo = [i for i in indices if scene.cameras[i].has_distortion]
    if not todo:
        return scene
    refuse_fisheye(scene.cameras[todo])
    cameras = scene.cameras[list(range(len(scene.cameras)))]
    images = list(scene.images)
    masks = list(scene.masks) if scene.masks is not None else [np.ones(image.shape[:2], bool) for image in images]
    for index in todo:
        camera = scene.cameras[index]
        pinhole = covering_pinhole(camera)
        images[index], masks[index] = undistort_image(scene.images[index], camera, pinhole,
                                                      None if scene.masks is None else scene.masks[index])
        # the covering camera may be larger than the photo: the sizes of these cameras change
        cameras.intrinsics[index] = pinhole.intrinsics[0].to(cameras.intrinsics)
        cameras.sizes[index] = pinhole.sizes[0]
        cameras.distortion[index] = 0.0
    return dataclasses.replace(scene, images=images, cameras=cameras, masks=masks)

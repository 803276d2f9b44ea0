"""``load_scene``: any supported scene folder -> one normalised, downscaled :class:`Scene`.

The format is detected from the folder: NeRF-synthetic (``transforms_train.json``), instant-ngp /
nerfstudio (``transforms.json``) or COLMAP (``sparse/0/`` or ``sparse/`` with
``cameras.{bin,txt}``).
Each reader returns the scene in its original world coordinates; this module picks the splits,
normalises (:mod:`nerfkit.data.normalize`) and reads the images.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import torch

from nerfkit.core.errors import NerfkitError
from nerfkit.data.blender import parse_blender, split_file
from nerfkit.data.cameras import Cameras
from nerfkit.data.colmap import find_model_dir, parse_colmap
from nerfkit.data.images import load_images
from nerfkit.data.masks import find_mask_paths, load_keep_masks, resolve_mask_mode
from nerfkit.data.normalize import check_poses, normalize_poses, resolve_kind
from nerfkit.data.scene import Scene
from nerfkit.data.similarity import transform_c2w, transform_points
from nerfkit.data.transforms_json import parse_transforms_json

MIN_IMAGE_SIZE = 11        # the SSIM window (nerfkit.image.metrics); smaller images cannot be scored
PARSERS: dict[str, Callable[[Path], Scene]] = {
    "blender": parse_blender,
    "transforms": parse_transforms_json,
    "colmap": parse_colmap,
}


def detect_format(root: Path) -> str:
    """``"blender"``, ``"transforms"`` or ``"colmap"`` for an existing folder, else NerfkitError."""
    if split_file(root, "train").is_file():
        return "blender"
    if (root / "transforms.json").is_file():
        return "transforms"
    if find_model_dir(root) is not None:
        return "colmap"
    raise NerfkitError(
        f"'{root}' is not a scene folder: expected a COLMAP folder (images/ + sparse/0/), a "
        "NeRF-synthetic folder (transforms_train.json) or a transforms.json")


def parse_scene(path: str | Path) -> Scene:
    """The scene folder as its reader gives it: original world coordinates, float64 cameras at the
    photos' full size, sparse points when the files hold them, no images read (see each reader)."""
    root = _scene_folder(path)
    return PARSERS[detect_format(root)](root)


def every_nth_split(count: int, every: int) -> dict[str, list[int]]:
    """Images 0, every, 2*every, ... are ``test``; the rest are ``train``."""
    test = list(range(0, count, every))
    return {"train": [i for i in range(count) if i % every != 0], "test": test}


def _check_splits(splits: dict[str, list[int]], root: Path, how: str) -> None:
    for name in ("train", "test"):
        if not splits.get(name):
            raise NerfkitError(f"the {name} split of '{root}' is empty ({how})")


def check_intrinsics(cameras: Cameras, names: list[str]) -> None:
    """NerfkitError naming the first image whose intrinsics are not finite or not positive."""
    values = torch.cat([cameras.intrinsics, cameras.distortion], 1).double()
    bad = ~torch.isfinite(values).all(1)
    bad |= (cameras.intrinsics[:, :2] <= 0).any(1) | (cameras.sizes < 1).any(1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        fx, fy, cx, cy = cameras.intrinsics[i].tolist()
        raise NerfkitError(
            f"the camera of image '{names[i]}' is invalid: focal length {fx:g}, {fy:g}, principal "
            f"point {cx:g}, {cy:g}, size {cameras.sizes[i].tolist()}, distortion "
            f"{cameras.distortion[i].tolist()} (expected finite values and positive focal "
            "lengths and sizes)")


def _check_arguments(downscale: float, split_every: int) -> None:
    if not (isinstance(downscale, (int, float)) and math.isfinite(downscale) and downscale >= 1):
        raise NerfkitError(f"downscale must be a number >= 1 (2 = half width), got {downscale!r}")
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise NerfkitError(f"split_every must be an integer >= 2 (every n-th image is a test "
                           f"image), got {split_every!r}")


def _scene_folder(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise NerfkitError(f"scene path '{root}' does not exist")
    if not root.is_dir():
        raise NerfkitError(f"'{root}' is a file, not a scene folder: pass the folder that holds "
                           "the scene")
    return root


def load_scene(path: str | Path, downscale: float = 1.0, split_every: int = 8,
               kind: str | None = None, masks: str = "auto") -> Scene:
    """Read a scene folder, normalise it and read its images.

    Args:
        path: a COLMAP, NeRF-synthetic or ``transforms.json`` folder.
        downscale: images and intrinsics are divided by this (2.0 = half width and height;
            sizes are rounded to whole pixels).
        split_every: without splits in the files, images 0, n, 2n, ... (sorted by name) are the
            test split and the rest train.
        kind: ``"object"`` or ``"unbounded"`` to override the normalisation the format implies
            (see :mod:`nerfkit.data.normalize`); None chooses from the format.
        masks: the scene's masks (:mod:`nerfkit.data.masks`): ``"ignore"``: pixels they mark 0 are
            left out of training and scores (``Scene.masks``); ``"alpha"``: they become the images'
            alpha channel, and the scene is an object unless ``kind`` says otherwise; ``"off"``:
            not read; ``"auto"``: ``ignore`` when the scene has masks, else ``off``.
    Returns:
        The :class:`Scene`: float32 cameras in scene coordinates, uint8 images, points (when
        COLMAP has them) in scene coordinates, ``world_to_scene`` mapping the original world to it.
    Raises:
        NerfkitError: for every problem with the folder, naming the file or value.
    """
    root = _scene_folder(path)
    _check_arguments(downscale, split_every)
    fmt = detect_format(root)
    parsed = PARSERS[fmt](root)
    given = parsed.extras.get("mask_paths")
    masks = resolve_mask_mode(masks, root, given)
    mask_paths = find_mask_paths(root, parsed.image_paths, given=given) if masks != "off" else None
    if masks == "alpha" and kind is None:
        kind = "object"             # a masked capture is an object on a transparent background
    count = len(parsed.image_paths)
    if parsed.splits:
        splits = {name: list(indices) for name, indices in parsed.splits.items()}
        _check_splits(splits, root, "as given by the scene's files")
    else:
        splits = every_nth_split(count, split_every)
        _check_splits(splits, root, f"{count} images, every {split_every}th is a test image")

    world = parsed.cameras
    names = [str(p) for p in parsed.image_paths]
    check_intrinsics(world, names)
    check_poses(world.c2w, names)
    scene_kind = resolve_kind(parsed.extras["kind"], world.c2w, kind)
    norm = normalize_poses(world.c2w, parsed.points3d, scene_kind, names)
    cameras = Cameras(transform_c2w(norm.world_to_scene, world.c2w).float(),
                      world.intrinsics.float(), world.sizes.long(), world.distortion.float(), world.fisheye.clone())
    if downscale != 1:
        cameras = cameras.scaled(1.0 / downscale)
    if bool((cameras.sizes < 1).any()):
        raise NerfkitError(f"downscale {downscale} makes some images of '{root}' smaller than "
                           "one pixel")
    small = (cameras.sizes < MIN_IMAGE_SIZE).any(1)
    if bool(small.any()):
        i = int(small.nonzero()[0, 0])
        width, height = (int(v) for v in cameras.sizes[i])
        raise NerfkitError(f"image '{names[i]}' is {width}x{height} pixels (downscale "
                           f"{downscale:g}): nerfkit needs at least {MIN_IMAGE_SIZE}x"
                           f"{MIN_IMAGE_SIZE} (the SSIM window of its evaluation)")
    images = load_images(parsed.image_paths, world.sizes.numpy(), cameras.sizes.numpy(),
                         parsed.extras.get("size_source"), mask_paths=mask_paths if masks == "alpha" else None)
    keep = (load_keep_masks(mask_paths, world.sizes.numpy(), cameras.sizes.numpy())
            if masks == "ignore" else None)
    points = None
    if parsed.points3d is not None:
        points = transform_points(norm.world_to_scene, parsed.points3d).float()
    extras = {key: value for key, value in parsed.extras.items() if key not in ("size_source", "mask_paths")}
    extras.update(kind=scene_kind, downscale=float(downscale), masks=masks)
    return dataclasses.replace(
        parsed, name=root.resolve().name, images=images, cameras=cameras, splits=splits,
        world_to_scene=norm.world_to_scene, aabb=norm.aabb, unbounded=norm.unbounded,
        points3d=points, masks=keep, extras=extras)

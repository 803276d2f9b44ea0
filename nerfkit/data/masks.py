"""Per-image masks: a ``masks/`` folder beside ``images/`` (or ``mask_path`` per frame of a
``transforms.json``), one grey image per photo.

The convention of COLMAP and nerfstudio: a mask has the photo's size and 0 where the photo must be
ignored (a person, the tripod, the background of an object capture), 255 where it counts. Its file
is found by the photo's path inside ``images/`` (sub-folders kept; for photos elsewhere, e.g. a
NeRF-synthetic ``train/r_0.png``, its path inside the scene folder, then its name alone), with any
image suffix in place of the photo's (``masks/0001.png`` for ``images/0001.jpg``) or appended to
its whole name (``masks/0001.jpg.png``, as COLMAP writes them).

Modes (:func:`nerfkit.data.load.load_scene`'s ``masks``):

- ``ignore``: pixels under 0 are never trained on nor scored (:func:`load_keep_masks`).
- ``alpha``: a mask becomes the photo's alpha channel (its grey value): the capture turns into an
  object scene with a transparent background, trained and scored as NeRF-synthetic scenes are.
- ``auto`` (the default): ``ignore`` when the scene has masks (the folder, or ``mask_path``
  entries), else ``off``.
- ``off``: masks are not read.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from nerfkit.core.errors import NerfkitError
from nerfkit.data.images import mask_alpha, resize_image, resolve_image_path

MASKS_DIR = "masks"
MASK_MODES = ("auto", "off", "ignore", "alpha")


def check_mask_mode(mode: str) -> None:
    """NerfkitError unless ``mode`` is one of :data:`MASK_MODES`."""
    if mode not in MASK_MODES:
        raise NerfkitError(f"masks must be one of {', '.join(MASK_MODES)}, got '{mode}' (ignore: pixels where the "
                           f"scene's {MASKS_DIR}/ are 0 are not trained on; alpha: the masks become the images' "
                           "alpha channel)")


def resolve_mask_mode(mode: str, root: Path, given: Sequence[Path | None] | None = None) -> str:
    """``mode`` with ``auto`` decided: ``ignore`` when ``root/masks`` is a folder or some frame names
    its mask (``given``), else ``off``."""
    check_mask_mode(mode)
    if mode != "auto":
        return mode
    has_masks = (root / MASKS_DIR).is_dir() or any(path is not None for path in (given or ()))
    return "ignore" if has_masks else "off"


def _find_mask(masks: Path, relative: Path) -> Path | None:
    """The mask of the image at ``relative``: by its stem, then by its whole name."""
    for base in (relative.with_suffix(""), relative):
        candidate = resolve_image_path(masks / base)
        if candidate.is_file():
            return candidate
    return None


def _relative_names(path: Path, images: Path, root: Path) -> list[Path]:
    """Where to look for ``path``'s mask inside ``masks/``: its path in ``images/``, else in the
    scene folder, then its name alone."""
    resolved = Path(path).resolve()
    for base in (images, root):
        try:
            return [resolved.relative_to(base)] + ([Path(resolved.name)] if base == root else [])
        except ValueError:
            continue
    return [Path(resolved.name)]


def find_mask_paths(root: Path, image_paths: Sequence[Path], images_dir: str = "images",
                    given: Sequence[Path | None] | None = None) -> list[Path]:
    """The mask file of every image (see the module docstring for how each is found).

    Args:
        given: per image, the mask a scene file names for it (``transforms.json``'s ``mask_path``)
            or None to look in ``root/masks``.
    Raises:
        NerfkitError: when a named mask is missing, when ``root/masks`` is needed but not a folder,
            or naming the first image without a mask.
    """
    masks = root / MASKS_DIR
    named = list(given) if given is not None else [None] * len(image_paths)
    if not masks.is_dir() and any(path is None for path in named):
        raise NerfkitError(f"masks were asked for but '{masks}' is not a folder (expected one mask image "
                           f"per photo, e.g. {MASKS_DIR}/0001.png for images/0001.jpg)")
    images, scene_root = (root / images_dir).resolve(), root.resolve()
    found = []
    for path, mask in zip(image_paths, named):
        if mask is not None:
            if not Path(mask).is_file():
                raise NerfkitError(f"mask '{mask}' of image '{path}' is not a file")
            found.append(Path(mask))
            continue
        relatives = _relative_names(Path(path), images, scene_root)
        match = next((m for m in (_find_mask(masks, r) for r in relatives) if m is not None), None)
        if match is None:
            first = relatives[0]
            raise NerfkitError(f"image '{path}' has no mask in '{masks}' (looked for '{first.with_suffix('')}.png' "
                               f"or '{first}.png')")
        found.append(match)
    return found


def load_keep_masks(mask_paths: Sequence[Path], photo_sizes: np.ndarray, out_sizes: np.ndarray | None = None,
                    workers: int = 8) -> list[np.ndarray]:
    """The masks of ``masks=ignore`` as (H', W') bool arrays, True where a pixel counts.

    Args:
        mask_paths: N mask files (grey, RGB or RGBA; below 128 = ignore).
        photo_sizes: (N, 2) int ``width, height`` of the photos, which the masks must have.
        out_sizes: (N, 2) int ``width, height`` the images are downscaled to, or None. A downscaled
            pixel counts only when every photo pixel under it counts (the border of an ignored
            region never leaks into training).
    Raises:
        NerfkitError: for an unreadable or mis-sized mask, or when no pixel of any image counts.
    """
    def one(index: int) -> np.ndarray:
        width, height = (int(v) for v in photo_sizes[index])
        keep = mask_alpha(Path(mask_paths[index]), width, height)
        keep = np.where(keep >= 128, 255, 0).astype(np.uint8)      # grey above half counts (JPEG noise)
        if out_sizes is not None:
            keep = resize_image(keep, int(out_sizes[index][0]), int(out_sizes[index][1]))
        return np.ascontiguousarray(keep == 255)

    if not mask_paths:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(mask_paths))) as pool:
        keeps = list(pool.map(one, range(len(mask_paths))))
    if not any(bool(keep.any()) for keep in keeps):
        raise NerfkitError(f"every mask ignores every pixel (e.g. '{mask_paths[0]}' is all 0): a mask is 255 "
                           "where its photo counts")
    return keeps

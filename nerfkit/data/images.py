"""Reading scene images: any common file -> uint8 (H, W, 3|4) sRGB arrays, optionally downscaled.

Errors a user can cause (a missing, corrupt or truncated file, an image of the wrong size) raise
:class:`~nerfkit.core.errors.NerfkitError` naming the file.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import imageio.v3 as iio
import numpy as np
from PIL import Image

from nerfkit.core.errors import NerfkitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def _not_an_image(path: Path) -> NerfkitError:
    return NerfkitError(f"image '{path}' could not be read: it is not a valid image file")


def _missing(path: Path) -> NerfkitError:
    return NerfkitError(f"the scene's image '{path}' is missing")


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Any decoded image -> uint8 (H, W, 3) or (H, W, 4).

    Grey (H, W) / (H, W, 1) becomes 3 equal channels, grey+alpha (H, W, 2) becomes RGBA;
    16-bit integers are rounded to 8 bits, floats are taken as [0, 1], 1-bit as {0, 255}.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unsupported image shape {image.shape}")
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype in (np.uint16, np.int32, np.uint32):   # Pillow gives 16-bit grey as either
        image = np.round(np.clip(image, 0, 65535).astype(np.float32) / 257.0).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {image.dtype}")
    channels = image.shape[2]
    if channels == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 2:
        image = np.concatenate([np.repeat(image[:, :, :1], 3, axis=2), image[:, :, 1:]], axis=2)
    return np.ascontiguousarray(image)


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file as uint8 (H, W, 3) or (H, W, 4) sRGB (see :func:`to_uint8_rgb`)."""
    path = Path(path)
    if not _is_file(path):
        raise _missing(path)
    try:
        image = iio.imread(path, index=0, plugin="pillow")
        return to_uint8_rgb(np.asarray(image))
    except Exception as exc:  # imageio/Pillow raise many types for bad files
        raise _not_an_image(path) from exc


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) in pixels from the file header, without decoding the pixels."""
    path = Path(path)
    if not _is_file(path):
        raise _missing(path)
    try:
        with Image.open(path) as image:
            return int(image.size[0]), int(image.size[1])
    except Exception as exc:
        raise _not_an_image(path) from exc


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a uint8 (H, W, C) image to (height, width, C) with area (box) averaging.

    Integer factors use Pillow's ``reduce`` (the mean of each block); other sizes its box filter.
    Pillow averages RGBA with premultiplied alpha, so transparent pixels do not bleed colour.
    """
    in_height, in_width = image.shape[:2]
    if (in_width, in_height) == (width, height):
        return image
    pil = Image.fromarray(image)
    if in_width % width == 0 and in_height % height == 0:
        return np.asarray(pil.reduce((in_width // width, in_height // height)))
    return np.asarray(pil.resize((int(width), int(height)), Image.Resampling.BOX))


def resolve_image_path(path: Path) -> Path:
    """``path`` itself if it exists, else ``path`` + the first image suffix that exists.

    NeRF-synthetic files name frames without an extension (``./train/r_0``). When nothing exists,
    the path a user should look for is returned (``.png`` appended when ``path`` has no image
    suffix).
    """
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return path
    return path.with_name(path.name + ".png")


def check_images_exist(paths: Sequence[Path], listing: Path) -> None:
    """Raise if any of ``paths`` (the images that ``listing`` refers to) is not a file."""
    missing = [path for path in paths if not _is_file(Path(path))]
    if missing:
        raise NerfkitError(
            f"'{listing}' lists {len(paths)} images but {len(missing)} of them are not on disk "
            f"(image '{missing[0]}' is missing)")


def mask_alpha(path: Path, width: int, height: int) -> np.ndarray:
    """A mask file as uint8 (H, W) alpha: 0 = background, 255 = the photo counts.

    Args:
        path: the mask image (any format; grey, RGB or RGBA: the mean of its colour channels).
        width, height: the size of its photo, which the mask must have.
    Raises:
        NerfkitError: naming the file when it cannot be read or has another size.
    """
    mask = read_image(path)
    if (mask.shape[1], mask.shape[0]) != (width, height):
        raise NerfkitError(f"mask '{path}' is {mask.shape[1]}x{mask.shape[0]} pixels but its photo is "
                           f"{width}x{height} (a mask must have its photo's size)")
    grey = mask[..., :3].astype(np.uint16).sum(axis=2) // 3
    return grey.astype(np.uint8)


def with_alpha(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) uint8 photo and (H, W) uint8 mask -> (H, W, 4) with the mask as alpha (an alpha
    the photo already has is multiplied by the mask)."""
    if image.shape[2] == 4:
        alpha = (image[..., 3].astype(np.uint16) * alpha // 255).astype(np.uint8)
    return np.ascontiguousarray(np.concatenate([image[..., :3], alpha[..., None]], axis=2))


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for names the file system refuses (too long, NUL bytes)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _default_workers() -> int:
    return max(1, min(16, (os.cpu_count() or 1) * 2))


def load_images(paths: Sequence[Path], expected_sizes: np.ndarray | None = None,
                out_sizes: np.ndarray | None = None, size_source: str | Path | None = None,
                workers: int | None = None, mask_paths: Sequence[Path] | None = None) -> list[np.ndarray]:
    """Read many images in a thread pool, check their sizes and downscale them.

    Args:
        paths: N image files.
        expected_sizes: (N, 2) int ``width, height`` the cameras were calibrated for, or None to
            skip the check.
        out_sizes: (N, 2) int ``width, height`` to resize to (area averaging), or None to keep.
        size_source: the file the expected sizes come from, named in the size-mismatch error.
        workers: threads (decoding releases the GIL); default twice the CPU count, at most 16.
        mask_paths: N mask files to become the images' alpha channel (:func:`mask_alpha`), applied
            before the downscale (which averages premultiplied colour), or None.
    Returns:
        N uint8 arrays (H', W', 3|4) (always 4 channels with ``mask_paths``).
    """
    source = f" in '{size_source}'" if size_source is not None else ""

    def one(index: int) -> np.ndarray:
        image = read_image(paths[index])
        if expected_sizes is not None:
            width, height = (int(v) for v in expected_sizes[index])
            if (image.shape[1], image.shape[0]) != (width, height):
                raise NerfkitError(
                    f"image '{paths[index]}' is {image.shape[1]}x{image.shape[0]} pixels but its "
                    f"camera{source} is {width}x{height}")
        if mask_paths is not None:
            image = with_alpha(image, mask_alpha(Path(mask_paths[index]), image.shape[1], image.shape[0]))
        if out_sizes is not None:
            image = resize_image(image, int(out_sizes[index][0]), int(out_sizes[index][1]))
        return image

    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(workers or _default_workers(), len(paths))) as pool:
        return list(pool.map(one, range(len(paths))))

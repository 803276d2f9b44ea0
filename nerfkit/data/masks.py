"""Per-image masks: a ``masks/`` folder beside ``images/``, one grey image per photo.

The convention of COLMAP and nerfstudio: a mask has the photo's size and 0 where the photo must be
ignored (the background of an object capture, a person, the tripod), 255 where it counts. Its file
is found by the photo's path inside ``images/`` (sub-folders kept), with any image suffix in place
of the photo's (``masks/0001.png`` for ``images/0001.jpg``) or appended to its whole name
(``masks/0001.jpg.png``, as COLMAP writes them). For photos outside ``images/`` (a
``transforms.json`` may point anywhere) the file name alone is looked up in ``masks/``.

With ``masks=alpha`` (:func:`nerfkit.data.load.load_scene`) a mask becomes the photo's alpha channel
(its grey value, the mean of its colour channels): the capture turns into an object scene with a
transparent background, trained and scored as NeRF-synthetic scenes are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from nerfkit.core.errors import NerfkitError
from nerfkit.data.images import IMAGE_SUFFIXES

MASKS_DIR = "masks"
MASK_MODES = ("off", "alpha")


def check_mask_mode(mode: str) -> None:
    """NerfkitError unless ``mode`` is one of :data:`MASK_MODES`."""
    if mode not in MASK_MODES:
        raise NerfkitError(f"masks must be one of {', '.join(MASK_MODES)}, got '{mode}' (alpha: the scene's "
                           f"{MASKS_DIR}/ folder becomes the images' alpha channel)")


def _candidates(masks: Path, relative: Path) -> list[Path]:
    suffixes = IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES)
    stem = relative.with_suffix("") if relative.suffix else relative
    return ([masks / stem.with_name(stem.name + s) for s in suffixes]
            + [masks / relative.with_name(relative.name + s) for s in suffixes])


def find_mask_paths(root: Path, image_paths: Sequence[Path], images_dir: str = "images") -> list[Path]:
    """The mask file of every image (see the module docstring for how each is found).

    Raises:
        NerfkitError: when ``root/masks`` is not a folder, or naming the first image without a mask.
    """
    masks = root / MASKS_DIR
    if not masks.is_dir():
        raise NerfkitError(f"masks were asked for but '{masks}' is not a folder (expected one mask image "
                           f"per photo, e.g. {MASKS_DIR}/0001.png for images/0001.jpg)")
    images = (root / images_dir).resolve()
    found = []
    for path in image_paths:
        try:
            relative = Path(path).resolve().relative_to(images)
        except ValueError:
            relative = Path(Path(path).name)
        candidates = _candidates(masks, relative)
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            raise NerfkitError(f"image '{path}' has no mask in '{masks}' (looked for '{candidates[0].name}' "
                               f"or '{relative.name}.png')")
        found.append(match)
    return found

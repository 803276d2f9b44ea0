"""Whether a scene's photos need the per-image appearance correction (``appearance=auto``).

The correction (:mod:`nerfkit.render.appearance`) is for photo captures whose images differ in
exposure or white balance (auto exposure, changing light). ``auto`` decides at the start of a run,
from the loaded scene, as :func:`nerfkit.data.masks.resolve_mask_mode` decides ``masks=auto``; the
run's ``config.yaml`` then records ``on`` or ``off``, so a resumed or re-opened run rebuilds the
same parameters:

- ``off`` for rendered scenes: NeRF-synthetic folders (the built-in demo is one) and images that
  come with an alpha channel (renders on a transparent background; a capture whose masks became
  its alpha, ``masks=alpha``, is still a capture);
- ``off`` with fewer than :data:`MIN_IMAGES` training images;
- else ``on`` when the training images' mean brightness varies by at least :data:`MIN_SPREAD`
  (:func:`brightness_spread`), ``off`` otherwise.

The mean brightness of a photo depends on what it shows as well as on its exposure, so this is a
rule of thumb: ``appearance=on`` or ``off`` settles it for a given capture.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nerfkit.core.errors import NerfkitError
from nerfkit.data.scene import Scene

APPEARANCE_MODES = ("auto", "on", "off")
MIN_IMAGES = 20          # training images; fewer and ``auto`` stays off
MIN_SPREAD = 0.1         # std of log mean brightness over the training images (about 10 %)
_STRIDE = 4              # every 4th pixel per axis is enough for a mean


def check_appearance_mode(mode: str) -> None:
    """NerfkitError unless ``mode`` is one of :data:`APPEARANCE_MODES`."""
    if mode not in APPEARANCE_MODES:
        raise NerfkitError(f"appearance must be one of {', '.join(APPEARANCE_MODES)}, got '{mode}' (on: a colour "
                           "correction per training image for photos of varying exposure)")


def brightness_spread(images: Sequence[np.ndarray], keeps: Sequence[np.ndarray | None] | None = None) -> float:
    """How much the images' mean colours vary: the largest, over R, G and B, of the standard
    deviation of ``log(mean)`` across the images (0.1 is about a 10 % spread).

    Args:
        images: N uint8 (H, W, 3|4) images; with alpha, the mean is alpha-weighted.
        keeps: per image, an (H, W) bool mask of the pixels that count, or None.
    """
    means = []
    for index, image in enumerate(images):
        pixels = image[::_STRIDE, ::_STRIDE].astype(np.float64) / 255.0
        weight = pixels[..., 3] if pixels.shape[-1] == 4 else np.ones(pixels.shape[:2])
        keep = None if keeps is None else keeps[index]
        if keep is not None:
            weight = weight * keep[::_STRIDE, ::_STRIDE]
        total = max(float(weight.sum()), 1e-8)
        means.append((pixels[..., :3] * weight[..., None]).reshape(-1, 3).sum(0) / total)
    if len(means) < 2:
        return 0.0
    return float(np.log(np.maximum(np.stack(means), 1.0 / 255.0)).std(0).max())


def resolve_appearance_mode(mode: str, scene: Scene) -> str:
    """``mode`` with ``auto`` decided for ``scene`` (see the module docstring): ``on`` or ``off``."""
    check_appearance_mode(mode)
    if mode != "auto":
        return mode
    ids = scene.split("train")
    rendered = scene.format == "blender" or (scene.has_alpha and scene.extras.get("masks") != "alpha")
    if rendered or len(ids) < MIN_IMAGES:
        return "off"
    keeps = None if scene.masks is None else [scene.masks[i] for i in ids]
    return "on" if brightness_spread([scene.images[i] for i in ids], keeps) >= MIN_SPREAD else "off"


__all__ = ["APPEARANCE_MODES", "MIN_IMAGES", "MIN_SPREAD", "brightness_spread", "check_appearance_mode",
           "resolve_appearance_mode"]

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
- else ``on`` when the training photos' EXIF exposure (:func:`exposure_value`) spans at least
  :data:`MIN_EV_SPREAD` stops, ``off`` otherwise (also for photos without EXIF: renders, frames
  of a video, most PNGs).

The photos' own brightness is no guide: it follows what they show. dtu-scan65 (one fixed exposure,
the object filling more or less of each view) spreads 0.27 in log mean colour, room-a (renders at
one exposure) 0.12, as much as a capture of varying exposure. ``appearance=on`` or ``off`` settles
it for a given capture.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from PIL import ExifTags, Image

from nerfkit.core.errors import NerfkitError
from nerfkit.data.scene import Scene

APPEARANCE_MODES = ("auto", "on", "off")
MIN_IMAGES = 20          # training images; fewer and ``auto`` stays off
MIN_EV_SPREAD = 1.0 / 3.0  # stops between the brightest and the darkest exposure of the training photos


def check_appearance_mode(mode: str) -> None:
    """NerfkitError unless ``mode`` is one of :data:`APPEARANCE_MODES`."""
    if mode not in APPEARANCE_MODES:
        raise NerfkitError(f"appearance must be one of {', '.join(APPEARANCE_MODES)}, got '{mode}' (on: a colour "
                           "correction per training image for photos of varying exposure)")


def _number(value: object) -> float | None:
    if isinstance(value, tuple):                          # ISO may come as several values
        value = value[0] if value else None
    try:
        number = float(value)                             # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def exposure_value(path: Path) -> float | None:
    """The exposure a photo was taken at, from its EXIF, in stops: ``log2(N^2 / t) - log2(ISO / 100)``
    (f-number N, exposure time t in seconds; a missing N or ISO counts as constant). None when the
    file has no exposure time (renders, video frames, most PNGs) or cannot be read."""
    try:
        with Image.open(path) as image:
            tags = image.getexif().get_ifd(ExifTags.IFD.Exif)
    except (OSError, ValueError, SyntaxError):
        return None
    seconds = _number(tags.get(ExifTags.Base.ExposureTime))
    if seconds is None:
        return None
    f_number = _number(tags.get(ExifTags.Base.FNumber)) or 1.0
    iso = _number(tags.get(ExifTags.Base.ISOSpeedRatings)) or 100.0
    return math.log2(f_number * f_number / seconds) - math.log2(iso / 100.0)


def exposure_spread(paths: Sequence[Path]) -> float | None:
    """Stops between the brightest and the darkest exposure of ``paths``; None unless at least half
    of them carry an exposure (:func:`exposure_value`)."""
    values = [value for value in (exposure_value(path) for path in paths) if value is not None]
    if not values or 2 * len(values) < len(paths):
        return None
    return max(values) - min(values)


def resolve_appearance_mode(mode: str, scene: Scene) -> str:
    """``mode`` with ``auto`` decided for ``scene`` (see the module docstring): ``on`` or ``off``."""
    check_appearance_mode(mode)
    if mode != "auto":
        return mode
    ids = scene.split("train")
    rendered = scene.format == "blender" or (scene.has_alpha and scene.extras.get("masks") != "alpha")
    if rendered or len(ids) < MIN_IMAGES:
        return "off"
    spread = exposure_spread([scene.image_paths[i] for i in ids])
    return "on" if spread is not None and spread >= MIN_EV_SPREAD else "off"


__all__ = ["APPEARANCE_MODES", "MIN_EV_SPREAD", "MIN_IMAGES", "check_appearance_mode", "exposure_spread",
           "exposure_value", "resolve_appearance_mode"]

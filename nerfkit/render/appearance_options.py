"""Options of the per-image appearance correction, shared by every method (plain settings, no torch).

The names are the flat keys of presets and ``--set`` (see :mod:`nerfkit.core.settings`); the
correction itself is :class:`nerfkit.render.appearance.ImageAppearance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings


@dataclass
class AppearanceOptions(Settings):
    """A per-training-image affine colour transform (3x3 matrix + offset) applied to the rendered
    colour before the loss, so that photos of varying exposure or white balance do not bend the
    scene's colours (as Inria 3DGS's exposure compensation).

    Attributes:
        appearance: ``on``, ``off`` or ``auto``: decided when a run starts, from its scene
            (:func:`nerfkit.data.appearance.resolve_appearance_mode`: on for a photo capture with
            many training photos whose EXIF exposure varies, off for rendered scenes such as
            NeRF-synthetic and the built-in demo), and written to ``config.yaml`` as ``on`` or
            ``off``. A method built while it still reads ``auto`` (a run from before this setting)
            has no correction.
        appearance_lr: Adam's learning rate of the transforms, scaled over the run by the method's
            schedule (ngp, mipnerf and neus: with their other groups; splat: down to a tenth, as
            3DGS's exposure). 1e-2 for splat, whose step sees one photo; 1e-3 for the ray methods,
            whose every step has rays of every photo (:meth:`for_rays`; on the tiny demo with
            exposure changes ngp scored 0.7 dB more with it than with 1e-2).
    """

    appearance: Literal["auto", "on", "off"] = "auto"
    appearance_lr: float = 1e-2

    @staticmethod
    def for_rays() -> "AppearanceOptions":
        """The defaults of a ray method (ngp, mipnerf, neus): ``appearance_lr`` 1e-3."""
        return AppearanceOptions(appearance_lr=1e-3)

    def validate(self) -> None:
        if self.appearance_lr < 0:
            raise NerfkitError(f"appearance_lr must be >= 0, got {self.appearance_lr}")

"""A method's Gaussians (:class:`~nerfkit.methods.capabilities.HasGaussians`) in world coordinates,
for the splat files (:mod:`nerfkit.export.splat_files`: standard or compressed .ply, .splat, .spz).

The splat method optimises its Gaussians in nerfkit's normalised scene coordinates; the export is in
the scene's ORIGINAL world coordinates and units (docs/design.md, "Conventions"), moved there by the
inverse of ``world_to_scene`` (:func:`nerfkit.export.transform.gaussians_to_world`), so it lands on
the input cameras in other splat viewers.

Only the SH bands the method has in use are kept (``sh_degree_in_use``): a run stopped before its SH
degree reached ``sh_degree`` renders with fewer bands, and the file then renders the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.data.scene import Scene
from nerfkit.export.splat_files import clean_gaussians, write_splat_file
from nerfkit.export.transform import gaussians_to_world
from nerfkit.methods.base import Method
from nerfkit.methods.capabilities import HasGaussians


@dataclass
class SplatExport:
    """Gaussians in world coordinates (``means`` (N, 3), ``quats``, ``scales``, ``opacities``, ``sh0``,
    ``shN`` (N, K, 3) with K = (sh_degree + 1)^2 - 1), ready to write."""

    gaussians: dict[str, Tensor]
    sh_degree: int

    @property
    def count(self) -> int:
        return int(self.gaussians["means"].shape[0])

    def cleaned(self, min_opacity: float = 0.0, crop: Sequence[float] | None = None,
                sh_degree: int | None = None) -> "SplatExport":
        """Without the Gaussians below ``min_opacity`` or outside the world box ``crop``
        (xmin ymin zmin xmax ymax zmax), with SH up to ``sh_degree``
        (:func:`~nerfkit.export.splat_files.clean_gaussians`)."""
        kept = clean_gaussians(self.gaussians, min_opacity, crop, sh_degree)
        return SplatExport(kept, self.sh_degree if sh_degree is None else sh_degree)

    def write(self, path: Path, ply_format: str = "standard") -> None:
        """Write the file ``path`` names: a 3DGS .ply (``ply_format`` standard or compressed),
        .splat or .spz."""
        write_splat_file(path, self.gaussians, ply_format)


def export_splat(method: Method, scene: Scene) -> SplatExport:
    """The Gaussians of ``method`` moved to ``scene``'s world coordinates.

    Raises:
        NerfkitError: the method has no Gaussians.
    """
    if not isinstance(method, HasGaussians):
        raise NerfkitError(f"a {getattr(method, 'name', type(method).__name__)} run has no Gaussians; "
                           "export splat needs a run of --method splat")
    degree = int(method.sh_degree_in_use)
    with torch.no_grad():
        in_scene = {key: value.detach() for key, value in method.gaussians.items()}
        in_scene["shN"] = in_scene["shN"][:, : (degree + 1) ** 2 - 1]
        return SplatExport(gaussians_to_world(in_scene, scene.world_to_scene), degree)

"""Gaussians read from a splat file (Inria 3DGS, gsplat, nerfstudio, SuperSplat or nerfkit) as an object
that renders like a trained method: what ``nerfkit view FILE.ply`` and ``nerfkit export mesh FILE.ply``
need.

It keeps the render side of the method contract (``render(camera, background)``, eval mode, a
device) and :class:`~nerfkit.methods.capabilities.HasGaussians`, rendered by the same rasterizer
as the splat method (:mod:`nerfkit.render.splat`). It has no training hooks: it is not in the
registry and ``nerfkit train`` never builds it. The Gaussians are in the scene coordinates the
caller chose (the file's world moved by a scene's ``world_to_scene``, see
:func:`nerfkit.export.splat_scene.load_splat_scene`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from nerfkit.data.cameras import Cameras
from nerfkit.methods.base import MethodBase
from nerfkit.render.splat import RasterSettings, render_gaussians

GAUSSIAN_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")


class LoadedGaussians(MethodBase):
    """Fixed Gaussians that render (see the module docstring).

    Args:
        gaussians: ``means (N, 3)``, ``quats (N, 4)`` (w, x, y, z), ``scales (N, 3)`` log std-devs,
            ``opacities (N,)`` logits, ``sh0 (N, 1, 3)``, ``shN (N, K, 3)``, in scene coordinates.
        settings: how to rasterize (default: gsplat on CUDA when installed, else nerfkit's).
        source: where they came from (shown by the commands).
    """

    name = "splat-file"
    pinhole_only = True

    def __init__(self, gaussians: Mapping[str, Tensor], settings: RasterSettings | None = None,
                 source: str = "") -> None:
        super().__init__()
        self.gaussians = nn.ParameterDict({key: nn.Parameter(torch.as_tensor(gaussians[key]).float().contiguous(),
                                                             requires_grad=False) for key in GAUSSIAN_NAMES})
        count = self.gaussians["shN"].shape[1]
        self.sh_degree_in_use = math.isqrt(count + 1) - 1
        self.settings = settings or RasterSettings()
        self.source = source

    @property
    def n_gaussians(self) -> int:
        return int(self.gaussians["means"].shape[0])

    @torch.no_grad()
    def render(self, camera: Cameras, background: Tensor) -> dict[str, Tensor]:
        """Camera 0 of ``camera`` at its size: ``rgb`` (H, W, 3), ``depth`` (H, W) expected distance
        along the ray (not divided by alpha), ``alpha`` (H, W), on the CPU."""
        width, height = (int(v) for v in camera.sizes[0])
        device = self.gaussians["means"].device
        out = render_gaussians(dict(self.gaussians), camera.c2w[0].to(device), camera.intrinsics[0].to(device),
                               width, height, background.to(device), self.sh_degree_in_use, self.settings)
        return {key: out[key].cpu() for key in ("rgb", "depth", "alpha")}

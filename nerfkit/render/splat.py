"""Render Gaussians into one camera: gsplat's CUDA rasterizer when it can run, nerfkit's otherwise.

Both backends take the same parameters (gsplat naming) and return the same outputs, so the splat
method, its densification and the tests never ask which one ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.render.splat_project import project_gaussians, sh_colors
from nerfkit.render.splat_raster import bin_gaussians, rasterize


@dataclass
class RasterSettings:
    """How to rasterize (see :class:`nerfkit.runs.config.SplatConfig` for the meaning of each)."""

    near: float = 0.01
    eps2d: float = 0.3
    antialiased: bool = False
    backend: str = "auto"       # auto | nerfkit | gsplat
    tile_size: int = 8          # nerfkit backend: 8x8 tiles waste fewer pixel tests on the CPU than 16x16
    chunk: int = 32             # list entries per tile and round (nerfkit backend)


def gsplat_available(device: torch.device) -> bool:
    """True when ``device`` is CUDA and gsplat imports."""
    if device.type != "cuda":
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True


def choose_backend(settings: RasterSettings, device: torch.device) -> str:
    """``nerfkit`` or ``gsplat`` for tensors on ``device``."""
    if settings.backend == "nerfkit":
        return "nerfkit"
    if settings.backend == "gsplat":
        if not gsplat_available(device):
            raise NerfkitError("backend 'gsplat' needs a CUDA device and the gsplat package "
                               "(pip install 'nerfkit[cuda]'); use backend=auto or nerfkit")
        return "gsplat"
    if settings.backend != "auto":
        raise NerfkitError(f"unknown splat backend '{settings.backend}': expected auto, nerfkit or gsplat")
    return "gsplat" if gsplat_available(device) else "nerfkit"


def ray_length_per_depth(intrinsics: Tensor, width: int, height: int, device: torch.device) -> Tensor:
    """(H, W) factor turning camera z into distance along the pixel's ray: |((u-cx)/fx, (v-cy)/fy, 1)|."""
    fx, fy, cx, cy = intrinsics.tolist()
    u = (torch.arange(width, device=device, dtype=torch.float32) + 0.5 - cx) / fx
    v = (torch.arange(height, device=device, dtype=torch.float32) + 0.5 - cy) / fy
    return torch.sqrt(1.0 + u.unsqueeze(0) ** 2 + v.unsqueeze(1) ** 2)


def render_gaussians(gaussians: Mapping[str, Tensor], camera_to_world: Tensor, intrinsics: Tensor,
                     width: int, height: int, background: Tensor, sh_degree: int,
                     settings: RasterSettings, extra_features: Tensor | None = None) -> dict[str, object]:
    """Render one pinhole camera.

    Args:
        gaussians: ``means`` (N, 3), ``quats`` (N, 4), ``scales`` (N, 3) log std-devs,
            ``opacities`` (N,) logits, ``sh0`` (N, 1, 3), ``shN`` (N, K, 3).
        camera_to_world: (4, 4) OpenCV axes; intrinsics: (4,) fx, fy, cx, cy (pixels).
        background: (3,) colour behind the Gaussians.
        sh_degree: SH degree in use (0..3).
        extra_features: (N, K) per-Gaussian values composited like the colour (e.g. normals for a
            geometry regulariser), or None.
    Returns:
        ``rgb`` (H, W, 3), ``depth`` (H, W) expected distance along the ray (not normalised by
        alpha, as the NeRF methods), ``z`` (H, W) the same as camera z, ``alpha`` (H, W), and
        ``means2d`` (N, 2) (its gradient drives densification) and ``radii`` (N,) screen radius in
        pixels (0 = not visible); ``extra`` (H, W, K) with ``extra_features``.
    """
    device = gaussians["means"].device
    camera_to_world = camera_to_world.to(device=device, dtype=torch.float32)
    intrinsics = intrinsics.to(device=device, dtype=torch.float32)
    world_to_camera = torch.linalg.inv(camera_to_world)
    sh = torch.cat([gaussians["sh0"], gaussians["shN"]], 1)
    opacities = torch.sigmoid(gaussians["opacities"])
    if choose_backend(settings, device) == "gsplat":
        out = _render_gsplat(gaussians, sh, opacities, camera_to_world, world_to_camera, intrinsics, width,
                             height, sh_degree, settings, extra_features)
    else:
        out = _render_nerfkit(gaussians, sh, opacities, camera_to_world, world_to_camera, intrinsics, width,
                              height, sh_degree, settings, extra_features)
    features, alpha = out["features"], out["alpha"]
    rgb = features[..., :3] + (1.0 - alpha).unsqueeze(-1) * background.to(device)
    depth = features[..., 3] * ray_length_per_depth(intrinsics, width, height, device)
    result = {"rgb": rgb, "depth": depth, "z": features[..., 3], "alpha": alpha, "means2d": out["means2d"],
              "radii": out["radii"]}
    if extra_features is not None:
        result["extra"] = features[..., 4:]
    return result


def _render_nerfkit(gaussians: Mapping[str, Tensor], sh: Tensor, opacities: Tensor, camera_to_world: Tensor,
                    world_to_camera: Tensor, intrinsics: Tensor, width: int, height: int, sh_degree: int,
                    settings: RasterSettings, extra_features: Tensor | None) -> dict[str, Tensor]:
    projected = project_gaussians(gaussians["means"], gaussians["quats"], gaussians["scales"], opacities,
                                  world_to_camera, intrinsics, width, height, settings.near, settings.eps2d,
                                  settings.antialiased)
    colors = sh_colors(sh, gaussians["means"], camera_to_world[:3, 3], sh_degree)
    parts = [colors, projected.depths.unsqueeze(-1)] + ([] if extra_features is None else [extra_features])
    features = torch.cat(parts, -1)
    tiles = bin_gaussians(projected.means2d.detach(), projected.radii, projected.depths.detach(), width,
                          height, settings.tile_size)
    image, alpha = rasterize(projected.means2d, projected.conics, projected.opacities, features, tiles,
                             width, height, settings.chunk)
    return {"features": image, "alpha": alpha, "means2d": projected.means2d,
            "radii": projected.radii.amax(-1)}


def _render_gsplat(gaussians: Mapping[str, Tensor], sh: Tensor, opacities: Tensor, camera_to_world: Tensor,
                   world_to_camera: Tensor, intrinsics: Tensor, width: int, height: int, sh_degree: int,
                   settings: RasterSettings, extra_features: Tensor | None) -> dict[str, Tensor]:
    from gsplat import rasterization

    fx, fy, cx, cy = intrinsics.unbind(-1)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    k_matrix = torch.stack([torch.stack([fx, zero, cx]), torch.stack([zero, fy, cy]),
                            torch.stack([zero, zero, one])])
    colors, degree = sh, sh_degree
    if extra_features is not None:        # gsplat composites any feature channels without SH
        colors = torch.cat([sh_colors(sh, gaussians["means"], camera_to_world[:3, 3], sh_degree), extra_features], -1)
        degree = None
    features, alphas, meta = rasterization(
        gaussians["means"], gaussians["quats"], torch.exp(gaussians["scales"]), opacities, colors,
        world_to_camera[None], k_matrix[None], width, height, near_plane=settings.near,
        eps2d=settings.eps2d, sh_degree=degree, render_mode="RGB+D", packed=False,
        rasterize_mode="antialiased" if settings.antialiased else "classic")
    if extra_features is not None:        # RGB+D puts depth last: move it behind the colours
        k = extra_features.shape[-1]
        features = torch.cat([features[..., :3], features[..., -1:], features[..., 3:3 + k]], -1)
    radii = meta["radii"][0]
    if radii.ndim == 2:                 # gsplat >= 1.5 returns per-axis radii
        radii = radii.amax(-1)
    return {"features": features[0], "alpha": alphas[0, ..., 0], "means2d": meta["means2d"][0],
            "radii": radii.float()}

"""``nerfkit export mesh`` and ``nerfkit export pointcloud``: geometry of any run, in world coordinates.

Both use only the method protocol (``method.render(camera, background) -> {rgb, depth, alpha}``,
DESIGN.md "Contracts"), so they serve every method, NeRF and Gaussian splats alike:

- **mesh**: every selected view is rendered, its expected ray distance ``depth / alpha`` (the render
  gives ``sum_i w_i t_i`` with ``alpha = sum_i w_i``, not normalised) is trusted where
  ``alpha > 0.5`` and fused into a :class:`~nerfkit.export.tsdf.TSDFVolume` over the scene's box
  (Curless & Levoy 1996); marching cubes extracts the surface, small floating components are
  dropped, and the vertices are moved back to the ORIGINAL world coordinates (DESIGN.md,
  "Conventions") by the inverse of ``scene.world_to_scene``.
- **pointcloud**: one point per training pixel with ``alpha > 0.5`` at ``origin + direction * depth /
  alpha``, coloured by the rendered colour, subsampled to at most ``max_points``, in world
  coordinates.

Colours: views are rendered on white and un-composited, ``c = (rgb - (1 - alpha)) / alpha``, so
pixels at the silhouette (``0.5 < alpha < 1``) do not carry the background into the vertex colours.

Limitation: the TSDF projects voxels with a pinhole model, so cameras with lens distortion are
fused as if undistorted (the point cloud's rays do account for distortion).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfkit.data.normalize import transform_points
from nerfkit.errors import NerfkitError
from nerfkit.export.mesh_io import MESH_SUFFIXES, write_mesh
from nerfkit.export.tsdf import TSDFVolume, remove_small_components
from nerfkit.export.transform import invert_similarity

MESH_NAME = Path("exports") / "mesh.ply"
POINTCLOUD_NAME = Path("exports") / "pointcloud.ply"
"""Where the files go when no output is given, relative to the run folder."""

MIN_ALPHA = 0.5
"""Pixels less opaque than this carry no trusted depth."""

VIEW_SETS = ("train", "all")


@dataclass
class MeshExport:
    """What :func:`export_mesh` or :func:`export_pointcloud` wrote (``faces`` is 0 for a cloud)."""

    path: Path
    vertices: int
    faces: int
    views: int
    step: int
    seconds: float


@dataclass
class _View:
    """One rendered view, on the CPU: rgb un-composited from white, depth along the ray."""

    rgb: Tensor     # (H, W, 3) in [0, 1]
    depth: Tensor   # (H, W) distance along the ray; 0 where alpha <= MIN_ALPHA
    alpha: Tensor   # (H, W)


def export_mesh(run: Path, output: Path | None = None, resolution: int = 256, views: str = "train",
                min_component: float = 0.05) -> MeshExport:
    """Fuse the rendered depth of a run's views into a coloured mesh in world coordinates.

    Args:
        run: a run folder, or a folder above runs (its newest run).
        output: ``*.ply`` or ``*.obj``; None: ``<run folder>/exports/mesh.ply``.
        resolution: TSDF voxels along the longest side of the scene's box.
        views: ``"train"`` (the training cameras) or ``"all"`` (every camera of the scene).
        min_component: connected components with fewer than this fraction of the faces are dropped.
    Raises:
        NerfkitError: a bad option or output path, a run without checkpoint, or no surface found.
    """
    if views not in VIEW_SETS:
        raise NerfkitError(f"--views must be one of {', '.join(VIEW_SETS)}, got '{views}'")
    if resolution < 8:
        raise NerfkitError(f"--resolution must be at least 8, got {resolution}")
    if not 0.0 <= min_component < 1.0:
        raise NerfkitError(f"--min-component must be a fraction in [0, 1), got {min_component}")
    start = time.perf_counter()
    run_dir, path = _resolve_output(run, output, MESH_NAME, MESH_SUFFIXES)
    scene, method, step = _open(run_dir)
    indices = scene.split("train") if views == "train" else list(range(len(scene.cameras)))

    volume = TSDFVolume(scene.aabb.double().cpu().numpy(), resolution)
    for index in indices:
        view = _render(method, scene.cameras[index])
        camera = scene.cameras[index]
        volume.integrate(view.depth, view.alpha, view.rgb, camera.c2w[0], camera.intrinsics[0],
                         min_alpha=MIN_ALPHA)
    vertices, faces, colors = volume.extract_mesh()
    vertices, faces, kept = remove_small_components(vertices, faces, min_fraction=min_component)
    if len(faces) == 0:
        raise NerfkitError("the run rendered no surface dense enough to mesh (no view has an "
                           "opaque, consistent depth inside the scene box): train longer or try "
                           "--views all or a higher --resolution")
    colors = colors[kept]
    write_mesh(path, _to_world(vertices, scene.world_to_scene), faces, colors)
    return MeshExport(path, len(vertices), len(faces), len(indices), step, time.perf_counter() - start)


def export_pointcloud(run: Path, output: Path | None = None, max_points: int = 1_000_000,
                      seed: int = 0) -> MeshExport:
    """Points on the rendered depth of a run's training views, coloured, in world coordinates.

    Args:
        run: a run folder, or a folder above runs (its newest run).
        output: ``*.ply``; None: ``<run folder>/exports/pointcloud.ply``.
        max_points: at most this many points are kept (a uniform random subset, seeded by ``seed``).
    Raises:
        NerfkitError: a bad option or output path, a run without checkpoint, or no opaque pixel.
    """
    from nerfkit.cameras import generate_rays, image_pixels

    if max_points < 1:
        raise NerfkitError(f"--max-points must be at least 1, got {max_points}")
    start = time.perf_counter()
    run_dir, path = _resolve_output(run, output, POINTCLOUD_NAME, (".ply",))
    scene, method, step = _open(run_dir)
    indices = scene.split("train")
    points, colors = [], []
    for index in indices:
        view = _render(method, scene.cameras[index])
        height, width = view.depth.shape
        mask = (view.alpha.reshape(-1) > MIN_ALPHA) & (view.depth.reshape(-1) > 0)
        if not bool(mask.any()):
            continue
        pixels = image_pixels(width, height)[mask]
        camera_ids = torch.full((len(pixels),), index, dtype=torch.long)
        origins, directions = generate_rays(scene.cameras, camera_ids, pixels)
        points.append(origins.double() + directions.double() * view.depth.reshape(-1)[mask, None].double())
        colors.append(view.rgb.reshape(-1, 3)[mask])
    if not points:
        raise NerfkitError("the run rendered no opaque pixel in its training views, so there are no "
                           "points to write: train longer")
    xyz, rgb = torch.cat(points), torch.cat(colors)
    if len(xyz) > max_points:
        keep = torch.randperm(len(xyz), generator=torch.Generator().manual_seed(seed))[:max_points]
        keep = keep.sort().values
        xyz, rgb = xyz[keep], rgb[keep]
    rgb8 = (rgb * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    write_mesh(path, _to_world(xyz.numpy(), scene.world_to_scene), np.zeros((0, 3), np.int64), rgb8)
    return MeshExport(path, len(xyz), 0, len(indices), step, time.perf_counter() - start)


def _resolve_output(run: Path, output: Path | None, default: Path,
                    suffixes: tuple[str, ...]) -> tuple[Path, Path]:
    """(run folder, output path), the output checked before any expensive work."""
    from nerfkit.runs import resolve_run

    if output is not None:
        _check_output(Path(output), suffixes)
    run_dir = resolve_run(Path(run))
    path = Path(output) if output is not None else run_dir / default
    _check_output(path, suffixes)
    return run_dir, path


def _check_output(path: Path, suffixes: tuple[str, ...]) -> None:
    if path.suffix.lower() not in suffixes:
        raise NerfkitError(f"'{path}' has an unknown extension for this export: expected "
                           f"{' or '.join(suffixes)}")
    if path.is_dir():
        raise NerfkitError(f"output '{path}' is a folder: expected a file path, e.g. "
                           f"-o {path / ('out' + suffixes[0])}")


def _open(run_dir: Path):
    from nerfkit.pipeline import open_run

    _, scene, method, step = open_run(run_dir)
    return scene, method, step


@torch.no_grad()
def _render(method, camera) -> _View:
    """Render ``camera`` on white; colour un-composited, depth normalised by alpha (0 where not)."""
    out = method.render(camera, torch.ones(3))
    alpha = out["alpha"].detach().float().cpu()
    rgb = out["rgb"].detach().float().cpu()
    safe = alpha.clamp(min=1e-6)
    opaque = alpha > MIN_ALPHA
    depth = torch.where(opaque, out["depth"].detach().float().cpu() / safe, torch.zeros_like(alpha))
    rgb = ((rgb - (1.0 - alpha[..., None])) / safe[..., None]).clamp(0.0, 1.0)
    return _View(rgb, depth, alpha)


def _to_world(points: np.ndarray, world_to_scene: Tensor) -> np.ndarray:
    """(N, 3) scene coordinates -> (N, 3) float64 original world coordinates."""
    scene_to_world = invert_similarity(world_to_scene.double().cpu())
    return transform_points(scene_to_world, torch.as_tensor(np.asarray(points, np.float64))).numpy()

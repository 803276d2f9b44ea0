"""``nerfkit export mesh`` and ``nerfkit export pointcloud``: geometry of any run, in world coordinates.

Both use only the method protocol (``method.render(camera, background) -> {rgb, depth, alpha}``,
DESIGN.md "Contracts"), so they serve every method, NeRF and Gaussian splats alike:

- **mesh**: every selected view is rendered, its expected ray distance ``depth / alpha`` (the render
  gives ``sum_i w_i t_i`` with ``alpha = sum_i w_i``, not normalised) is trusted where
  ``alpha > 0.5`` and fused into a :class:`~nerfkit.export.tsdf.TSDFVolume` over the crop box
  (default: the scene's box) (Curless & Levoy 1996). Fusion only visits the thin band of voxels
  around the rendered surface points (:meth:`~nerfkit.export.tsdf.TSDFVolume.band_voxels`), which
  is where any view can change a value. Marching cubes extracts the surface, small floating
  components are dropped, holes are capped (bounded scenes), the mesh is optionally decimated to a face count (quadric collapse) and,
  for ``--texture``, unwrapped into a UV atlas with a texture baked from the views
  (:mod:`~nerfkit.export.texture`). The vertices are moved back to the ORIGINAL world coordinates
  (DESIGN.md, "Conventions") by the inverse of ``scene.world_to_scene``.
- **pointcloud**: for NeRF methods one point per training pixel with ``alpha > 0.5`` at ``origin +
  direction * depth / alpha``, coloured by the rendered colour; for splat runs the Gaussians'
  centres with their base colour; subsampled to at most ``max_points``, in world coordinates.

Colours: views are rendered on white and un-composited, ``c = (rgb - (1 - alpha)) / alpha``, so
pixels at the silhouette (``0.5 < alpha < 1``) do not carry the background into the vertex colours.

Limitation: the TSDF projects voxels with a pinhole model, so cameras with lens distortion are
fused as if undistorted (the point cloud's rays do account for distortion).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from nerfkit.data.normalize import transform_points
from nerfkit.errors import NerfkitError
from nerfkit.export.holes import fill_holes
from nerfkit.export.mesh_io import MESH_SUFFIXES, write_mesh
from nerfkit.export.simplify import decimate, remove_degenerate_faces
from nerfkit.export.texture import ViewImage, bake_texture, face_normals, rasterize_atlas, unwrap
from nerfkit.export.tsdf import TSDFVolume, remove_small_components
from nerfkit.export.transform import invert_similarity

MESH_NAME = Path("exports") / "mesh.ply"
POINTCLOUD_NAME = Path("exports") / "pointcloud.ply"
"""Where the files go when no output is given, relative to the run folder."""

MIN_ALPHA = 0.5
"""Pixels less opaque than this carry no trusted depth."""

MIN_POINT_OPACITY = 0.1
"""Gaussians less opaque than this are left out of a splat run's point cloud."""

VIEW_SETS = ("train", "all")


@dataclass
class MeshOptions:
    """What ``nerfkit export mesh`` builds (the CLI flags of the same names).

    ``crop``: ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in the scene's ORIGINAL world coordinates
    and units, or None for the scene's box. ``max_views``: fuse at most this many of the selected
    views, evenly spread over them (0: all). ``faces``: decimate to about this many faces (0: keep
    every face). ``texture``: an .obj with a UV atlas and a ``texture_size``-square baked .png.
    ``fill_holes``: cap the holes left where no view saw the surface (:mod:`~nerfkit.export.holes`);
    None: for bounded scenes (objects), not for unbounded ones (whose open edges are the world's).
    """

    resolution: int = 256
    views: str = "train"
    max_views: int = 0
    min_component: float = 0.05
    crop: tuple[float, ...] | None = None
    faces: int = 0
    texture: bool = False
    texture_size: int = 2048
    fill_holes: bool | None = None

    def fill(self, scene) -> bool:
        """Whether holes are capped: ``fill_holes``, or (None) for bounded scenes only."""
        return (not scene.unbounded) if self.fill_holes is None else bool(self.fill_holes)

    def check(self) -> None:
        """Raise NerfkitError naming the first bad option."""
        if self.views not in VIEW_SETS:
            raise NerfkitError(f"--views must be one of {', '.join(VIEW_SETS)}, got '{self.views}'")
        if self.resolution < 8:
            raise NerfkitError(f"--resolution must be at least 8, got {self.resolution}")
        if not 0.0 <= self.min_component < 1.0:
            raise NerfkitError(f"--min-component must be a fraction in [0, 1), got {self.min_component}")
        if self.max_views < 0:
            raise NerfkitError(f"--max-views must be 0 (all) or positive, got {self.max_views}")
        if self.faces != 0 and self.faces < 4:
            raise NerfkitError(f"--faces must be 0 (keep all) or at least 4, got {self.faces}")
        if not 64 <= self.texture_size <= 16384:
            raise NerfkitError(f"--texture-size must be between 64 and 16384 texels, got {self.texture_size}")
        if self.crop is not None:
            crop = np.asarray(self.crop, np.float64)
            if crop.shape != (6,) or not np.isfinite(crop).all():
                raise NerfkitError(f"--crop expects 6 finite numbers XMIN YMIN ZMIN XMAX YMAX ZMAX, "
                                   f"got {list(self.crop)}")
            if not (crop[:3] < crop[3:]).all():
                raise NerfkitError(f"--crop box {list(self.crop)} is empty: expected each minimum "
                                   f"(XMIN YMIN ZMIN) below its maximum (XMAX YMAX ZMAX)")


@dataclass
class MeshExport:
    """What :func:`export_mesh` or :func:`export_pointcloud` wrote (``faces`` is 0 for a cloud).

    ``paths``: every file written (the .obj, .mtl and .png of a textured mesh); ``timings``:
    seconds per stage (render, fuse, mesh, texture, write).
    """

    path: Path
    vertices: int
    faces: int
    views: int
    step: int
    seconds: float
    paths: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _View:
    """One rendered view, on the CPU: rgb un-composited from white, depth along the ray."""

    rgb: Tensor     # (H, W, 3) in [0, 1]
    depth: Tensor   # (H, W) distance along the ray; 0 where alpha <= MIN_ALPHA
    alpha: Tensor   # (H, W)


def export_mesh(run: Path, output: Path | None = None, options: MeshOptions | None = None,
                progress: bool = False) -> MeshExport:
    """Fuse the rendered depth of a run's views into a coloured mesh in world coordinates.

    Args:
        run: a run folder, or a folder above runs (its newest run).
        output: ``*.ply`` or ``*.obj``; None: ``<run folder>/exports/mesh.ply`` (``mesh.obj`` with
            a texture).
        options: see :class:`MeshOptions` (None: the defaults).
        progress: show a progress bar while rendering.
    Raises:
        NerfkitError: a bad option or output path, a run without checkpoint, or no surface found.
    """
    options = options or MeshOptions()
    options.check()
    start = time.perf_counter()
    timings: dict[str, float] = {}
    default = MESH_NAME.with_suffix(".obj") if options.texture else MESH_NAME
    run_dir, path = _resolve_output(run, output, default, MESH_SUFFIXES)
    if options.texture and path.suffix.lower() != ".obj":
        raise NerfkitError(f"--texture writes a UV atlas and a .png that only an .obj keeps: expected "
                           f"an .obj output, got '{path}'")
    scene, method, step = _open(run_dir)
    indices = _select_views(scene, options.views, options.max_views)
    world_box = np.asarray(options.crop, np.float64).reshape(2, 3) if options.crop is not None else None
    box = scene.aabb.double().cpu().numpy() if world_box is None else _scene_box(world_box, scene)

    clock = time.perf_counter()
    views = [_render(method, scene.cameras[index])
             for index in tqdm(indices, desc="render views", disable=not progress, leave=False)]
    timings["render"] = time.perf_counter() - clock

    clock = time.perf_counter()
    volume = TSDFVolume(box, options.resolution)
    points = torch.cat([_view_points(scene, index, view)[0] for index, view in zip(indices, views)])
    band = volume.band_voxels(points.float())
    if world_box is not None:
        band = band[_inside(_to_world(volume.voxel_centers(band).numpy(), scene.world_to_scene), world_box)]
    for index, view in zip(indices, views):
        camera = scene.cameras[index]
        volume.integrate(view.depth, view.alpha, view.rgb, camera.c2w[0], camera.intrinsics[0],
                         min_alpha=MIN_ALPHA, voxels=band)
    timings["fuse"] = time.perf_counter() - clock

    clock = time.perf_counter()
    vertices, faces, colors = volume.extract_mesh()
    vertices, faces, kept = remove_small_components(vertices, faces, min_fraction=options.min_component)
    if len(faces) == 0:
        where = "inside the crop box" if world_box is not None else "inside the scene box"
        raise NerfkitError(f"the run rendered no surface dense enough to mesh {where} (no view has an "
                           "opaque, consistent depth there): train longer, check --crop, or try "
                           "--views all or a higher --resolution")
    colors = colors[kept]
    if options.fill(scene):
        vertices, faces, colors = fill_holes(vertices, faces, colors)
    if options.faces:
        vertices, faces, colors = decimate(vertices, faces, colors, options.faces)
    vertices, faces, colors = remove_degenerate_faces(vertices, faces, colors)
    timings["mesh"] = time.perf_counter() - clock

    texture = {}
    if options.texture:
        clock = time.perf_counter()
        texture = _bake(vertices, faces, volume, scene, indices, views, options.texture_size)
        timings["texture"] = time.perf_counter() - clock
    clock = time.perf_counter()
    paths = write_mesh(path, _to_world(vertices, scene.world_to_scene), faces, colors, **texture)
    timings["write"] = time.perf_counter() - clock
    return MeshExport(path, len(vertices), len(faces), len(indices), step, time.perf_counter() - start,
                      paths, timings)


def export_pointcloud(run: Path, output: Path | None = None, max_points: int = 1_000_000,
                      seed: int = 0) -> MeshExport:
    """A coloured point cloud of a run, in world coordinates.

    NeRF methods: one point per opaque training pixel, on its rendered depth, with its rendered
    colour. Splat runs (methods with ``gaussians``): the centres of the Gaussians at least
    :data:`MIN_POINT_OPACITY` opaque, coloured by their view-independent (degree 0 SH) colour.

    Args:
        run: a run folder, or a folder above runs (its newest run).
        output: ``*.ply``; None: ``<run folder>/exports/pointcloud.ply``.
        max_points: at most this many points are kept (a uniform random subset, seeded by ``seed``).
    Raises:
        NerfkitError: a bad option or output path, a run without checkpoint, or no point at all.
    """
    if max_points < 1:
        raise NerfkitError(f"--max-points must be at least 1, got {max_points}")
    start = time.perf_counter()
    run_dir, path = _resolve_output(run, output, POINTCLOUD_NAME, (".ply",))
    scene, method, step = _open(run_dir)
    gaussians = getattr(method, "gaussians", None)
    if gaussians is not None:
        xyz, rgb = _gaussian_points(gaussians)
        views = 0
    else:
        indices = scene.split("train")
        points, colors = [], []
        for index in indices:
            view_xyz, view_rgb = _view_points(scene, index, _render(method, scene.cameras[index]))
            points.append(view_xyz)
            colors.append(view_rgb)
        xyz, rgb = torch.cat(points), torch.cat(colors)
        views = len(indices)
    if len(xyz) == 0:
        raise NerfkitError("the run rendered no opaque pixel in its training views, so there are no "
                           "points to write: train longer")
    if len(xyz) > max_points:
        keep = torch.randperm(len(xyz), generator=torch.Generator().manual_seed(seed))[:max_points]
        keep = keep.sort().values
        xyz, rgb = xyz[keep], rgb[keep]
    rgb8 = (rgb * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    paths = write_mesh(path, _to_world(xyz.numpy(), scene.world_to_scene), np.zeros((0, 3), np.int64), rgb8)
    return MeshExport(path, len(xyz), 0, views, step, time.perf_counter() - start, paths)


def _gaussian_points(gaussians) -> tuple[Tensor, Tensor]:
    """Centres (P, 3) float64 scene coordinates and degree-0 colours (P, 3) in [0, 1] of the
    Gaussians with opacity >= MIN_POINT_OPACITY."""
    from nerfkit.methods.splat import SH_C0      # colour = SH_C0 * sh0 + 0.5

    with torch.no_grad():
        opaque = torch.sigmoid(gaussians["opacities"].detach().float().cpu()) >= MIN_POINT_OPACITY
        means = gaussians["means"].detach().cpu().double()[opaque]
        dc = gaussians["sh0"].detach().float().cpu()[opaque, 0]
    return means, (dc * SH_C0 + 0.5).clamp(0.0, 1.0)


def _select_views(scene, views: str, max_views: int) -> list[int]:
    """The camera indices to fuse: a split or all, thinned evenly to ``max_views`` (0: all)."""
    indices = list(scene.split("train")) if views == "train" else list(range(len(scene.cameras)))
    if max_views and len(indices) > max_views:
        picks = np.unique(np.linspace(0, len(indices) - 1, max_views).round().astype(np.int64))
        indices = [indices[i] for i in picks]
    return indices


def _scene_box(world_box: np.ndarray, scene) -> np.ndarray:
    """(2, 3) world box -> (2, 3) scene-coordinate box around its 8 corners."""
    corners = np.array([[world_box[i, 0], world_box[j, 1], world_box[k, 2]]
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    mapped = transform_points(scene.world_to_scene.double().cpu(), torch.as_tensor(corners)).numpy()
    return np.stack([mapped.min(axis=0), mapped.max(axis=0)])


def _inside(points: np.ndarray, box: np.ndarray) -> torch.Tensor:
    """(N, 3) points, (2, 3) box -> (N,) bool tensor, True inside (borders included)."""
    return torch.as_tensor(((points >= box[0]) & (points <= box[1])).all(axis=-1))


def _view_points(scene, index: int, view: _View) -> tuple[Tensor, Tensor]:
    """Scene-coordinate points (P, 3) float64 and their colours (P, 3) of a view's opaque pixels."""
    from nerfkit.cameras import generate_rays, image_pixels

    height, width = view.depth.shape
    mask = (view.alpha.reshape(-1) > MIN_ALPHA) & (view.depth.reshape(-1) > 0)
    pixels = image_pixels(width, height)[mask]
    camera_ids = torch.full((len(pixels),), index, dtype=torch.long)
    origins, directions = generate_rays(scene.cameras, camera_ids, pixels)
    points = origins.double() + directions.double() * view.depth.reshape(-1)[mask, None].double()
    return points, view.rgb.reshape(-1, 3)[mask]


def _bake(vertices: np.ndarray, faces: np.ndarray, volume: TSDFVolume, scene, indices: list[int],
          views: list[_View], size: int) -> dict[str, np.ndarray]:
    """UV atlas + baked texture of a scene-coordinate mesh, as ``write_mesh`` keyword arguments."""
    atlas = unwrap(vertices, faces, size)
    samples = rasterize_atlas(atlas, vertices, faces, size)
    images = [ViewImage(view.rgb, view.depth, scene.cameras[index].c2w[0], scene.cameras[index].intrinsics[0])
              for index, view in zip(indices, views)]
    fallback = volume.sample_colors(samples.points)
    texture = bake_texture(samples, face_normals(vertices, faces), images, size,
                           tolerance=volume.truncation, fallback=fallback)
    return {"uvs": atlas.uvs, "face_uvs": atlas.face_uvs, "texture": texture}


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
    """Render ``camera`` on white; colour un-composited; depth the median depth where the method
    renders one, else the expected depth normalised by alpha; 0 where not opaque."""
    out = method.render(camera, torch.ones(3))
    alpha = out["alpha"].detach().float().cpu()
    rgb = out["rgb"].detach().float().cpu()
    safe = alpha.clamp(min=1e-6)
    opaque = alpha > MIN_ALPHA
    if "median_depth" in out:        # NeRFs: robust to haze and floaters (see Method.render)
        depth = torch.where(opaque, out["median_depth"].detach().float().cpu(), torch.zeros_like(alpha))
    else:
        depth = torch.where(opaque, out["depth"].detach().float().cpu() / safe, torch.zeros_like(alpha))
    rgb = ((rgb - (1.0 - alpha[..., None])) / safe[..., None]).clamp(0.0, 1.0)
    return _View(rgb, depth, alpha)


def _to_world(points: np.ndarray, world_to_scene: Tensor) -> np.ndarray:
    """(N, 3) scene coordinates -> (N, 3) float64 original world coordinates."""
    scene_to_world = invert_similarity(world_to_scene.double().cpu())
    return transform_points(scene_to_world, torch.as_tensor(np.asarray(points, np.float64))).numpy()

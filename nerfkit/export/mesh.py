"""Meshes of any method, in world coordinates: TSDF fusion of rendered depth (Curless & Levoy 1996).

Every selected view is rendered (:mod:`nerfkit.export.views`), its trusted depth is fused into a
:class:`~nerfkit.export.tsdf.TSDFVolume` over the crop box (default: the scene's box), visiting only
the thin band of voxels around the rendered surface points
(:meth:`~nerfkit.export.tsdf.TSDFVolume.band_voxels`), which is where any view can change a value.
Marching cubes extracts the surface, small floating components are dropped, holes are capped
(bounded scenes), the mesh is optionally decimated to a face count (quadric collapse) and, for
``texture``, unwrapped into a UV atlas with a texture baked from the views
(:mod:`~nerfkit.export.texture`). The vertices are moved back to the ORIGINAL world coordinates
(docs/design.md, "Conventions") by the inverse of ``scene.world_to_scene``.

Only the method contract is used (``render``), so this serves every method. Methods with a signed
distance field (:class:`~nerfkit.methods.capabilities.HasSDF`) are meshed from it instead: marching
cubes on its zero level set (:mod:`nerfkit.export.sdf_mesh`), vertex colours from the method's
colour field; the same clean-up, hole capping, decimation and texture follow.

The views are rendered through pinhole versions of the scene's cameras (distortion zeroed; a fisheye
becomes a pinhole of its focal length, which sees less than the fisheye) and fused with the same
pinhole model, so a lens's distortion cannot bend the fused surface.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings
from nerfkit.data.scene import Scene
from nerfkit.data.similarity import transform_points
from nerfkit.export import views as export_views
from nerfkit.export.holes import fill_holes
from nerfkit.export.mesh_io import write_mesh
from nerfkit.export.sdf_mesh import sample_sdf_grid, sdf_mesh
from nerfkit.export.simplify import decimate, remove_degenerate_faces
from nerfkit.export.texture import (ViewImage, bake_texture, face_normals, project_into_view, rasterize_atlas,
                                    unwrap)
from nerfkit.export.tsdf import TSDFVolume, remove_small_components
from nerfkit.export.views import MIN_ALPHA, View, to_world, view_points
from nerfkit.methods.base import Method, method_device
from nerfkit.methods.capabilities import HasSDF

VIEW_SETS = ("train", "all")
CULL_VIEWS = 25           # views rendered to cull an SDF mesh's unseen faces (unless max_views is set)
CULL_SIZE = 160           # ... at most this many pixels on their longer side


@dataclass
class MeshOptions(Settings):
    """What ``nerfkit export mesh`` builds (the CLI flags of the same names).

    ``crop``: ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in the scene's ORIGINAL world coordinates
    and units, or None for the scene's box. ``max_views``: fuse at most this many of the selected
    views, evenly spread over them (0: all). ``faces``: decimate to about this many faces (0: keep
    every face). ``texture``: an .obj with a UV atlas and a ``texture_size``-square baked .png.
    ``fill_holes``: cap the holes left where no view saw the surface (:mod:`~nerfkit.export.holes`);
    None: for bounded scenes (objects), not for unbounded ones (whose open edges are the world's).
    ``visible_only``: SDF meshes keep only the faces some selected view sees (at most
    ``CULL_VIEWS`` of them unless ``max_views`` says otherwise), as DTU's evaluation culls, so the
    guesses of the field where no camera looked (below an object's base) leave with them; TSDF
    meshes hold only what views saw anyway.
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
    visible_only: bool = True

    def fill(self, scene) -> bool:
        """Whether holes are capped: ``fill_holes``, or (None) for bounded scenes only."""
        return (not scene.unbounded) if self.fill_holes is None else bool(self.fill_holes)

    def validate(self) -> None:
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
class Mesh:
    """A mesh in the scene's ORIGINAL world coordinates, ready to write.

    Attributes:
        vertices: (V, 3) float64 world coordinates; faces: (F, 3) int64; colors: (V, 3) uint8.
        uvs, face_uvs, texture: the UV atlas (T, 2), (F, 3) and the baked (S, S, 3) uint8 texture
            (``texture`` option), else None.
        views: the number of views fused; timings: seconds per stage (render, fuse, mesh, texture).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    views: int
    uvs: np.ndarray | None = None
    face_uvs: np.ndarray | None = None
    texture: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def write(self, path: Path) -> list[Path]:
        """Write as .ply or .obj (+ .mtl and .png when textured); returns every file written."""
        texture = {} if self.texture is None else {"uvs": self.uvs, "face_uvs": self.face_uvs,
                                                   "texture": self.texture}
        return write_mesh(path, self.vertices, self.faces, self.colors, **texture)


def export_mesh(method: Method, scene: Scene, options: MeshOptions | None = None,
                progress: bool = False) -> Mesh:
    """Fuse the rendered depth of ``method``'s views of ``scene`` into a coloured world mesh.

    Args:
        options: see :class:`MeshOptions` (None: the defaults).
        progress: show a progress bar while rendering.
    Raises:
        NerfkitError: no surface dense enough to mesh in the box.
    """
    options = options or MeshOptions()
    if isinstance(method, HasSDF):
        return _export_sdf_mesh(method, scene, options, progress)
    timings: dict[str, float] = {}
    indices = _select_views(scene, options.views, options.max_views)
    world_box = np.asarray(options.crop, np.float64).reshape(2, 3) if options.crop is not None else None
    box = scene.aabb.double().cpu().numpy() if world_box is None else _scene_box(world_box, scene)

    clock = time.perf_counter()
    views = [export_views.render_view(method, scene.cameras[index].without_distortion())
             for index in tqdm(indices, desc="render views", disable=not progress, leave=False)]
    timings["render"] = time.perf_counter() - clock

    clock = time.perf_counter()
    volume = TSDFVolume(box, options.resolution)
    points = torch.cat([view_points(scene, index, view, scene.cameras[index].without_distortion())[0]
                        for index, view in zip(indices, views)])
    band = volume.band_voxels(points.float())
    if world_box is not None:
        band = band[_inside(to_world(volume.voxel_centers(band).numpy(), scene.world_to_scene), world_box)]
    for index, view in zip(indices, views):
        camera = scene.cameras[index].without_distortion()
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
        texture = _bake(vertices, faces, scene, indices, views, options.texture_size, volume.truncation,
                        volume.sample_colors)
        timings["texture"] = time.perf_counter() - clock
    return Mesh(to_world(vertices, scene.world_to_scene), faces, colors, len(indices), **texture,
                timings=timings)


def _export_sdf_mesh(method: HasSDF, scene: Scene, options: MeshOptions, progress: bool) -> Mesh:
    """Marching cubes on the method's SDF over the crop box; colours from its colour field."""
    timings: dict[str, float] = {}
    world_box = np.asarray(options.crop, np.float64).reshape(2, 3) if options.crop is not None else None
    box = scene.aabb.double().cpu().numpy() if world_box is None else _scene_box(world_box, scene)
    device = method_device(method)
    clock = time.perf_counter()
    values, origin, voxel = sample_sdf_grid(method.sdf, box, options.resolution, device)
    timings["sdf"] = time.perf_counter() - clock
    clock = time.perf_counter()
    vertices, faces = sdf_mesh(values, origin, voxel)
    if options.visible_only and len(faces):
        faces = faces[_seen_faces(method, scene, vertices, faces, options, 3.0 * voxel, progress)]
    vertices, faces, _ = remove_small_components(vertices, faces, min_fraction=options.min_component)
    if len(faces) == 0:
        where = "inside the crop box" if world_box is not None else "inside the scene box"
        raise NerfkitError(f"the run's signed distance field has no surface {where} (it does not change "
                           "sign there): train longer or check --crop")
    colors = _surface_colors(method, vertices, device)
    if options.fill(scene):
        vertices, faces, colors = fill_holes(vertices, faces, colors)
    if options.faces:
        vertices, faces, colors = decimate(vertices, faces, colors, options.faces)
    vertices, faces, colors = remove_degenerate_faces(vertices, faces, colors)
    timings["mesh"] = time.perf_counter() - clock
    texture, indices = {}, []
    if options.texture:
        clock = time.perf_counter()
        indices = _select_views(scene, options.views, options.max_views)
        views = [export_views.render_view(method, scene.cameras[index].without_distortion())
                 for index in tqdm(indices, desc="render views", disable=not progress, leave=False)]
        texture = _bake(vertices, faces, scene, indices, views, options.texture_size, 2.0 * voxel,
                        lambda points: _surface_colors(method, points, device))
        timings["texture"] = time.perf_counter() - clock
    return Mesh(to_world(vertices, scene.world_to_scene), faces, colors, len(indices), **texture,
                timings=timings)


def _seen_faces(method: Method, scene: Scene, vertices: np.ndarray, faces: np.ndarray, options: MeshOptions,
                tolerance: float, progress: bool) -> np.ndarray:
    """(F,) bool: the faces whose centre at least one selected view sees (rendered at most
    :data:`CULL_SIZE` pixels wide; visibility as in texture baking, depth within ``tolerance``)."""
    indices = _select_views(scene, options.views, options.max_views or CULL_VIEWS)
    centres = torch.as_tensor(vertices[faces].mean(1), dtype=torch.float32)
    seen = torch.zeros(len(faces), dtype=torch.bool)
    for index in tqdm(indices, desc="cull unseen faces", disable=not progress, leave=False):
        camera = scene.cameras[index].without_distortion()
        factor = max(1, int(math.ceil(int(camera.sizes[0].max()) / CULL_SIZE)))
        camera = camera.downscaled(factor) if factor > 1 else camera
        view = export_views.render_view(method, camera)
        image = ViewImage(view.rgb, view.depth, camera.c2w[0], camera.intrinsics[0])
        seen |= project_into_view(centres, image, tolerance + 2.0 * factor * _pixel_size(camera, centres))[3]
    return seen.numpy()


def _pixel_size(camera, points: Tensor) -> float:
    """A pixel's footprint in scene units at the points' median distance from the camera."""
    distance = float((points - camera.c2w[0, :3, 3]).norm(dim=-1).median()) if len(points) else 0.0
    return distance / float(camera.intrinsics[0, 0])


def _surface_colors(method: HasSDF, points: np.ndarray, device: torch.device) -> np.ndarray:
    """(N, 3) scene points -> (N, 3) uint8 colours of the method's colour field (chunked)."""
    tensor = torch.as_tensor(np.asarray(points, np.float32))
    rgb = [method.surface_colors(part.to(device)).float().cpu() for part in tensor.split(1 << 16)] or [torch.zeros(0, 3)]
    return (torch.cat(rgb).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


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


def _bake(vertices: np.ndarray, faces: np.ndarray, scene, indices: list[int], views: list[View], size: int,
          tolerance: float, fallback: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """UV atlas + baked texture of a scene-coordinate mesh, as ``write_mesh`` keyword arguments.

    ``fallback``: (N, 3) texel points -> (N, 3) uint8 colours where no view sees them; ``tolerance``:
    depth agreement for visibility (scene units)."""
    atlas = unwrap(vertices, faces, size)
    samples = rasterize_atlas(atlas, vertices, faces, size)
    images = [ViewImage(view.rgb, view.depth, scene.cameras[index].c2w[0], scene.cameras[index].intrinsics[0])
              for index, view in zip(indices, views)]
    texture = bake_texture(samples, face_normals(vertices, faces), images, size,
                           tolerance=tolerance, fallback=fallback(samples.points))
    return {"uvs": atlas.uvs, "face_uvs": atlas.face_uvs, "texture": texture}

"""Texture atlases for exported meshes: UV unwrapping (xatlas), rasterising the atlas, baking colour.

A textured export keeps the geometry of the mesh and adds

- a UV atlas from xatlas (Young, https://github.com/jpcy/xatlas): the surface cut into charts that
  are flattened and packed into the unit square without overlap, ``padding`` texels apart;
- a texture image whose every covered texel holds the colour of the surface point it maps to,
  taken from the views that see that point (see :func:`bake_texture`).

We use xatlas rather than our own unwrapper because charting and packing are a solved, fiddly
problem where xatlas is the reference (Blender, Godot and nvdiffrast pipelines use it).

Texture conventions are those of OBJ and Blender (see :mod:`nerfkit.export.mesh_io`): uv ``(0, 0)``
is the bottom-left corner of the image and row 0 of the image array is its top row, so the texel
in row ``r``, column ``c`` of a ``size x size`` image has its centre at
``u = (c + 0.5) / size``, ``v = 1 - (r + 0.5) / size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

DEFAULT_PADDING = 4
"""Texels between charts in the atlas; :func:`dilate_texture` fills them so that bilinear and
mip-mapped lookups at chart borders do not pick up the empty background."""


@dataclass
class UVAtlas:
    """Texture coordinates of a mesh: ``uvs`` (T, 2) float32 in [0, 1] and ``face_uvs`` (F, 3)
    int64, the uv index of each corner of each face (faces keep their order and vertices)."""

    uvs: np.ndarray
    face_uvs: np.ndarray


@dataclass
class TexelSamples:
    """The texels an atlas covers and the surface points they map to.

    ``rows``, ``cols``: (N,) int64 texel position; ``points``: (N, 3) float32 surface point (mesh
    coordinates); ``faces``: (N,) int64 index of the face the texel lies in.
    """

    rows: np.ndarray
    cols: np.ndarray
    points: np.ndarray
    faces: np.ndarray


@dataclass
class ViewImage:
    """One rendered view used for baking, in the mesh's coordinates.

    ``rgb`` (H, W, 3) float in [0, 1]; ``depth`` (H, W) distance along the ray from the camera
    centre (0 where nothing opaque was rendered); ``camera_to_world`` (4, 4) OpenCV axes;
    ``intrinsics`` (4,) ``fx, fy, cx, cy`` in pixels.
    """

    rgb: Tensor
    depth: Tensor
    camera_to_world: Tensor
    intrinsics: Tensor


def unwrap(vertices: np.ndarray, faces: np.ndarray, size: int,
           padding: int = DEFAULT_PADDING) -> UVAtlas:
    """A UV atlas of a triangle mesh for a ``size x size`` texture (xatlas charts + packing).

    Args:
        vertices: (V, 3) float.
        faces: (F, 3) int, F >= 1.
        size: texture width and height in texels.
        padding: texels between charts.
    Returns:
        The atlas; ``face_uvs[i]`` are the uv indices of the corners of ``faces[i]``, in order.
    """
    import xatlas  # only needed for textured exports

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(size)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    vertex_map, atlas_faces, uvs = atlas[0]
    # xatlas keeps the faces and their corner order; each atlas vertex copies an input vertex
    if not np.array_equal(vertex_map[atlas_faces].astype(np.int64), np.asarray(faces, np.int64)):
        raise RuntimeError("xatlas reordered the faces of the mesh; the UV atlas cannot be used")
    return UVAtlas(np.clip(uvs, 0.0, 1.0).astype(np.float32), atlas_faces.astype(np.int64))


def rasterize_atlas(atlas: UVAtlas, vertices: np.ndarray, faces: np.ndarray, size: int,
                    chunk: int = 1 << 16) -> TexelSamples:
    """Every texel whose centre lies in a face's uv triangle, with the surface point it maps to.

    Barycentric coordinates of the texel centre in the uv triangle interpolate the face's 3D
    corners. A texel on an edge shared by two faces goes to one of them (the later face).

    Args:
        atlas: from :func:`unwrap`.
        vertices: (V, 3) float; faces: (F, 3) int (the mesh the atlas was made for).
        size: texture width and height in texels.
        chunk: faces per step (bounds the temporary memory).
    """
    uv = atlas.uvs.astype(np.float64)
    # texel-centre coordinates: x = column, y = row (down), centre of texel (r, c) at (c, r)
    pixel = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=-1)
    corners_uv = pixel[atlas.face_uvs]                                    # (F, 3, 2)
    corners_xyz = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    rows, cols, points, face_ids = [], [], [], []
    for start in range(0, len(corners_uv), chunk):
        tri = corners_uv[start:start + chunk]
        low = np.clip(np.ceil(tri.min(axis=1) - 1e-9), 0, size - 1).astype(np.int64)
        high = np.clip(np.floor(tri.max(axis=1) + 1e-9), 0, size - 1).astype(np.int64)
        extent = np.maximum(high - low + 1, 0)
        counts = extent[:, 0] * extent[:, 1]
        face = np.repeat(np.arange(len(tri)), counts)
        if len(face) == 0:
            continue
        offset = np.arange(len(face)) - np.repeat(np.cumsum(counts) - counts, counts)
        x = low[face, 0] + offset % extent[face, 0]
        y = low[face, 1] + offset // extent[face, 0]
        bary = _barycentric(tri[face], np.stack([x, y], axis=-1).astype(np.float64))
        inside = (bary >= -1e-7).all(axis=-1)
        face, x, y, bary = face[inside], x[inside], y[inside], bary[inside]
        rows.append(y)
        cols.append(x)
        face_ids.append(face + start)
        points.append(np.einsum("nk,nkd->nd", bary, corners_xyz[start + face]))
    if not rows:
        empty = np.zeros(0, np.int64)
        return TexelSamples(empty, empty, np.zeros((0, 3), np.float32), empty)
    return TexelSamples(np.concatenate(rows), np.concatenate(cols),
                        np.concatenate(points).astype(np.float32), np.concatenate(face_ids))


def _barycentric(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3, 2) triangles, (N, 2) points -> (N, 3) barycentric coordinates (-1 for degenerate)."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    v0, v1, v2 = b - a, c - a, points - a
    det = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = np.abs(det) > 1e-12
    safe = np.where(ok, det, 1.0)
    beta = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / safe
    gamma = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / safe
    bary = np.stack([1.0 - beta - gamma, beta, gamma], axis=-1)
    return np.where(ok[:, None], bary, -1.0)


@torch.no_grad()
def bake_texture(samples: TexelSamples, normals: np.ndarray, views: list[ViewImage], size: int,
                 tolerance: float, fallback: np.ndarray, min_cosine: float = 0.1) -> np.ndarray:
    """The texture image: each covered texel coloured from the views that see its surface point.

    A view sees point ``x`` when ``x`` projects inside its image and the rendered depth at that
    pixel is within ``tolerance`` of ``|x - camera centre|`` (not occluded, not off the silhouette).
    Its colour is the bilinear lookup of the view's rgb, weighted by ``cos^2`` of the angle between
    the face normal and the direction to the camera (grazing views blur; views with cosine below
    ``min_cosine`` are not used). Texels that no view sees take ``fallback``. The empty texels
    around the charts are then filled by :func:`dilate_texture`.

    Args:
        samples: from :func:`rasterize_atlas`.
        normals: (F, 3) unit outward face normals of the mesh.
        views: the rendered views, in the mesh's coordinates.
        size: texture width and height.
        tolerance: depth agreement for visibility, in mesh units.
        fallback: (N, 3) uint8 colour per sample for texels no view sees.
        min_cosine: smallest cosine between normal and view direction that is used.
    Returns:
        (size, size, 3) uint8, row 0 at the top.
    """
    points = torch.as_tensor(samples.points, dtype=torch.float32)
    normal = torch.as_tensor(np.asarray(normals, np.float32)[samples.faces])
    color_sum = torch.zeros(len(points), 3)
    weight_sum = torch.zeros(len(points))
    for view in views:
        height, width = view.depth.shape
        u, v, offset, seen = project_into_view(points, view, tolerance)
        cosine = -(normal * offset).sum(dim=-1) / offset.norm(dim=-1).clamp(min=1e-12)
        seen &= cosine > min_cosine
        if not bool(seen.any()):
            continue
        grid = torch.stack([u / width * 2 - 1, v / height * 2 - 1], dim=-1)[seen]
        image = view.rgb.float().permute(2, 0, 1)[None]
        color = torch.nn.functional.grid_sample(image, grid[None, None], mode="bilinear",
                                                padding_mode="border", align_corners=False)
        weight = cosine[seen] ** 2
        color_sum[seen] += color[0, :, 0].T * weight[:, None]
        weight_sum[seen] += weight
    baked = (color_sum / weight_sum.clamp(min=1e-12)[:, None] * 255.0).round().clamp(0, 255)
    colors = np.where((weight_sum > 0).numpy()[:, None], baked.to(torch.uint8).numpy(),
                      np.asarray(fallback, np.uint8))
    texture = np.zeros((size, size, 3), np.uint8)
    filled = np.zeros((size, size), bool)
    texture[samples.rows, samples.cols] = colors
    filled[samples.rows, samples.cols] = True
    return dilate_texture(texture, filled, DEFAULT_PADDING)


def project_into_view(points: Tensor, view: ViewImage, tolerance: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Where (N, 3) points land in a view, and whether the view sees them.

    A view sees a point when it is in front of the camera, projects inside the image, and the
    rendered depth at that pixel is within ``tolerance`` of its distance from the camera centre (not
    occluded, not off the silhouette).

    Returns:
        u, v (N,) pixel coordinates, the offsets from the camera centre (N, 3), and ``seen`` (N,) bool.
    """
    c2w = view.camera_to_world.float()
    rotation, centre = c2w[:3, :3], c2w[:3, 3]
    fx, fy, cx, cy = (float(value) for value in view.intrinsics.reshape(4))
    height, width = view.depth.shape
    offset = points.float() - centre
    distance = offset.norm(dim=-1)
    local = offset @ rotation
    z = local[:, 2]
    in_front = z > 1e-6
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    u = fx * local[:, 0] / z_safe + cx
    v = fy * local[:, 1] / z_safe + cy
    seen = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    pixel = v.long().clamp(0, height - 1) * width + u.long().clamp(0, width - 1)
    observed = view.depth.reshape(-1).float()[pixel]
    seen &= (observed > 0) & ((observed - distance).abs() < tolerance)
    return u, v, offset, seen


def dilate_texture(texture: np.ndarray, filled: np.ndarray, iterations: int) -> np.ndarray:
    """Grow the filled texels into the empty ones around them, ``iterations`` texels deep.

    Each round, every empty texel with filled 4-neighbours takes their mean colour. Texels further
    than ``iterations`` from any filled one stay as they are (black).

    Args:
        texture: (H, W, 3) uint8.
        filled: (H, W) bool, the texels that hold colour.
    Returns:
        (H, W, 3) uint8, a new array.
    """
    image = texture.astype(np.float32)
    filled = filled.copy()
    for _ in range(iterations):
        color = np.pad(image * filled[..., None], ((1, 1), (1, 1), (0, 0)))
        mask = np.pad(filled, 1).astype(np.float32)
        total = color[:-2, 1:-1] + color[2:, 1:-1] + color[1:-1, :-2] + color[1:-1, 2:]
        count = mask[:-2, 1:-1] + mask[2:, 1:-1] + mask[1:-1, :-2] + mask[1:-1, 2:]
        grow = ~filled & (count > 0)
        if not grow.any():
            break
        image[grow] = total[grow] / count[grow][:, None]
        filled |= grow
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3), (F, 3) -> (F, 3) unit normals ``(v1 - v0) x (v2 - v0)`` (zero for degenerate faces)."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    return (normal / np.maximum(length, 1e-30)).astype(np.float32)

"""Meshes from rendered depth: TSDF fusion, marching cubes, clean-up and geometric metrics.

Every method renders ``{rgb, depth, alpha}`` (docs/design.md, "Contracts"), so fusing rendered depth maps
into a truncated signed distance volume gives one mesh exporter for all of them, the Gaussian
splats included (they have no density field to threshold).

Fusion follows Curless & Levoy, "A Volumetric Method for Building Complex Models from Range Images",
SIGGRAPH 1996 (Sec. 3, Eq. 1-2): each observation gives, per voxel, a signed distance ``d`` to the
observed surface measured along the viewing ray, and the voxel keeps the weighted running average

    D <- (W D + w d) / (W + w),    W <- W + w,

with ``w = 1`` here. Distances are truncated to ``[-truncation, +truncation]``; voxels further than
``truncation`` behind the observed surface are left alone (occluded, nothing is known about them).
The surface is the zero level set of ``D``, extracted by marching cubes (Lorensen & Cline 1987, in
the Lewiner et al. 2003 variant of ``skimage.measure.marching_cubes``).

Sign convention: ``D > 0`` in front of the surface (free space, outside), ``D < 0`` behind it
(inside). Faces come out wound counter-clockwise seen from outside, so ``(v1 - v0) x (v2 - v0)``
points outward (checked on a sphere in ``tests/export/test_tsdf.py``).

Example (a shifted copy of a point set is at Chamfer distance equal to the shift):

    >>> import numpy as np
    >>> a = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    >>> [round(x, 3) for x in chamfer_distance(a, a + [0.0, 0.1, 0.0])]
    [0.1, 0.1, 0.1]
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

DEFAULT_TRUNCATION_VOXELS = 4.0
"""Default truncation distance, in voxels (Curless & Levoy use a few voxels: enough to average
noisy depth, small enough that thin structures are not merged)."""

DEFAULT_CHUNK = 1 << 18
"""Voxels projected per step in :meth:`TSDFVolume.integrate` (bounds the temporary memory)."""


class TSDFVolume:
    """A dense truncated-signed-distance volume over an axis-aligned box, fused from depth maps.

    The box ``bbox = [[xmin, ymin, zmin], [xmax, ymax, zmax]]`` (scene units) is cut into cubic
    voxels of edge ``voxel_size = max(extent) / resolution``; the grid has
    ``dims = ceil(extent / voxel_size)`` voxels per axis, starting at ``bbox[0]`` (so on the shorter
    axes it may reach up to one voxel past ``bbox[1]``). Voxel ``(i, j, k)`` (indexing x, y, z in
    that order) has its centre at ``bbox[0] + (i + 0.5, j + 0.5, k + 0.5) * voxel_size``.

    Grids (torch, on ``device``):

    - ``tsdf``: ``dims`` float32, signed distance in scene units, clipped to ``[-truncation,
      truncation]``, positive in front of the surface; ``+truncation`` where never observed.
    - ``weight``: ``dims`` float32, the number of observations fused into ``tsdf``.
    - ``color_sum``: ``dims + (3,)`` float32, the sum of observed RGB in ``[0, 1]`` over the
      observations with ``|sdf| < truncation``; ``color_weight``: ``dims`` float32, their number.

    Args:
        bbox: (2, 3) box in scene coordinates.
        resolution: voxels along the longest side of the box.
        truncation: truncation distance in scene units; default ``DEFAULT_TRUNCATION_VOXELS`` (4)
            voxels.
        device: where the grids live (integration runs there).
    """

    def __init__(self, bbox: ArrayLike, resolution: int, truncation: float | None = None,
                 device: torch.device | str = "cpu") -> None:
        box = torch.as_tensor(np.asarray(bbox, dtype=np.float64)).reshape(2, 3)
        extent = box[1] - box[0]
        if not bool((extent > 0).all()):
            raise ValueError(f"bbox must have positive extent on every axis, got {box.tolist()}")
        if resolution < 2:
            raise ValueError(f"resolution must be at least 2, got {resolution}")
        self.device = torch.device(device)
        self.origin = box[0].clone()                              # float64 (3,)
        self.voxel_size = float(extent.max()) / resolution
        self.dims = tuple(max(2, math.ceil(float(e) / self.voxel_size - 1e-9)) for e in extent)
        self.truncation = (DEFAULT_TRUNCATION_VOXELS * self.voxel_size if truncation is None
                           else float(truncation))
        if self.truncation <= 0:
            raise ValueError(f"truncation must be positive, got {self.truncation}")
        kwargs = {"dtype": torch.float32, "device": self.device}
        self.tsdf = torch.full(self.dims, self.truncation, **kwargs)
        self.weight = torch.zeros(self.dims, **kwargs)
        self.color_sum = torch.zeros(self.dims + (3,), **kwargs)
        self.color_weight = torch.zeros(self.dims, **kwargs)

    @property
    def num_voxels(self) -> int:
        return self.dims[0] * self.dims[1] * self.dims[2]

    def voxel_centers(self, flat_index: Tensor) -> Tensor:
        """(N,) int64 flat indices (C order over ``dims``) -> (N, 3) float32 scene coordinates."""
        ny_nz = self.dims[1] * self.dims[2]
        ijk = torch.stack([flat_index // ny_nz, (flat_index // self.dims[2]) % self.dims[1],
                           flat_index % self.dims[2]], dim=-1)
        origin = self.origin.to(device=flat_index.device, dtype=torch.float32)
        return origin + (ijk.to(torch.float32) + 0.5) * self.voxel_size

    @torch.no_grad()
    def integrate(self, depth: ArrayLike, alpha: ArrayLike | None, rgb: ArrayLike,
                  camera_to_world: ArrayLike, intrinsics: ArrayLike, min_alpha: float = 0.5,
                  chunk: int = DEFAULT_CHUNK, voxels: Tensor | None = None) -> None:
        """Fuse one rendered view (Curless & Levoy 1996, Eq. 1-2, weight 1 per observation).

        Every voxel centre is projected into the camera at image point ``(u, v)``. Pixel ``(i, j)``
        covers ``[j, j + 1) x [i, i + 1)`` in image coordinates and its depth is sampled at its
        centre ``(j + 0.5, i + 0.5)``; the observed distance at ``(u, v)`` is the bilinear
        interpolation of the 4 surrounding pixel centres, used only when all 4 are valid and agree
        within ``truncation`` (no blending across silhouettes or occlusion edges, where one
        nearest pixel would put inner voxels in front of the surface). The voxel's signed distance
        is ``sdf = observed - |x_voxel - camera_centre|``: both are distances from the camera centre
        along the ray, so ``depth`` must be the distance ALONG THE RAY, not the z coordinate.
        Pixels with ``depth <= 0`` or ``alpha < min_alpha`` are invalid, and voxels with
        ``sdf < -truncation`` (occluded) are skipped. The others get ``min(sdf, truncation)``
        averaged into ``tsdf``; those with ``|sdf| < truncation`` also add the colour of the pixel
        they fall in.

        NeRF renders give the alpha-weighted expected distance ``sum_i w_i t_i`` (``alpha = sum_i
        w_i``), which is NOT normalised: pass ``depth / alpha`` (where ``alpha > 0``) as ``depth``.

        Args:
            depth: (H, W) distance along the ray from the camera centre, scene units.
            alpha: (H, W) accumulated opacity in [0, 1], or None (every pixel with depth > 0 used).
            rgb: (H, W, 3) colour in [0, 1].
            camera_to_world: (4, 4) (or (3, 4)) camera-to-world, OpenCV axes (x right, y down,
                z forward).
            intrinsics: (4,) ``fx, fy, cx, cy`` in pixels.
            min_alpha: pixels less opaque than this are not trusted.
            chunk: voxels per step.
            voxels: (K,) int64 flat indices (C order over ``dims``) of the only voxels to update,
                e.g. :meth:`band_voxels`; None: every voxel. Fusing every view over the band around
                all observed surfaces gives the same values there as dense fusion, and the voxels
                outside it stay unobserved (weight 0), which marching cubes skips.
        """
        kw = {"dtype": torch.float32, "device": self.device}
        depth = _as_tensor(depth).to(**kw)
        if depth.ndim != 2:
            raise ValueError(f"depth must be (H, W), got {tuple(depth.shape)}")
        height, width = depth.shape
        rgb = _as_tensor(rgb).to(**kw)
        if rgb.shape != (height, width, 3):
            raise ValueError(f"rgb must be ({height}, {width}, 3), got {tuple(rgb.shape)}")
        valid = depth > 0
        if alpha is not None:
            alpha = _as_tensor(alpha).to(**kw)
            if alpha.shape != (height, width):
                raise ValueError(f"alpha must be ({height}, {width}), got {tuple(alpha.shape)}")
            valid &= alpha >= min_alpha
        if not bool(valid.any()):
            return
        depth = torch.where(valid, depth, torch.zeros_like(depth)).reshape(-1)
        valid = valid.reshape(-1)
        rgb = rgb.reshape(-1, 3)
        c2w = _as_tensor(camera_to_world).to(**kw)
        rotation, centre = c2w[:3, :3], c2w[:3, 3]
        fx, fy, cx, cy = (float(value) for value in _as_tensor(intrinsics).reshape(4))

        tsdf, weight = self.tsdf.view(-1), self.weight.view(-1)
        color_sum, color_weight = self.color_sum.view(-1, 3), self.color_weight.view(-1)
        total = self.num_voxels if voxels is None else len(voxels)
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            index = (torch.arange(start, stop, device=self.device) if voxels is None
                     else voxels[start:stop].to(self.device))
            local = (self.voxel_centers(index) - centre) @ rotation   # R^T (x - c), row vectors
            z = local[:, 2]
            in_front = z > 1e-6
            z_safe = torch.where(in_front, z, torch.ones_like(z))
            u = fx * local[:, 0] / z_safe + cx
            v = fy * local[:, 1] / z_safe + cy
            # bilinear depth between the 4 pixel centres around (u, v); all 4 must be valid and
            # agree within the truncation (no interpolation across silhouettes or occlusions)
            x, y = u - 0.5, v - 0.5
            inside = in_front & (x >= 0) & (x < width - 1) & (y >= 0) & (y < height - 1)
            j0 = x.clamp(0, width - 2).floor().long().clamp_(0, width - 2)
            i0 = y.clamp(0, height - 2).floor().long().clamp_(0, height - 2)
            wx, wy = (x - j0).clamp(0, 1), (y - i0).clamp(0, 1)
            corners = torch.stack([i0 * width + j0, i0 * width + j0 + 1,
                                   (i0 + 1) * width + j0, (i0 + 1) * width + j0 + 1], dim=-1)
            d = depth[corners]
            ok = inside & valid[corners].all(dim=-1)
            ok &= (d.amax(dim=-1) - d.amin(dim=-1)) < self.truncation
            observed = ((1 - wy) * ((1 - wx) * d[:, 0] + wx * d[:, 1])
                        + wy * ((1 - wx) * d[:, 2] + wx * d[:, 3]))
            # colour from the pixel the voxel projects into (nearest)
            pixel = (v.floor().long().clamp_(0, height - 1) * width
                     + u.floor().long().clamp_(0, width - 1))
            sdf = observed - local.norm(dim=-1)
            ok &= sdf >= -self.truncation
            if not bool(ok.any()):
                continue
            index, pixel, sdf = index[ok], pixel[ok], sdf[ok]
            old_weight = weight[index]
            new_weight = old_weight + 1.0
            tsdf[index] = (tsdf[index] * old_weight + sdf.clamp(max=self.truncation)) / new_weight
            weight[index] = new_weight
            near = sdf.abs() < self.truncation
            color_sum[index[near]] += rgb[pixel[near]]
            color_weight[index[near]] += 1.0

    @torch.no_grad()
    def band_voxels(self, points: Tensor, margin: float | None = None) -> Tensor:
        """Flat indices of the voxels near any of ``points``: where fusion can change anything.

        A view changes only voxels within ``truncation`` of a surface point it observed (along
        its ray, so also in Euclidean distance), so passing every view's observed points here and
        the result to :meth:`integrate` restricts fusion to a thin shell around the surfaces. The
        neighbourhood is a box of half-width ``margin`` (default ``truncation`` plus 2 voxels, for
        the bilinear depth lookup), built by separable max-pooling of the points' voxels.

        Args:
            points: (N, 3) scene coordinates; points outside the volume are ignored.
            margin: half-width of the neighbourhood in scene units.
        Returns:
            (K,) int64 sorted flat indices (C order over ``dims``).
        """
        margin = self.truncation + 2.0 * self.voxel_size if margin is None else float(margin)
        radius = max(1, math.ceil(margin / self.voxel_size))
        dims = torch.tensor(self.dims, device=self.device)
        origin = self.origin.to(device=self.device, dtype=torch.float32)
        ijk = ((points.to(self.device, torch.float32) - origin) / self.voxel_size).floor().long()
        ijk = ijk[((ijk >= 0) & (ijk < dims)).all(dim=-1)]
        grid = torch.zeros(self.dims, dtype=torch.float32, device=self.device)
        grid[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = 1.0
        grid = grid[None, None]
        size = 2 * radius + 1
        for kernel in ((size, 1, 1), (1, size, 1), (1, 1, size)):
            padding = tuple(k // 2 for k in kernel)
            grid = torch.nn.functional.max_pool3d(grid, kernel, stride=1, padding=padding)
        return grid.reshape(-1).nonzero().squeeze(-1)

    @torch.no_grad()
    def extract_mesh(self, min_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Marching cubes on the zero level of the fused TSDF.

        Only cubes whose 8 corner voxels all have ``weight >= min_weight`` are meshed (so no surface
        appears between observed and never-observed voxels). Vertices are mapped from voxel
        indices to scene coordinates; colours are the trilinear interpolation of the averaged
        voxel colours (over corners with a colour observation).

        Returns:
            vertices: (V, 3) float32 scene coordinates.
            faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside (outward normal
                ``(v1 - v0) x (v2 - v0)``).
            colors: (V, 3) uint8 RGB.
            All three empty (with these shapes) when nothing with a zero crossing is observed.
        """
        from skimage.measure import marching_cubes  # only needed here

        empty = (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.uint8))
        observed = (self.weight >= min_weight).cpu().numpy()
        # skimage (checked with 0.26) tests the mask once per cube, at the cube's LAST corner
        # (x, y, z) for the cube [x-1, x] x [y-1, y] x [z-1, z]; a cube is meshed only when all 8
        # of its corners are observed.
        all_corners = np.ones(tuple(n - 1 for n in observed.shape), bool)
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    all_corners &= observed[dx:observed.shape[0] - 1 + dx, dy:observed.shape[1] - 1 + dy,
                                            dz:observed.shape[2] - 1 + dz]
        cube_ok = np.zeros_like(observed)
        cube_ok[1:, 1:, 1:] = all_corners
        if not cube_ok.any():
            return empty
        volume = self.tsdf.cpu().numpy()
        corner_values = volume[observed]
        if corner_values.min() >= 0 or corner_values.max() <= 0:
            return empty
        try:
            # D increases outward ("ascent"): with that flag skimage winds faces counter-clockwise
            # seen from the positive side, i.e. outward normals.
            verts, faces, _, _ = marching_cubes(volume, level=0.0, mask=cube_ok,
                                                gradient_direction="descent", allow_degenerate=False)
        except (ValueError, RuntimeError):
            return empty
        if len(faces) == 0:
            return empty
        colors = self._sample_colors(verts)
        origin = self.origin.numpy()
        vertices = (origin + (verts.astype(np.float64) + 0.5) * self.voxel_size).astype(np.float32)
        return vertices, faces.astype(np.int64), colors

    def sample_colors(self, points: ArrayLike) -> np.ndarray:
        """(N, 3) scene coordinates -> (N, 3) uint8 fused colour, trilinear over observed voxels
        (mid grey where no voxel around the point has a colour)."""
        coords = (np.asarray(points, np.float64) - self.origin.numpy()) / self.voxel_size - 0.5
        return self._sample_colors(coords)

    def _sample_colors(self, verts: np.ndarray) -> np.ndarray:
        """(V, 3) voxel-index coordinates -> (V, 3) uint8, trilinear over colour-observed corners."""
        mean = (self.color_sum / self.color_weight.clamp(min=1.0)[..., None]).cpu().numpy()
        seen = (self.color_weight > 0).cpu().numpy().astype(np.float64)
        dims = np.array(self.dims)
        base = np.clip(np.floor(verts).astype(np.int64), 0, dims - 2)
        frac = np.clip(verts - base, 0.0, 1.0)
        total = np.zeros((len(verts), 3))
        total_w = np.zeros(len(verts))
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    i, j, k = base[:, 0] + dx, base[:, 1] + dy, base[:, 2] + dz
                    w = ((frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
                         * (frac[:, 2] if dz else 1 - frac[:, 2])) * seen[i, j, k]
                    total += w[:, None] * mean[i, j, k]
                    total_w += w
        rgb = np.where(total_w[:, None] > 0, total / np.maximum(total_w, 1e-12)[:, None], 0.5)
        return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _as_tensor(value: ArrayLike) -> Tensor:
    return value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))


def remove_small_components(vertices: ArrayLike, faces: ArrayLike, min_fraction: float = 0.05,
                            min_faces: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop connected components (faces connected through shared vertices) with too few faces.

    Args:
        vertices: (V, 3).
        faces: (F, 3) integer.
        min_fraction: a component is kept when it has at least ``min_fraction * F`` faces.
        min_faces: if given, used as the threshold instead of ``min_fraction``.
    Returns:
        vertices: (V', 3) the vertices still used, in their original order.
        faces: (F', 3) int64, re-indexed into the new vertices.
        keep_vertex_index: (V',) int64 original index of each kept vertex (to carry colours along).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    vertices = np.asarray(vertices)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return vertices[:0], faces, np.zeros(0, np.int64)
    threshold = min_faces if min_faces is not None else min_fraction * len(faces)
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(len(vertices),) * 2)
    _, labels = connected_components(graph, directed=False)
    face_label = labels[faces[:, 0]]
    faces_per_label = np.bincount(face_label, minlength=labels.max() + 1)
    kept_faces = faces[faces_per_label[face_label] >= threshold]
    keep_vertex_index = np.unique(kept_faces)
    remap = np.full(len(vertices), -1, np.int64)
    remap[keep_vertex_index] = np.arange(len(keep_vertex_index))
    return vertices[keep_vertex_index], remap[kept_faces], keep_vertex_index


def chamfer_distance(points_a: ArrayLike, points_b: ArrayLike) -> tuple[float, float, float]:
    """Mean nearest-neighbour distances between two point sets (not squared).

    Args:
        points_a: (N, 3).
        points_b: (M, 3).
    Returns:
        ``(mean_ab, mean_ba, mean)``: mean over ``a`` of the distance to the nearest ``b``, the
        reverse, and their average (the symmetric Chamfer distance).
    """
    from scipy.spatial import cKDTree

    a, b = np.asarray(points_a, np.float64), np.asarray(points_b, np.float64)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("chamfer_distance needs two non-empty point sets")
    mean_ab = float(cKDTree(b).query(a)[0].mean())
    mean_ba = float(cKDTree(a).query(b)[0].mean())
    return mean_ab, mean_ba, 0.5 * (mean_ab + mean_ba)


def f_score(points_a: ArrayLike, points_b: ArrayLike, threshold: float) -> float:
    """F-score at a distance threshold (Knapitsch et al., Tanks and Temples, 2017, Eq. 1-3).

    ``points_a`` is the reconstruction, ``points_b`` the reference: precision is the fraction of
    ``a`` within ``threshold`` of some ``b``, recall the fraction of ``b`` within ``threshold`` of
    some ``a``; F = 2 P R / (P + R), 0 when both are 0.
    """
    from scipy.spatial import cKDTree

    a, b = np.asarray(points_a, np.float64), np.asarray(points_b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    precision = float((cKDTree(b).query(a)[0] <= threshold).mean())
    recall = float((cKDTree(a).query(b)[0] <= threshold).mean())
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def sample_surface(vertices: ArrayLike, faces: ArrayLike, count: int,
                   generator: np.random.Generator | torch.Generator | None = None) -> np.ndarray:
    """``count`` points uniform over the area of a triangle mesh.

    Triangles are drawn with probability proportional to their area, then a point uniform in the
    triangle by the square-root trick (Osada et al., "Shape Distributions", 2002, Sec. 4.2):
    ``(1 - sqrt(r1)) A + sqrt(r1) (1 - r2) B + sqrt(r1) r2 C``.

    Args:
        vertices: (V, 3).
        faces: (F, 3) integer, at least one with non-zero area.
        count: number of points.
        generator: numpy or torch random generator (None: numpy's default, unseeded).
    Returns:
        (count, 3) float64.
    """
    v = np.asarray(vertices, np.float64)
    tri = v[np.asarray(faces, np.int64).reshape(-1, 3)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    if len(tri) == 0 or area.sum() <= 0:
        raise ValueError("sample_surface needs a mesh with non-zero area")
    if isinstance(generator, torch.Generator):
        u = torch.rand(count, 3, generator=generator, dtype=torch.float64).numpy()
    else:
        u = (generator if generator is not None else np.random.default_rng()).random((count, 3))
    cdf = np.cumsum(area) / area.sum()
    which = np.minimum(np.searchsorted(cdf, u[:, 0], side="right"), len(tri) - 1)
    s = np.sqrt(u[:, 1:2])
    r = u[:, 2:3]
    t = tri[which]
    return (1 - s) * t[:, 0] + s * (1 - r) * t[:, 1] + s * r * t[:, 2]

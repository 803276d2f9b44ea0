"""Band-limited fusion (only the voxels near an observed surface point) gives the same values and
the same mesh as dense fusion while visiting far fewer voxels; a sphere seen only from above comes
out open underneath, and capping its hole closes it flat."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_tsdf import BOX, CAMERA_DISTANCE, INTRINSICS, RADIUS, look_at_origin, render_sphere

from nerfkit.data.cameras import Cameras, generate_rays, image_pixels
from nerfkit.export.holes import boundary_loops, fill_holes
from nerfkit.export.tsdf import TSDFVolume

RESOLUTION = 64


def upper_cameras(count: int = 16, elevation_deg: float = 35.0) -> list[np.ndarray]:
    """Camera-to-world matrices on a ring above the sphere (none sees its underside)."""
    elevation = math.radians(elevation_deg)
    ring = []
    for k in range(count):
        azimuth = 2 * math.pi * k / count
        centre = CAMERA_DISTANCE * np.array([math.cos(elevation) * math.cos(azimuth),
                                             math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        ring.append(look_at_origin(centre))
    return ring


def _views(cameras: list[np.ndarray]):
    return [(c2w,) + render_sphere(c2w) for c2w in cameras]


def _surface_points(c2w: np.ndarray, depth: np.ndarray, alpha: np.ndarray) -> torch.Tensor:
    """Scene points of a view's opaque pixels, through nerfkit's own ray generation."""
    size = depth.shape[0]
    cameras = Cameras(c2w=torch.from_numpy(c2w)[None].float(),
                      intrinsics=torch.tensor([INTRINSICS], dtype=torch.float32),
                      sizes=torch.tensor([[size, size]]), distortion=torch.zeros(1, 5))
    mask = torch.from_numpy(alpha.reshape(-1) > 0.5)
    pixels = image_pixels(size, size)[mask]
    origins, directions = generate_rays(cameras, torch.zeros(len(pixels), dtype=torch.long), pixels)
    return origins + directions * torch.from_numpy(depth.reshape(-1))[mask, None]


def _fuse(views, band: bool) -> TSDFVolume:
    volume = TSDFVolume(BOX, resolution=RESOLUTION)
    voxels = None
    if band:
        voxels = volume.band_voxels(torch.cat([_surface_points(c2w, d, a) for c2w, d, a, _ in views]))
    for c2w, depth, alpha, rgb in views:
        volume.integrate(depth, alpha, rgb, c2w, INTRINSICS, voxels=voxels)
    return volume


def _boundary_edges(faces: np.ndarray) -> int:
    """Edges used by exactly one face (0 for a closed surface)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts == 1).sum())


@pytest.fixture(scope="module")
def upper_views():
    return _views(upper_cameras())


def test_band_fusion_matches_dense_fusion_and_skips_most_voxels(upper_views):
    dense, band = _fuse(upper_views, band=False), _fuse(upper_views, band=True)
    observed = band.weight > 0
    assert observed.sum() < 0.5 * dense.num_voxels            # far fewer voxels visited
    # every voxel the band fused has the dense value; every voxel near the surface is in the band
    assert torch.equal(band.tsdf[observed], dense.tsdf[observed])
    assert torch.equal(band.weight[observed], dense.weight[observed])
    near = (dense.weight > 0) & (dense.tsdf.abs() < dense.truncation)
    assert bool(observed[near].all())
    v_dense, f_dense, _ = dense.extract_mesh()
    v_band, f_band, _ = band.extract_mesh()
    assert len(f_dense) > 500 and np.array_equal(f_band, f_dense) and np.allclose(v_band, v_dense)


def test_band_ignores_points_outside_the_volume():
    volume = TSDFVolume(BOX, resolution=16)
    assert len(volume.band_voxels(torch.tensor([[5.0, 5.0, 5.0]]))) == 0
    centre = volume.band_voxels(torch.zeros(1, 3))
    radius = math.ceil((volume.truncation + 2 * volume.voxel_size) / volume.voxel_size)
    assert len(centre) == (2 * radius + 1) ** 3


def test_the_unseen_underside_is_a_hole_and_capping_closes_it_flat(upper_views):
    vertices, faces, colors = _fuse(upper_views, band=True).extract_mesh()
    loops = boundary_loops(faces)
    assert _boundary_edges(faces) == sum(len(loop) for loop in loops)
    largest = max(range(len(loops)), key=lambda k: len(loops[k]))
    rim = vertices[loops[largest]]
    assert len(rim) > 50 and sum(len(loop) for loop in loops) < 2 * len(rim)   # one big hole
    assert vertices[:, 2].min() > -0.9 * RADIUS and rim[:, 2].max() < 0      # ... at the bottom
    closed_v, closed_f, closed_c = fill_holes(vertices, faces, colors)
    assert _boundary_edges(closed_f) == 0
    assert np.array_equal(closed_v[: len(vertices)], vertices) and np.array_equal(closed_f[: len(faces)], faces)
    assert len(closed_v) == len(vertices) + len(loops)
    assert len(closed_f) == len(faces) + sum(len(loop) for loop in loops)
    assert np.allclose(closed_v[len(vertices) + largest], rim.mean(axis=0), atol=1e-6)
    assert closed_c.shape == closed_v.shape
    # the cap winds like the rest: its normals point down (outward), and the volume is positive
    first = len(faces) + sum(len(loop) for loop in loops[:largest])
    cap = closed_v[closed_f[first:first + len(rim)]].astype(np.float64)
    normal = np.cross(cap[:, 1] - cap[:, 0], cap[:, 2] - cap[:, 0])
    total = normal.sum(axis=0)                                   # area-weighted: the cap faces down
    assert total[2] < 0 and abs(total[2]) > 0.9 * np.linalg.norm(total)
    tri = closed_v[closed_f].astype(np.float64)
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    cut = RADIUS + rim[:, 2].mean()                               # the sphere minus the cap below the rim
    expected = (4 / 3) * math.pi * RADIUS ** 3 - math.pi * cut ** 2 * (3 * RADIUS - cut) / 3
    assert abs(volume - expected) < 0.03 * expected, (volume, expected)


def test_loops_follow_the_face_winding_and_a_closed_mesh_has_none():
    square = np.array([[0, 1, 2], [0, 2, 3]])                    # two faces, one loop 0-1-2-3
    loops = boundary_loops(square)
    assert len(loops) == 1 and list(np.roll(loops[0], -list(loops[0]).index(0))) == [0, 1, 2, 3]
    tetra = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    assert boundary_loops(tetra) == []
    vertices = np.random.default_rng(0).normal(size=(4, 3))
    same = fill_holes(vertices, tetra, None)
    assert same[0] is vertices and np.array_equal(same[1], tetra) and same[2] is None

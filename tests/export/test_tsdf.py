"""TSDF fusion of exact ray-traced depth of a sphere gives back the sphere (Chamfer < 1% of the box
diagonal), with its colours and outward normals; nothing observed gives an empty mesh; small
floating components are removed; Chamfer distance, F-score and surface sampling match closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import ConvexHull

from nerfkit.export.tsdf import (
    TSDFVolume,
    chamfer_distance,
    f_score,
    remove_small_components,
    sample_surface,
)

RADIUS = 0.5
CAMERA_DISTANCE = 2.5
SIZE = 64
INTRINSICS = (80.0, 80.0, SIZE / 2, SIZE / 2)
RED, BLUE, WHITE = np.array([1.0, 0.1, 0.1]), np.array([0.1, 0.2, 1.0]), np.ones(3)
BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def look_at_origin(centre: np.ndarray) -> np.ndarray:
    """(4, 4) camera-to-world, OpenCV axes (x right, y down, z forward), looking at the origin."""
    forward = -centre / np.linalg.norm(centre)
    up = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.95 else np.array([0.0, 1.0, 0.0])
    down = -(up - up.dot(forward) * forward)
    down /= np.linalg.norm(down)
    right = np.cross(down, forward)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, down, forward], axis=1)
    c2w[:3, 3] = centre
    return c2w


def fibonacci_sphere(count: int, radius: float) -> np.ndarray:
    i = np.arange(count) + 0.5
    z = 1 - 2 * i / count
    phi = math.pi * (1 + 5 ** 0.5) * i
    r = np.sqrt(1 - z ** 2)
    return radius * np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def render_sphere(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact depth along the ray (through pixel centres), alpha and rgb (red x > 0, blue x < 0)."""
    fx, fy, cx, cy = INTRINSICS
    j, i = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
    dirs = np.stack([(j - cx) / fx, (i - cy) / fy, np.ones_like(j)], axis=-1) @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = c2w[:3, 3]
    b = dirs @ origin
    disc = b ** 2 - (origin @ origin - RADIUS ** 2)
    hit = disc > 0
    t = np.where(hit, -b - np.sqrt(np.maximum(disc, 0)), 0.0)
    points = origin + t[..., None] * dirs
    rgb = np.where((points[..., 0] > 0)[..., None], RED, BLUE)
    rgb = np.where(hit[..., None], rgb, WHITE)
    return t.astype(np.float32), hit.astype(np.float32), rgb.astype(np.float32)


@pytest.fixture(scope="module")
def sphere_volume() -> TSDFVolume:
    volume = TSDFVolume(BOX, resolution=96)
    for centre in fibonacci_sphere(24, CAMERA_DISTANCE):
        c2w = look_at_origin(centre)
        depth, alpha, rgb = render_sphere(c2w)
        volume.integrate(torch.from_numpy(depth), torch.from_numpy(alpha), torch.from_numpy(rgb),
                         torch.from_numpy(c2w), torch.tensor(INTRINSICS))
    return volume


@pytest.fixture(scope="module")
def sphere_mesh(sphere_volume):
    return sphere_volume.extract_mesh()


def test_camera_helper_is_opencv_and_sees_the_sphere_in_the_middle():
    c2w = look_at_origin(np.array([2.5, 0.3, 0.4]))
    assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)
    depth, alpha, _ = render_sphere(c2w)
    assert alpha[SIZE // 2, SIZE // 2] == 1 and alpha[0, 0] == 0
    # centre ray goes through the origin: the hit is at distance |c| - r
    assert depth[SIZE // 2 - 1:SIZE // 2 + 1, SIZE // 2 - 1:SIZE // 2 + 1].min() == pytest.approx(
        np.linalg.norm([2.5, 0.3, 0.4]) - RADIUS, abs=2e-3)


def test_volume_geometry_and_default_truncation():
    volume = TSDFVolume([[0, 0, 0], [2.0, 1.0, 0.5]], resolution=40)
    assert volume.voxel_size == pytest.approx(0.05)
    assert volume.dims == (40, 20, 10)
    assert volume.truncation == pytest.approx(4 * 0.05)
    centres = volume.voxel_centers(torch.tensor([0, volume.num_voxels - 1]))
    assert torch.allclose(centres, torch.tensor([[0.025, 0.025, 0.025], [1.975, 0.975, 0.475]]))
    assert volume.weight.sum() == 0 and bool((volume.tsdf == volume.truncation).all())


def test_fused_sphere_matches_the_true_sphere(sphere_mesh):
    vertices, faces, colors = sphere_mesh
    assert vertices.dtype == np.float32 and faces.dtype == np.int64 and colors.dtype == np.uint8
    assert vertices.shape[1] == 3 and faces.shape[1] == 3 and colors.shape == vertices.shape
    assert len(faces) > 1000
    radii = np.linalg.norm(vertices, axis=-1)
    voxel = (BOX[1, 0] - BOX[0, 0]) / 96
    assert np.abs(radii - RADIUS).max() < 0.25 * voxel   # every vertex on the sphere, no floaters
    truth = fibonacci_sphere(100_000, RADIUS)
    samples = sample_surface(vertices, faces, 100_000, np.random.default_rng(0))
    mean_ab, mean_ba, mean = chamfer_distance(samples, truth)
    diagonal = np.linalg.norm(BOX[1] - BOX[0])
    print(f"chamfer mesh->truth {mean_ab:.5f} truth->mesh {mean_ba:.5f} mean {mean:.5f} "
          f"({100 * mean / diagonal:.3f}% of the diagonal); |r - R| max {np.abs(radii - RADIUS).max():.5f}")
    assert mean < 0.01 * diagonal
    assert max(mean_ab, mean_ba) < 0.01 * diagonal       # both directions: no holes, no extra parts
    assert f_score(samples, truth, threshold=0.01) > 0.99


def test_vertex_colours_come_from_the_observed_side(sphere_mesh):
    vertices, _, colors = sphere_mesh
    red = (RED * 255).round()
    blue = (BLUE * 255).round()
    pos, neg = vertices[:, 0] > 0.2, vertices[:, 0] < -0.2
    assert pos.sum() > 100 and neg.sum() > 100
    near_red = np.linalg.norm(colors[pos] - red, axis=-1) < 30
    near_blue = np.linalg.norm(colors[neg] - blue, axis=-1) < 30
    assert near_red.mean() > 0.95 and near_blue.mean() > 0.95


def test_faces_point_outward(sphere_mesh):
    vertices, faces, _ = sphere_mesh
    tri = vertices[faces].astype(np.float64)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    centroid = tri.mean(axis=1)
    cosine = (normal * centroid).sum(-1) / np.linalg.norm(centroid, axis=-1)
    assert cosine.mean() > 0.9 and (cosine > 0).mean() > 0.99


def test_nothing_observed_gives_an_empty_mesh():
    volume = TSDFVolume(BOX, resolution=32)
    c2w = look_at_origin(np.array([0.0, -2.5, 0.3]))
    depth, alpha, rgb = render_sphere(c2w)
    volume.integrate(depth, np.zeros_like(alpha), rgb, c2w, INTRINSICS)   # fully transparent view
    volume.integrate(np.zeros_like(depth), None, rgb, c2w, INTRINSICS)    # no depth anywhere
    assert volume.weight.sum() == 0
    for v, f, c in (volume.extract_mesh(), TSDFVolume(BOX, resolution=16).extract_mesh()):
        assert v.shape == (0, 3) and f.shape == (0, 3) and c.shape == (0, 3)
        assert v.dtype == np.float32 and f.dtype == np.int64 and c.dtype == np.uint8


def test_low_alpha_pixels_are_ignored_and_one_view_gives_a_cap():
    volume = TSDFVolume(BOX, resolution=48)
    c2w = look_at_origin(np.array([0.0, -2.5, 0.0]))
    depth, alpha, rgb = render_sphere(c2w)
    volume.integrate(depth, alpha * 0.4, rgb, c2w, INTRINSICS)            # below min_alpha
    assert volume.weight.sum() == 0
    volume.integrate(depth, alpha, rgb, c2w, INTRINSICS)
    vertices, faces, _ = volume.extract_mesh()
    assert len(faces) > 50
    # only the half facing the camera (y < 0) is seen
    assert vertices[:, 1].max() < 0.1
    assert np.abs(np.linalg.norm(vertices, axis=-1) - RADIUS).mean() < 0.02


def test_remove_small_components_drops_a_floater(sphere_mesh):
    vertices, faces, _ = sphere_mesh
    floater_v = np.array([[0.9, 0.9, 0.9], [0.95, 0.9, 0.9], [0.9, 0.95, 0.9], [0.9, 0.9, 0.95]],
                         np.float32)
    floater_f = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1]]) + len(vertices)
    all_v = np.concatenate([vertices, floater_v])
    all_f = np.concatenate([faces, floater_f])
    kept_v, kept_f, keep = remove_small_components(all_v, all_f, min_fraction=0.05)
    assert len(kept_f) == len(faces) and len(kept_v) == len(vertices)
    assert np.array_equal(keep, np.arange(len(vertices)))
    assert np.array_equal(kept_v[kept_f], vertices[faces])
    # by face count: a threshold above the floater keeps only the sphere, below it keeps both
    assert len(remove_small_components(all_v, all_f, min_faces=4)[1]) == len(faces)
    assert len(remove_small_components(all_v, all_f, min_faces=3)[1]) == len(all_f)


def test_remove_small_components_reindexes_when_the_floater_comes_first():
    big_v = fibonacci_sphere(50, 1.0)
    big_f = ConvexHull(big_v).simplices
    small_v = np.array([[5.0, 0, 0], [5.1, 0, 0], [5.0, 0.1, 0]])
    v = np.concatenate([small_v, big_v])
    f = np.concatenate([[[0, 1, 2]], big_f + 3])
    kept_v, kept_f, keep = remove_small_components(v, f)
    assert np.array_equal(keep, np.arange(3, 53))
    assert np.array_equal(kept_v[kept_f], big_v[big_f])


def test_chamfer_of_a_shifted_copy_is_the_shift():
    grid = np.stack(np.meshgrid(*[np.arange(5.0)] * 3), axis=-1).reshape(-1, 3)
    shift = np.array([0.06, -0.08, 0.0])                  # |shift| = 0.1 < half the grid spacing
    mean_ab, mean_ba, mean = chamfer_distance(grid, grid + shift)
    assert mean_ab == pytest.approx(0.1) and mean_ba == pytest.approx(0.1) and mean == pytest.approx(0.1)
    assert chamfer_distance(grid, grid) == (0.0, 0.0, 0.0)
    assert f_score(grid, grid + shift, threshold=0.11) == pytest.approx(1.0)
    assert f_score(grid, grid + shift, threshold=0.09) == 0.0


def test_chamfer_and_f_score_are_asymmetric_where_they_should_be():
    a = np.zeros((1, 3))
    b = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 3.0, 0]])
    mean_ab, mean_ba, mean = chamfer_distance(a, b)
    assert mean_ab == 0.0 and mean_ba == pytest.approx(4.0 / 3) and mean == pytest.approx(2.0 / 3)
    # precision 1 (a is on b), recall 1/3: F = 2 * 1/3 / (4/3) = 0.5
    assert f_score(a, b, threshold=0.5) == pytest.approx(0.5)


def test_sample_surface_is_area_weighted_and_on_the_surface():
    # unit square in z = 0 split into triangles of area 0.5, 0.4 and 0.1
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.2, 1, 0]], np.float64)
    faces = np.array([[0, 1, 2], [0, 2, 4], [0, 4, 3]])
    points = sample_surface(vertices, faces, 40000, torch.Generator().manual_seed(0))
    assert points.shape == (40000, 3)
    assert np.all(points[:, 2] == 0)
    assert points[:, :2].min() >= 0 and points[:, :2].max() <= 1
    # uniform over the unit square: mean (0.5, 0.5), variance 1/12 per axis
    assert np.allclose(points[:, :2].mean(0), 0.5, atol=0.01)
    assert np.allclose(points[:, :2].var(0), 1 / 12, atol=0.003)
    # fraction below the diagonal y < x is the area of the first triangle, 0.5
    assert (points[:, 1] < points[:, 0]).mean() == pytest.approx(0.5, abs=0.01)
    # the thin triangle (0,0)-(0.2,1)-(0,1) holds area 0.1
    in_thin = points[:, 0] < 0.2 * points[:, 1]
    assert in_thin.mean() == pytest.approx(0.1, abs=0.006)
    same = sample_surface(vertices, faces, 10, np.random.default_rng(3))
    assert np.array_equal(same, sample_surface(vertices, faces, 10, np.random.default_rng(3)))

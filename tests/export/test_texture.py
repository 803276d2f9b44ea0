"""UV atlas, texel rasterisation and texture baking: a baked sphere half red, half blue reads back
through the OBJ uv convention with the right colour at every face corner; texels lie on the
surface; charts do not overlap; padding is filled; decimation keeps shape and colours."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_tsdf import BLUE, INTRINSICS, RADIUS, RED, fibonacci_sphere, look_at_origin, render_sphere
from nerfkit.export.mesh_io import read_mesh, write_mesh
from nerfkit.export.simplify import decimate, remove_degenerate_faces
from nerfkit.export.texture import (
    ViewImage,
    bake_texture,
    dilate_texture,
    face_normals,
    rasterize_atlas,
    unwrap,
)

SIZE = 256


def uv_sphere(rings: int = 24, segments: int = 48, radius: float = RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """A closed latitude-longitude sphere, faces wound outward."""
    vertices = [[0.0, 0.0, radius]]
    for i in range(1, rings):
        theta = math.pi * i / rings
        for j in range(segments):
            phi = 2 * math.pi * j / segments
            vertices.append([radius * math.sin(theta) * math.cos(phi),
                             radius * math.sin(theta) * math.sin(phi), radius * math.cos(theta)])
    vertices.append([0.0, 0.0, -radius])
    faces = []
    ring = lambda i, j: 1 + (i - 1) * segments + j % segments      # noqa: E731
    for j in range(segments):
        faces.append([0, ring(1, j), ring(1, j + 1)])
        faces.append([len(vertices) - 1, ring(rings - 1, j + 1), ring(rings - 1, j)])
    for i in range(1, rings - 1):
        for j in range(segments):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [[a, c, b], [b, c, d]]
    return np.array(vertices, np.float32), np.array(faces, np.int64)


@pytest.fixture(scope="module")
def sphere():
    vertices, faces = uv_sphere()
    normals = face_normals(vertices, faces)
    centroids = vertices[faces].mean(axis=1)
    assert ((normals * centroids).sum(-1) > 0).all()                  # the helper winds outward
    return vertices, faces


@pytest.fixture(scope="module")
def atlas_and_samples(sphere):
    vertices, faces = sphere
    atlas = unwrap(vertices, faces, SIZE)
    return atlas, rasterize_atlas(atlas, vertices, faces, SIZE)


def test_atlas_has_a_uv_per_corner_inside_the_unit_square(sphere, atlas_and_samples):
    _, faces = sphere
    atlas, _ = atlas_and_samples
    assert atlas.face_uvs.shape == faces.shape and atlas.uvs.shape[1] == 2
    assert atlas.uvs.min() >= 0 and atlas.uvs.max() <= 1
    assert atlas.face_uvs.max() < len(atlas.uvs)


def test_texels_lie_on_the_surface_and_charts_do_not_overlap(sphere, atlas_and_samples):
    vertices, faces = sphere
    _, samples = atlas_and_samples
    assert len(samples.rows) > 0.3 * SIZE * SIZE                       # the atlas uses the image
    radii = np.linalg.norm(samples.points, axis=-1)
    sagitta = RADIUS * (1 - math.cos(math.pi / 24))                     # flat faces sit inside
    assert radii.max() <= RADIUS + 1e-5 and radii.min() >= RADIUS - 1.5 * sagitta
    # a texel belongs to one face, except the few whose centre is exactly on a shared edge
    texel = samples.rows * SIZE + samples.cols
    assert len(np.unique(texel)) > 0.99 * len(texel)
    # each texel's point lies in the plane of its face
    tri = vertices[faces[samples.faces]].astype(np.float64)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    assert np.abs(((samples.points - tri[:, 0]) * normal).sum(-1)).max() < 1e-5


def test_baked_colours_read_back_through_the_obj_uv_convention(sphere, atlas_and_samples, tmp_path):
    vertices, faces = sphere
    atlas, samples = atlas_and_samples
    views = []
    for centre in fibonacci_sphere(12, 2.5):
        c2w = look_at_origin(centre)
        depth, alpha, rgb = render_sphere(c2w)
        views.append(ViewImage(torch.from_numpy(rgb), torch.from_numpy(depth * (alpha > 0.5)),
                               torch.from_numpy(c2w), torch.tensor(INTRINSICS)))
    fallback = np.full((len(samples.rows), 3), 7, np.uint8)
    texture = bake_texture(samples, face_normals(vertices, faces), views, SIZE, tolerance=0.05,
                           fallback=fallback)
    assert texture.shape == (SIZE, SIZE, 3) and texture.dtype == np.uint8
    written = tmp_path / "sphere.obj"
    write_mesh(written, vertices, faces, uvs=atlas.uvs, face_uvs=atlas.face_uvs, texture=texture)
    mesh = read_mesh(written)
    from PIL import Image

    image = np.asarray(Image.open(mesh["texture"]).convert("RGB"))
    assert np.array_equal(image, texture)

    # every face corner's uv, looked up OBJ-style (v up, row 0 on top), has its 3D point's colour
    uv = mesh["uvs"][mesh["face_uvs"]].reshape(-1, 2)
    xyz = mesh["vertices"][mesh["faces"]].reshape(-1, 3)
    # step a little into the face so that the lookup does not land on a chart's padded border
    centroid_uv = mesh["uvs"][mesh["face_uvs"]].mean(axis=1).repeat(3, axis=0)
    uv = 0.8 * uv + 0.2 * centroid_uv
    cols = np.clip((uv[:, 0] * SIZE).astype(int), 0, SIZE - 1)
    rows = np.clip(((1 - uv[:, 1]) * SIZE).astype(int), 0, SIZE - 1)
    color = image[rows, cols].astype(float)
    red, blue = (RED * 255).round(), (BLUE * 255).round()
    right, left = xyz[:, 0] > 0.05, xyz[:, 0] < -0.05
    assert (np.linalg.norm(color[right] - red, axis=-1) < 40).mean() > 0.97
    assert (np.linalg.norm(color[left] - blue, axis=-1) < 40).mean() > 0.97


def test_texels_no_view_sees_take_the_fallback(sphere, atlas_and_samples):
    vertices, faces = sphere
    _, samples = atlas_and_samples
    c2w = look_at_origin(np.array([2.5, 0.0, 0.0]))                     # sees only the x > 0 half
    depth, alpha, rgb = render_sphere(c2w)
    view = ViewImage(torch.from_numpy(rgb), torch.from_numpy(depth), torch.from_numpy(c2w),
                     torch.tensor(INTRINSICS))
    fallback = np.full((len(samples.rows), 3), 7, np.uint8)
    texture = bake_texture(samples, face_normals(vertices, faces), [view], SIZE, tolerance=0.05,
                           fallback=fallback)
    baked = texture[samples.rows, samples.cols]
    far_side = samples.points[:, 0] < -0.1
    near_side = samples.points[:, 0] > 0.3
    assert (baked[far_side] == 7).all()
    assert (np.linalg.norm(baked[near_side] - (RED * 255).round(), axis=-1) < 40).mean() > 0.97


def test_dilation_grows_charts_by_one_texel_per_round():
    texture = np.zeros((9, 9, 3), np.uint8)
    filled = np.zeros((9, 9), bool)
    texture[4, 4], filled[4, 4] = (200, 100, 50), True
    grown = dilate_texture(texture, filled, 2)
    rows, cols = np.nonzero(grown.any(axis=-1))
    distance = np.abs(rows - 4) + np.abs(cols - 4)
    assert distance.max() == 2 and len(rows) == 13                     # a diamond of radius 2
    assert (grown[rows, cols] == (200, 100, 50)).all()
    assert (dilate_texture(texture, filled, 0) == texture).all()
    edge = np.zeros((4, 4, 3), np.uint8)
    edge_filled = np.zeros((4, 4), bool)
    edge[0, 0], edge_filled[0, 0] = 90, True
    assert dilate_texture(edge, edge_filled, 1)[3, 3].sum() == 0       # no wrap-around


def test_decimation_keeps_the_shape_and_the_colours():
    vertices, faces = uv_sphere(rings=60, segments=120)
    colors = np.where((vertices[:, 0] > 0)[:, None], (RED * 255).round(), (BLUE * 255).round()).astype(np.uint8)
    small_v, small_f, small_c = decimate(vertices, faces, colors, 1500)
    assert 1200 <= len(small_f) <= 1500 < len(faces)
    assert small_f.max() < len(small_v) and small_c.shape == small_v.shape
    assert np.abs(np.linalg.norm(small_v, axis=-1) - RADIUS).max() < 0.02
    side = small_v[:, 0]
    assert (small_c[side > 0.05] == (RED * 255).round()).all()
    assert (small_c[side < -0.05] == (BLUE * 255).round()).all()
    same = decimate(vertices, faces, colors, len(faces))
    assert np.array_equal(same[1], faces) and same[2] is colors
    with pytest.raises(ValueError, match="at least 4"):
        decimate(vertices, faces, colors, 3)


def test_degenerate_and_doubled_faces_are_removed_with_their_vertices():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 0, 0], [5, 5, 5]], np.float32)
    colors = np.arange(18, dtype=np.uint8).reshape(6, 3)
    faces = np.array([[0, 1, 2],        # kept
                      [0, 1, 3],        # a fin: the same three vertices twice, both go
                      [3, 1, 0],
                      [0, 0, 2],        # repeated index
                      [0, 1, 4],        # zero area (collinear)
                      [1, 2, 3]])       # kept
    v, f, c = remove_degenerate_faces(vertices, faces, colors)
    assert np.array_equal(v, vertices[[0, 1, 2, 3]]) and np.array_equal(c, colors[[0, 1, 2, 3]])
    assert np.array_equal(f, [[0, 1, 2], [1, 2, 3]])

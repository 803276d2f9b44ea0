"""The demo scene is a correct NeRF-synthetic folder whose images, cameras and mesh agree with the
analytic SDF they were made from, and ``ensure_demo_scene`` writes it once, atomically."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from plyfile import PlyData

from nerfkit.data.cameras import opengl_to_opencv
from nerfkit.data import demo
from nerfkit.data.demo import (CAMERA_ANGLE_X, CAMERA_RADIUS, DEMO_NAME, MESH_BOX, TEST_ELEVATION_DEG,
                               default_demo_dir, demo_albedo, demo_normals, demo_sdf, ensure_demo_scene,
                               look_at_opengl, render_demo_view, write_demo_scene)
from nerfkit.data.load import load_scene
from nerfkit.core.errors import NerfkitError

SIZE = 25                # odd: one pixel sits on the optical axis
COUNTS = {"train": 3, "val": 1, "test": 2}
MESH_RES = 48
CELL = (MESH_BOX[1][0] - MESH_BOX[0][0]) / (MESH_RES - 1)     # marching-cubes grid spacing
ARGS = {"size": SIZE, "n_train": COUNTS["train"], "n_test": COUNTS["test"], "n_val": COUNTS["val"],
        "seed": 0, "mesh_resolution": MESH_RES}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return write_demo_scene(tmp_path_factory.mktemp("demo") / "scene", **ARGS)


def frames(root: Path, split: str) -> list[dict]:
    return json.loads((root / f"transforms_{split}.json").read_text())["frames"]


def focal() -> float:
    return 0.5 * SIZE / math.tan(0.5 * CAMERA_ANGLE_X)


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ply = PlyData.read(str(path))
    v = ply["vertex"]
    verts = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64)
    colours = np.stack([v["red"], v["green"], v["blue"]], 1)
    faces = np.stack(ply["face"]["vertex_indices"]).astype(np.int64)
    return verts, colours, faces


# --- layout ----------------------------------------------------------------------------------------

def test_writes_the_nerf_synthetic_files(scene):
    for split, count in COUNTS.items():
        meta = json.loads((scene / f"transforms_{split}.json").read_text())
        assert meta["camera_angle_x"] == pytest.approx(math.radians(40.0))
        assert [f["file_path"] for f in meta["frames"]] == [f"./{split}/r_{i}" for i in range(count)]
        assert sorted(p.name for p in (scene / split).iterdir()) == sorted(f"r_{i}.png" for i in range(count))
    assert (scene / "gt_mesh.ply").is_file()
    description = json.loads((scene / "scene.json").read_text())
    assert description["name"] == DEMO_NAME
    assert description["params"] == ARGS
    assert [p["type"] for p in description["primitives"]] == ["cylinder", "box", "sphere", "torus"]


def test_images_are_rgba_uint8_of_the_requested_size(scene):
    for split, count in COUNTS.items():
        for i in range(count):
            image = iio.imread(scene / split / f"r_{i}.png")
            assert image.dtype == np.uint8
            assert image.shape == (SIZE, SIZE, 4)
            alpha = image[..., 3]
            # Some object, some background, some anti-aliased edge pixels.
            assert 0.05 < (alpha == 255).mean() < 0.6
            assert (alpha == 0).mean() > 0.3
            assert ((alpha > 0) & (alpha < 255)).any()
            # Straight alpha: background pixels carry no colour, opaque ones do.
            assert image[alpha == 0, :3].max() == 0
            assert image[alpha == 255, :3].max() > 100


def test_test_view_centre_is_opaque_and_corners_transparent(scene):
    image = iio.imread(scene / "test" / "r_0.png")
    assert image[SIZE // 2, SIZE // 2, 3] == 255
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert tuple(image[y, x]) == (0, 0, 0, 0)


# --- cameras ---------------------------------------------------------------------------------------

def test_json_cameras_are_opengl_and_look_at_the_origin(scene):
    for split in COUNTS:
        for frame in frames(scene, split):
            c2w = np.array(frame["transform_matrix"])
            rotation, position = c2w[:3, :3], c2w[:3, 3]
            np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])
            np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
            assert np.linalg.det(rotation) == pytest.approx(1.0)
            assert np.linalg.norm(position) == pytest.approx(CAMERA_RADIUS)
            # OpenGL: the camera looks down its -z axis, here straight at the origin ...
            np.testing.assert_allclose(-rotation[:, 2], -position / np.linalg.norm(position), atol=1e-12)
            # ... with +y up (world Z up) and no roll (x horizontal).
            assert rotation[2, 1] > 0
            assert rotation[2, 0] == pytest.approx(0.0, abs=1e-12)
    for frame in frames(scene, "test"):
        position = np.array(frame["transform_matrix"])[:3, 3]
        assert math.degrees(math.asin(position[2] / CAMERA_RADIUS)) == pytest.approx(TEST_ELEVATION_DEG)


def test_look_at_opengl_maps_camera_forward_to_the_origin():
    position = torch.tensor([1.0, -2.0, 1.5], dtype=torch.float64)
    c2w = look_at_opengl(position)
    forward_opencv = opengl_to_opencv(c2w)[:3, 2]          # OpenCV looks down +z
    torch.testing.assert_close(forward_opencv, -position / position.norm(), rtol=0, atol=1e-12)


def test_rendering_the_json_camera_reproduces_the_written_image(scene):
    """Ties the JSON poses and intrinsics to the pixels: the file is what that camera sees."""
    for split in ("train", "test"):
        frame = frames(scene, split)[1]
        c2w = opengl_to_opencv(torch.tensor(frame["transform_matrix"], dtype=torch.float64))
        view = render_demo_view(c2w, focal(), focal(), SIZE / 2, SIZE / 2, SIZE, SIZE,
                                supersample=demo.SUPERSAMPLE)
        rgba = torch.cat([view["rgb"], view["alpha"][..., None]], -1)
        rendered = (rgba * 255.0).round().to(torch.uint8).numpy().astype(int)
        written = iio.imread(scene / f"{frame['file_path']}.png").astype(int)
        assert np.abs(rendered - written).max() <= 1
    # Taken as OpenCV by mistake, the OpenGL matrix looks away from the object: nothing is hit.
    away = render_demo_view(torch.tensor(frame["transform_matrix"], dtype=torch.float64),
                            focal(), focal(), SIZE / 2, SIZE / 2, SIZE, SIZE)
    assert away["alpha"].max() == 0


def test_rendered_depth_back_projects_onto_the_surface(scene):
    frame = frames(scene, "test")[0]
    c2w = opengl_to_opencv(torch.tensor(frame["transform_matrix"], dtype=torch.float64))
    view = render_demo_view(c2w, focal(), focal(), SIZE / 2, SIZE / 2, SIZE, SIZE, supersample=1)
    ys, xs = torch.nonzero(view["alpha"] == 1, as_tuple=True)
    assert len(ys) > 20
    assert torch.all(view["depth"][view["alpha"] == 0] == 0)
    # Pixel centres -> OpenCV camera rays -> world, independently of the renderer's own code.
    cam = torch.stack([(xs + 0.5 - SIZE / 2) / focal(), (ys + 0.5 - SIZE / 2) / focal(),
                       torch.ones(len(xs), dtype=torch.float64)], -1)
    dirs = cam @ c2w[:3, :3].T
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    points = c2w[:3, 3] + view["depth"][ys, xs, None].double() * dirs
    assert demo_sdf(points).abs().max() < 1e-3
    # The surface seen is in front of the camera and inside the object's box.
    depth = view["depth"][ys, xs]
    assert depth.min() > CAMERA_RADIUS - 1.5 and depth.max() < CAMERA_RADIUS + 1.5
    # A point slightly nearer the camera along each ray is outside the object (the first hit).
    assert (demo_sdf(points - 0.01 * dirs) > 0).all()


def test_demo_sdf_values():
    # Top of the sphere (docstring example), the pedestal's top face and a far-away point.
    points = torch.tensor([[0.35, 0.30, 0.09], [0.6, 0.0, -0.6], [0.0, 0.0, 5.0], [0.35, 0.30, -0.26]])
    sdf = demo_sdf(points)
    assert sdf[0].abs() < 1e-6
    assert sdf[1].abs() < 1e-6
    assert sdf[2] > 4.0
    assert sdf[3] == pytest.approx(-0.35, abs=1e-6)   # the sphere's centre is 0.35 inside


# --- ground-truth mesh -----------------------------------------------------------------------------

def test_gt_mesh_lies_on_the_sdf_zero_set(scene):
    verts, _, _ = read_mesh(scene / "gt_mesh.ply")
    assert len(verts) > 1000
    distance = demo_sdf(torch.from_numpy(verts)).abs()
    assert distance.max() < 0.5 * CELL
    assert distance.mean() < 0.05 * CELL            # no systematic offset of the grid
    # It spans the object: the pedestal (radius 0.75, bottom at z = -0.8) sets the extent.
    assert verts[:, 0].min() == pytest.approx(-0.75, abs=CELL)
    assert verts[:, 0].max() == pytest.approx(0.75, abs=CELL)
    assert verts[:, 2].min() == pytest.approx(-0.8, abs=CELL)


def test_gt_mesh_faces_point_outwards(scene):
    verts, _, faces = read_mesh(scene / "gt_mesh.ply")
    corners = verts[faces]                                        # (F, 3, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    keep = np.linalg.norm(normals, axis=1) > 1e-10
    outward = demo_normals(torch.from_numpy(corners[keep].mean(1))).double().numpy()
    agree = (np.einsum("fi,fi->f", normals[keep], outward) > 0).mean()
    assert agree > 0.99


def test_gt_mesh_vertex_colours_are_the_albedo(scene):
    verts, colours, _ = read_mesh(scene / "gt_mesh.ply")
    expected = (demo_albedo(torch.from_numpy(verts)) * 255).round().numpy()
    assert colours.dtype == np.uint8
    assert np.abs(colours.astype(int) - expected).max() <= 1
    assert len(np.unique(colours, axis=0)) > 100                 # textured, not one flat colour


# --- determinism -----------------------------------------------------------------------------------

def test_same_seed_gives_byte_identical_files(scene, tmp_path):
    again = write_demo_scene(tmp_path / "again", **ARGS)
    names = sorted(str(p.relative_to(scene)) for p in scene.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file()) == names
    assert len(names) == sum(COUNTS.values()) + 3 + 2        # images, 3 JSONs, mesh, scene.json
    for name in names:
        assert (scene / name).read_bytes() == (again / name).read_bytes(), name


def test_the_seed_changes_the_train_and_val_cameras():
    one, other = demo.demo_camera_poses(4, 2, 2, seed=0), demo.demo_camera_poses(4, 2, 2, seed=1)
    assert not torch.allclose(one["train"], other["train"])
    assert not torch.allclose(one["val"], other["val"])
    torch.testing.assert_close(one["test"], other["test"])    # the test orbit is fixed


# --- loading ---------------------------------------------------------------------------------------

def test_load_scene_reads_the_demo_with_its_splits(scene):
    loaded = load_scene(scene)
    assert loaded.format == "blender"
    assert loaded.splits == {"train": [0, 1, 2], "val": [3], "test": [4, 5]}
    assert len(loaded.images) == 6 and loaded.has_alpha
    for path, image in zip(loaded.image_paths, loaded.images):
        np.testing.assert_array_equal(image, iio.imread(path))
    torch.testing.assert_close(loaded.cameras.intrinsics[0],
                               torch.tensor([focal(), focal(), SIZE / 2, SIZE / 2]))
    assert loaded.cameras.sizes.tolist() == [[SIZE, SIZE]] * 6


# --- the cache -------------------------------------------------------------------------------------

def test_default_demo_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NERFKIT_CACHE", str(tmp_path / "nk"))
    assert default_demo_dir() == tmp_path / "nk" / DEMO_NAME
    monkeypatch.delenv("NERFKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_demo_dir() == tmp_path / "xdg" / "nerfkit" / DEMO_NAME
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_demo_dir() == tmp_path / "home" / ".cache" / "nerfkit" / DEMO_NAME


SMALL = {"size": 24, "n_train": 2, "n_test": 1, "n_val": 1, "seed": 0}


def counting_writer(monkeypatch) -> list[Path]:
    """Wrap ``write_demo_scene`` as ``ensure_demo_scene`` sees it; returns the list of its calls."""
    calls: list[Path] = []
    real = demo.write_demo_scene

    def spy(out_dir, *args, **kwargs):
        calls.append(Path(out_dir))
        return real(out_dir, *args, **kwargs)

    monkeypatch.setattr(demo, "write_demo_scene", spy)
    return calls


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_ensure_demo_scene_writes_once_then_reuses(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NERFKIT_CACHE", str(cache))
    calls = counting_writer(monkeypatch)
    first = ensure_demo_scene(**SMALL)
    assert first == cache / f"{DEMO_NAME}-24px-2-1-1-seed0"
    assert json.loads((first / "scene.json").read_text())["params"] == {
        **SMALL, "mesh_resolution": demo.MESH_RESOLUTION}
    assert iio.imread(first / "train" / "r_1.png").shape == (24, 24, 4)
    before = snapshot(first)
    assert len(before) > 8
    # Written to a temp folder beside it, which is gone afterwards.
    assert len(calls) == 1 and calls[0].parent == cache and calls[0].name.startswith(f".{first.name}.tmp-")
    assert sorted(p.name for p in cache.iterdir()) == [first.name]

    time.sleep(0.01)
    assert ensure_demo_scene(**SMALL) == first
    assert len(calls) == 1                                # not written again
    assert snapshot(first) == before                      # no file touched


def test_ensure_demo_scene_survives_a_killed_writer(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NERFKIT_CACHE", str(cache))
    name = f"{DEMO_NAME}-24px-2-1-1-seed0"
    stale = cache / f".{name}.tmp-dead01"                # killed two hours ago, half written
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "r_0.png").write_bytes(b"\x89PNG half")
    (stale / "transforms_train.json").write_text('{"frames": [')
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    recent = cache / f".{name}.tmp-live02"               # may belong to a writer still running
    recent.mkdir()

    out = ensure_demo_scene(**SMALL)
    assert out == cache / name
    assert demo._is_complete(out, {**SMALL, "mesh_resolution": demo.MESH_RESOLUTION})
    loaded = load_scene(out)
    assert loaded.splits == {"train": [0, 1], "val": [2], "test": [3]}
    assert not stale.exists()                              # old debris cleaned up
    assert recent.is_dir()                                 # a live writer's folder left alone
    assert sorted(p.name for p in cache.iterdir()) == sorted([name, recent.name])


def test_ensure_demo_scene_refuses_a_foreign_folder(monkeypatch, tmp_path):
    calls = counting_writer(monkeypatch)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(NerfkitError, match="is not a nerfkit demo scene") as info:
        ensure_demo_scene(**SMALL, out_dir=foreign)
    assert str(foreign) in str(info.value)
    assert calls == []
    assert (foreign / "notes.txt").read_text() == "keep me"

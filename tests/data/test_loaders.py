"""Every scene format gives back the cameras it was written with; every bad input names itself."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import torch

from nerfkit.data.cameras import project
from nerfkit.data import load_scene
from nerfkit.data.images import read_image
from nerfkit.data.normalize import OBJECT_CAMERA_DISTANCE
from nerfkit.data.similarity import transform_c2w, transform_points
from nerfkit.core.errors import NerfkitError
from scene_writers import (KnownCameras, colmap_reconstruction, make_image, orbit_cameras,
                           pinhole_project, write_blender, write_colmap, write_transforms)

FORMATS = ("colmap_txt", "colmap_bin", "blender", "transforms")


def write_scene(fmt: str, root: Path, cams: KnownCameras) -> Path:
    if fmt == "colmap_txt":
        return write_colmap(root, cams)
    if fmt == "colmap_bin":
        return write_colmap(root, cams, binary=True)
    if fmt == "blender":
        return write_blender(root, cams)
    return write_transforms(root, cams)


def by_name(scene) -> list[int]:
    """Camera index of each known camera ``cam_NNN`` (formats order cameras differently)."""
    index = {Path(p).stem: i for i, p in enumerate(scene.image_paths)}
    return [index[f"cam_{i:03d}"] for i in range(len(index))]


def world_c2w(scene) -> np.ndarray:
    """(N, 4, 4) the scene's cameras mapped back to original world coordinates."""
    scene_to_world = torch.linalg.inv(scene.world_to_scene)
    return transform_c2w(scene_to_world, scene.cameras.c2w).numpy()


@pytest.fixture
def cams() -> KnownCameras:
    return orbit_cameras()


# --- every format, same cameras ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_returns_the_written_cameras(tmp_path, cams, fmt):
    scene = load_scene(write_scene(fmt, tmp_path / fmt, cams))
    order = by_name(scene)
    np.testing.assert_allclose(world_c2w(scene)[order], cams.c2w, atol=2e-5)
    np.testing.assert_allclose(scene.cameras.intrinsics[order].numpy(), cams.intrinsics, atol=1e-4)
    np.testing.assert_array_equal(scene.cameras.sizes[order].numpy(), cams.sizes)
    assert not scene.cameras.has_distortion
    assert scene.name == fmt
    assert scene.cameras.c2w.dtype == torch.float32 and scene.world_to_scene.dtype == torch.float64
    image = scene.images[order[4]]
    np.testing.assert_array_equal(image[..., :3], make_image(4, 32, 24))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_world_point_projects_to_the_same_pixel_in_every_format(tmp_path, cams, fmt):
    scene = load_scene(write_scene(fmt, tmp_path / fmt, cams))
    order = by_name(scene)
    world = cams.center + np.array([[0.2, -0.1, 0.15], [-0.3, 0.25, 0.0], [0.0, 0.0, 0.0]])
    points = transform_points(scene.world_to_scene, torch.from_numpy(world))
    for i in range(len(cams)):
        ids = torch.full((len(world),), order[i], dtype=torch.long)
        pixels = project(scene.cameras, ids, points).numpy()
        np.testing.assert_allclose(pixels, pinhole_project(cams, i, world), atol=1e-3)
    np.testing.assert_allclose(pixels[2], [16.0, 12.0], atol=1e-3)   # the look-at point: centre


def test_formats_normalise_by_their_kind(tmp_path, cams):
    blender = load_scene(write_blender(tmp_path / "b", cams))
    distances = blender.cameras.c2w[:, :3, 3].norm(dim=-1)
    assert not blender.unbounded
    assert distances.mean().item() == pytest.approx(OBJECT_CAMERA_DISTANCE, rel=1e-5)
    center = transform_points(blender.world_to_scene, torch.from_numpy(cams.center)[None])
    np.testing.assert_allclose(center.numpy(), 0.0, atol=1e-6)
    assert blender.scale == pytest.approx(OBJECT_CAMERA_DISTANCE / 3.5, rel=1e-5)

    colmap = load_scene(write_colmap(tmp_path / "c", cams))
    assert colmap.unbounded
    assert colmap.cameras.c2w[:, :3, 3].norm(dim=-1).max().item() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(colmap.aabb.numpy(), [[-1, -1, -1], [1, 1, 1]])
    forced = load_scene(tmp_path / "c", kind="object")
    assert not forced.unbounded and forced.scale == pytest.approx(blender.scale, rel=1e-5)


@pytest.mark.parametrize("aabb_scale, unbounded", [(None, False), (1, False), (16, True)])
def test_transforms_aabb_scale_chooses_the_kind(tmp_path, cams, aabb_scale, unbounded):
    scene = load_scene(write_transforms(tmp_path / "t", cams, aabb_scale=aabb_scale))
    assert scene.unbounded == unbounded


def test_transforms_forward_facing_without_aabb_scale_is_unbounded(tmp_path):
    cams = orbit_cameras(n=9)
    for i in range(9):   # a 3x3 grid of parallel cameras looking along +y
        cams.c2w[i] = np.eye(4)
        cams.c2w[i, :3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]
        cams.c2w[i, :3, 3] = [0.2 * (i % 3), 0.0, 0.2 * (i // 3)]
    assert load_scene(write_transforms(tmp_path / "t", cams)).unbounded


# --- COLMAP ---------------------------------------------------------------------------------------

MODELS = {
    "SIMPLE_PINHOLE": ([30.0, 30.0, 15.7, 12.4], [0, 0, 0, 0, 0]),
    "PINHOLE": ([30.0, 28.5, 15.7, 12.4], [0, 0, 0, 0, 0]),
    "SIMPLE_RADIAL": ([30.0, 30.0, 15.7, 12.4], [-0.12, 0, 0, 0, 0]),
    "RADIAL": ([30.0, 30.0, 15.7, 12.4], [-0.12, 0.03, 0, 0, 0]),
    "OPENCV": ([30.0, 28.5, 15.7, 12.4], [-0.12, 0.03, 0.004, -0.003, 0]),
    # fisheyes: k1, k2, k3, k4 of the equidistant model
    "OPENCV_FISHEYE": ([20.0, 19.5, 15.7, 12.4], [0.06, -0.02, 0.004, -0.001, 0]),
    "SIMPLE_RADIAL_FISHEYE": ([20.0, 20.0, 15.7, 12.4], [0.06, 0, 0, 0, 0]),
    "RADIAL_FISHEYE": ([20.0, 20.0, 15.7, 12.4], [0.06, -0.02, 0, 0, 0]),
    "SIMPLE_FISHEYE": ([20.0, 20.0, 15.7, 12.4], [0, 0, 0, 0, 0]),
    "FISHEYE": ([20.0, 19.5, 15.7, 12.4], [0, 0, 0, 0, 0]),
}


@pytest.mark.parametrize("model", MODELS)
def test_colmap_camera_models_project_like_pycolmap(tmp_path, cams, model):
    intrinsics, distortion = MODELS[model]
    cams.intrinsics[:] = intrinsics
    cams.distortion[:] = distortion
    root = write_colmap(tmp_path / model, cams, model=model)
    scene = load_scene(root)
    rec = pycolmap.Reconstruction(str(root / "sparse" / "0"))
    rng = np.random.default_rng(0)
    world = cams.center + rng.uniform(-0.8, 0.8, (20, 3))
    points = transform_points(scene.world_to_scene, torch.from_numpy(world))
    np.testing.assert_allclose(scene.cameras.distortion[0].numpy(), distortion, atol=1e-7)
    assert bool(scene.cameras.fisheye.all()) == model.endswith("FISHEYE")
    for index, image_id in enumerate(sorted(rec.images)):
        image = rec.images[image_id]
        cam_from_world = image.cam_from_world()
        local = np.stack([cam_from_world * x for x in world])
        expected = rec.cameras[image.camera_id].img_from_cam(local)
        ids = torch.full((len(world),), index, dtype=torch.long)
        np.testing.assert_allclose(project(scene.cameras, ids, points).numpy(), expected,
                                   atol=1e-3)


FISHEYE_LENS = {"k1": 0.06, "k2": -0.02, "k3": 0.004, "k4": -0.001}


@pytest.mark.parametrize("how", ["camera_model", "is_fisheye"])
def test_transforms_fisheye_projects_like_pycolmap(tmp_path, cams, how):
    # nerfstudio writes camera_model OPENCV_FISHEYE, instant-ngp's colmap2nerf is_fisheye: true
    cams.intrinsics[:] = [20.0, 19.5, 15.7, 12.4]
    lens = {"camera_model": "OPENCV_FISHEYE"} if how == "camera_model" else {"is_fisheye": True}
    scene = load_scene(write_transforms(tmp_path / "t", cams, extra={**lens, **FISHEYE_LENS}))
    assert bool(scene.cameras.fisheye.all())
    np.testing.assert_allclose(scene.cameras.distortion[0].numpy(), [0.06, -0.02, 0.004, -0.001, 0], atol=1e-7)
    camera = pycolmap.Camera.create_from_model_name(1, "OPENCV_FISHEYE", 1.0, 32, 24)
    camera.params = [20.0, 19.5, 15.7, 12.4, *FISHEYE_LENS.values()]
    world = cams.center + np.random.default_rng(0).uniform(-0.8, 0.8, (20, 3))
    points = transform_points(scene.world_to_scene, torch.from_numpy(world))
    order = by_name(scene)
    for index in range(len(cams)):
        w2c = np.linalg.inv(cams.c2w[index])
        expected = camera.img_from_cam(world @ w2c[:3, :3].T + w2c[:3, 3])
        ids = torch.full((len(world),), order[index], dtype=torch.long)
        np.testing.assert_allclose(project(scene.cameras, ids, points).numpy(), expected, atol=1e-3)


@pytest.mark.parametrize("extra, match", [
    ({"camera_model": "OPENCV_FISHEYE", "p1": 0.01}, "coefficient 'p1' in '.*' is not supported for OPENCV_FISHEYE"),
    ({"camera_model": "OPENCV_FISHEYE", "k5": 0.01}, "coefficient 'k5' in '.*' is not supported for OPENCV_FISHEYE"),
    ({"camera_model": "OPENCV", "k4": 0.01}, "coefficient 'k4' in '.*' is not supported for pinhole"),
    ({"camera_model": "PINHOLE", "is_fisheye": True}, "sets 'is_fisheye' for camera model 'PINHOLE'"),
    ({"camera_model": "EQUIRECTANGULAR"}, "camera model 'EQUIRECTANGULAR' in '.*transforms.json' is not "
                                          "supported; supported: OPENCV, PINHOLE, SIMPLE_PINHOLE, "
                                          "SIMPLE_RADIAL, RADIAL, OPENCV_FISHEYE$"),
])
def test_transforms_lens_mistakes_are_one_sentence(tmp_path, cams, extra, match):
    message = assert_error(match, write_transforms(tmp_path / "t", cams, extra=extra))
    assert "\n" not in message


def test_colmap_principal_point_convention_is_ours():
    # COLMAP's default principal point is (W/2, H/2): the image centre when the top-left corner is
    # (0, 0) and pixel centres sit at +0.5 -- nerfkit's convention, so cx, cy are copied as is.
    camera = pycolmap.Camera.create_from_model_name(1, "PINHOLE", 30.0, 32, 24)
    assert (camera.principal_point_x, camera.principal_point_y) == (16.0, 12.0)
    np.testing.assert_allclose(camera.img_from_cam(np.array([[0.0, 0.0, 1.0]])), [[16.0, 12.0]])
    np.testing.assert_allclose(camera.img_from_cam(np.array([[-16.0, -12.0, 30.0]])), [[0.0, 0.0]])


def test_colmap_bin_and_txt_give_the_same_scene(tmp_path, cams):
    rng = np.random.default_rng(1)
    points = cams.center + rng.normal(0, 0.3, (150, 3))
    colors = rng.integers(0, 256, (150, 3))
    txt = load_scene(write_colmap(tmp_path / "txt", cams, points=points, colors=colors))
    binary = load_scene(write_colmap(tmp_path / "bin", cams, binary=True, points=points,
                                     colors=colors))
    for name in ("c2w", "intrinsics", "sizes", "distortion"):
        torch.testing.assert_close(getattr(txt.cameras, name), getattr(binary.cameras, name))
    torch.testing.assert_close(txt.world_to_scene, binary.world_to_scene)
    torch.testing.assert_close(txt.points3d, binary.points3d)
    assert txt.splits == binary.splits


def test_colmap_points_are_in_scene_coordinates_and_set_the_centre(tmp_path, cams):
    rng = np.random.default_rng(2)
    points = cams.center + np.array([0.3, 0.0, -0.1]) + rng.normal(0, 0.2, (101, 3))
    colors = rng.integers(0, 256, (101, 3))
    scene = load_scene(write_colmap(tmp_path / "c", cams, points=points, colors=colors))
    back = transform_points(torch.linalg.inv(scene.world_to_scene), scene.points3d)
    order = np.argsort(back.numpy()[:, 0])
    np.testing.assert_allclose(back.numpy()[order], points[np.argsort(points[:, 0])], atol=1e-5)
    assert scene.points_rgb.dtype == torch.uint8
    assert sorted(map(tuple, scene.points_rgb.tolist())) == sorted(map(tuple, colors.tolist()))
    np.testing.assert_allclose(scene.points3d.median(dim=0).values.numpy(), 0.0, atol=1e-6)


def test_colmap_in_sparse_without_0_and_extra_images_ignored(tmp_path, cams):
    root = write_colmap(tmp_path / "c", cams, sparse_subdir="sparse")
    shutil.copy(root / "images" / "cam_000.png", root / "images" / "not_in_model.png")
    scene = load_scene(root)
    assert len(scene.images) == len(cams)
    assert all(Path(p).name != "not_in_model.png" for p in scene.image_paths)


# --- splits, downscale, images --------------------------------------------------------------------

def test_every_eighth_image_is_a_test_image(tmp_path):
    cams = orbit_cameras(n=17)
    scene = load_scene(write_colmap(tmp_path / "c", cams))
    assert scene.splits["test"] == [0, 8, 16]
    assert scene.splits["train"] == [i for i in range(17) if i not in (0, 8, 16)]
    assert [Path(scene.image_paths[i]).stem for i in scene.splits["test"]] == [
        "cam_000", "cam_008", "cam_016"]
    assert load_scene(tmp_path / "c", split_every=4).splits["test"] == [0, 4, 8, 12, 16]


def test_given_splits_are_kept(tmp_path, cams):
    blender = load_scene(write_blender(tmp_path / "b", cams))
    names = {s: sorted(Path(blender.image_paths[i]).stem for i in idx)
             for s, idx in blender.splits.items()}
    assert names == {"train": ["cam_002", "cam_004", "cam_005", "cam_007", "cam_008"],
                     "val": ["cam_001"], "test": ["cam_000", "cam_003", "cam_006", "cam_009"]}
    extra = {"train_filenames": [f"images/cam_{i:03d}.png" for i in range(1, 10)],
             "test_filenames": ["images/cam_000.png"]}
    ns = load_scene(write_transforms(tmp_path / "t", cams, extra=extra))
    assert ns.splits == {"train": list(range(1, 10)), "test": [0]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_downscale_halves_sizes_intrinsics_and_images(tmp_path, cams, fmt):
    root = write_scene(fmt, tmp_path / fmt, cams)
    full, half = load_scene(root), load_scene(root, downscale=2)
    torch.testing.assert_close(half.cameras.sizes, full.cameras.sizes // 2)
    torch.testing.assert_close(half.cameras.intrinsics, full.cameras.intrinsics / 2)
    torch.testing.assert_close(half.cameras.c2w, full.cameras.c2w)
    image, small = full.images[3].astype(np.float64), half.images[3].astype(np.float64)
    block_mean = image.reshape(12, 2, 16, 2, -1).mean(axis=(1, 3))
    assert small.shape == block_mean.shape
    assert np.abs(small - block_mean).max() <= 0.5 + 1e-9


def test_fractional_downscale_rounds_sizes(tmp_path, cams):
    scene = load_scene(write_colmap(tmp_path / "c", cams), downscale=1.5)
    assert scene.cameras.sizes[0].tolist() == [21, 16]
    assert scene.images[0].shape == (16, 21, 3)
    fx, fy, cx, cy = scene.cameras.intrinsics[0].tolist()
    assert (fx, cx) == pytest.approx((30.0 * 21 / 32, 16.0 * 21 / 32))
    assert (fy, cy) == pytest.approx((30.0 * 16 / 24, 12.0 * 16 / 24))


def test_images_become_uint8_rgb(tmp_path):
    import imageio.v3 as iio
    grey16 = (np.arange(24 * 32).reshape(24, 32) * 80).astype(np.uint16)
    iio.imwrite(tmp_path / "g16.png", grey16)
    iio.imwrite(tmp_path / "la.png", np.stack([grey16 // 257, grey16 // 300], -1).astype(np.uint8))
    image = read_image(tmp_path / "g16.png")
    assert image.shape == (24, 32, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 1], np.round(grey16 / 257.0).astype(np.uint8))
    assert read_image(tmp_path / "la.png").shape == (24, 32, 4)


def test_transforms_per_frame_overrides_distortion_and_angle(tmp_path, cams):
    cams.intrinsics[3] = [27.0, 26.0, 15.0, 11.5]
    cams.distortion[:] = [0.05, -0.01, 0.001, 0.002, 0.003]
    cams.distortion[5] = [-0.1, 0.0, 0.0, 0.0, 0.0]
    scene = load_scene(write_transforms(tmp_path / "t", cams))
    order = by_name(scene)
    np.testing.assert_allclose(scene.cameras.intrinsics[order].numpy(), cams.intrinsics, atol=1e-5)
    np.testing.assert_allclose(scene.cameras.distortion[order].numpy(), cams.distortion, atol=1e-7)
    world = cams.center[None] + 0.1
    points = transform_points(scene.world_to_scene, torch.from_numpy(world))
    for i in (3, 5):
        pixel = project(scene.cameras, torch.tensor([order[i]]), points).numpy()
        np.testing.assert_allclose(pixel, pinhole_project(cams, i, world), atol=1e-3)

    angle = load_scene(write_transforms(tmp_path / "a", orbit_cameras(), extra={
        "camera_angle_x": 2 * math.atan(16 / 40.0)}, frame_extra={}))
    assert angle.cameras.intrinsics[0, 0].item() == pytest.approx(30.0)   # fl_x wins over angle
    meta = json.loads((tmp_path / "a" / "transforms.json").read_text())
    del meta["fl_x"], meta["fl_y"]
    (tmp_path / "a" / "transforms.json").write_text(json.dumps(meta))
    assert load_scene(tmp_path / "a").cameras.intrinsics[0, :2].tolist() == pytest.approx([40, 40])


def test_nerfstudio_ply_points_are_read_in_scene_coordinates(tmp_path, cams):
    import plyfile
    rng = np.random.default_rng(3)
    xyz = cams.center + rng.normal(0, 0.3, (120, 3))
    rgb = rng.integers(0, 256, (120, 3)).astype(np.uint8)
    vertex = np.empty(120, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"),
                                  ("green", "u1"), ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = rgb[:, i]
    root = write_transforms(tmp_path / "ns", cams, aabb_scale=16,
                            extra={"ply_file_path": "sparse_pc.ply"})
    ply = plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")])
    ply.write(str(root / "sparse_pc.ply"))
    scene = load_scene(root)
    back = transform_points(torch.linalg.inv(scene.world_to_scene), scene.points3d)
    np.testing.assert_allclose(back.numpy(), xyz.astype(np.float32), atol=1e-5)
    np.testing.assert_array_equal(scene.points_rgb.numpy(), rgb)
    np.testing.assert_allclose(scene.points3d.median(dim=0).values.numpy(), 0.0, atol=1e-6)


# --- bad inputs -----------------------------------------------------------------------------------

def assert_error(match: str, path, **kwargs) -> str:
    with pytest.raises(NerfkitError, match=match) as info:
        load_scene(path, **kwargs)
    return str(info.value)


def test_not_a_scene_folder_missing_path_and_file(tmp_path):
    (tmp_path / "empty").mkdir()
    message = assert_error("is not a scene folder: expected a COLMAP folder", tmp_path / "empty")
    assert str(tmp_path / "empty") in message
    assert_error(f"'{tmp_path / 'nowhere'}' does not exist", tmp_path / "nowhere")
    (tmp_path / "transforms.json").write_text("{}")
    assert_error("is a file, not a scene folder", tmp_path / "transforms.json")


def test_missing_image_is_named(tmp_path, cams):
    root = write_blender(tmp_path / "b", cams)
    (root / "train" / "cam_004.png").unlink()
    message = assert_error("image '.*cam_004.png' is missing", root)
    assert "transforms_train.json" in message


@pytest.mark.parametrize("fmt", ["colmap_txt", "transforms"])
def test_count_mismatch_names_the_listing_and_a_missing_image(tmp_path, cams, fmt):
    root = write_scene(fmt, tmp_path / fmt, cams)
    for name in ("cam_002.png", "cam_007.png"):
        (root / "images" / name).unlink()
    listing = "images.txt" if fmt == "colmap_txt" else "transforms.json"
    assert_error(f"{listing}' lists 10 images but 2 of them are not on disk "
                 r"\(image '.*cam_002.png' is missing\)", root)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_and_truncated_images_are_named(tmp_path, cams, damage):
    root = write_colmap(tmp_path / "c", cams)
    path = root / "images" / "cam_003.png"
    data = path.read_bytes()
    path.write_bytes(b"this is not a png" * 4 if damage == "garbage" else data[:len(data) // 2])
    assert_error(f"image '{path}' could not be read: it is not a valid image file", root)


def test_image_size_disagreeing_with_cameras_txt(tmp_path, cams):
    root = write_colmap(tmp_path / "c", cams)
    text = (root / "sparse/0/cameras.txt").read_text().replace(" PINHOLE 32 24 ", " PINHOLE 40 24 ")
    (root / "sparse/0/cameras.txt").write_text(text)
    message = assert_error("is 32x24 pixels but its camera in '.*cameras.txt' is 40x24", root)
    assert "cam_000.png" in message


@pytest.mark.parametrize("model", ["FOV", "THIN_PRISM_FISHEYE", "FOOBAR"])
def test_unknown_camera_model(tmp_path, cams, model):
    root = write_colmap(tmp_path / "c", cams)
    if model == "FOOBAR":
        path = root / "sparse/0/cameras.txt"
        path.write_text(path.read_text().replace(" PINHOLE ", " FOOBAR "))
    else:
        colmap_reconstruction(cams, model).write_text(str(root / "sparse/0"))
    message = assert_error(f"camera model '{model}' in '.*cameras.txt' is not supported", root)
    assert ("supported: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE, "
            "SIMPLE_RADIAL_FISHEYE, RADIAL_FISHEYE, SIMPLE_FISHEYE, FISHEYE") in message
    assert "\n" not in message


def test_empty_splits(tmp_path, cams):
    root = write_blender(tmp_path / "b", cams, splits={"train": list(range(10)), "test": []})
    assert_error(f"the test split of '{root}' is empty", root)
    single = write_colmap(tmp_path / "one", orbit_cameras(n=1))
    assert_error("the train split of .* is empty \\(1 images, every 8th", single)


def test_non_finite_and_singular_poses_name_the_frame(tmp_path, cams):
    root = write_transforms(tmp_path / "t", cams)
    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"][6]["transform_matrix"][1][2] = float("nan")
    (root / "transforms.json").write_text(json.dumps(meta))
    assert_error("frame '.*cam_006.png' contains non-finite values", root)
    blender = write_blender(tmp_path / "b", cams)
    meta = json.loads((blender / "transforms_train.json").read_text())
    meta["frames"][0]["transform_matrix"][0][:3] = [0.0, 0.0, 0.0]
    (blender / "transforms_train.json").write_text(json.dumps(meta))
    assert_error("frame '.*cam_002.png' is not a rotation plus translation", blender)


def test_missing_json_keys_are_named(tmp_path, cams):
    blender = write_blender(tmp_path / "b", cams)
    meta = json.loads((blender / "transforms_val.json").read_text())
    del meta["camera_angle_x"]
    (blender / "transforms_val.json").write_text(json.dumps(meta))
    assert_error("transforms_val.json' has no 'camera_angle_x'", blender)

    root = write_transforms(tmp_path / "t", cams)
    meta = json.loads((root / "transforms.json").read_text())
    del meta["fl_x"], meta["fl_y"]
    (root / "transforms.json").write_text(json.dumps(meta))
    assert_error("transforms.json' gives no focal length .* 'fl_x'", root)
    del meta["frames"][2]["transform_matrix"]
    meta["fl_x"] = 30.0
    (root / "transforms.json").write_text(json.dumps(meta))
    assert_error("frame 2 in '.*transforms.json' has no 'transform_matrix'", root)
    (root / "transforms.json").write_text("{ not json")
    assert_error("transforms.json' could not be read as JSON", root)


def test_bad_arguments(tmp_path, cams):
    root = write_colmap(tmp_path / "c", cams)
    assert_error("downscale must be a number >= 1", root, downscale=0.5)
    assert_error("split_every must be an integer >= 2", root, split_every=1)
    assert_error("scene kind 'indoor' is not one of object, unbounded", root, kind="indoor")


def test_downscaling_rgba_keeps_transparent_colour_out():
    from nerfkit.data.images import resize_image
    image = np.zeros((4, 4, 4), np.uint8)
    image[:, 0] = [200, 0, 0, 255]          # opaque red next to
    image[:, 1] = [0, 0, 255, 0]            # fully transparent blue
    small = resize_image(image, 2, 2).astype(int)   # premultiplied round trip: +-1 in colour
    np.testing.assert_allclose(small[:, 0], [[200, 0, 0, 128]] * 2, atol=1)

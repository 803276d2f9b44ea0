"""A trained method as the viewer's render function: same picture as the method's own render,
crop box, normals, display modes, training views and keyframes in world coordinates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfkit.viewer.display import available_modes, to_display
from nerfkit.viewer.keyframes import scene_pose_to_world
from nerfkit.viewer.types import ViewRequest


@pytest.fixture(scope="module")
def opened(viewer_run):
    from nerfkit.runs.session import open_run

    _, scene, method, _ = open_run(viewer_run)
    return scene, method


def _request_for(scene, index: int, **kwargs) -> ViewRequest:
    camera = scene.cameras[index]
    width, height = (int(v) for v in camera.sizes[0])
    fov = 2 * math.atan(0.5 * height / float(camera.intrinsics[0, 1]))
    return ViewRequest(camera.c2w[0].double().numpy(), fov, width, height, **kwargs)


def test_a_training_camera_renders_like_the_method_itself(opened):
    from nerfkit.app.viewer_adapter import MethodRenderer

    scene, method = opened
    index = scene.split("test")[0]
    result = MethodRenderer(method)(_request_for(scene, index))
    with torch.no_grad():
        reference = method.render(scene.cameras[index], torch.ones(3))["rgb"].clamp(0, 1).numpy()
    assert result.rgb.shape == reference.shape
    assert np.abs(result.rgb - reference).max() < 1e-4
    # The object is really there: a good part of the image is not the white background.
    assert (np.abs(result.rgb - 1.0).max(-1) > 0.2).mean() > 0.05
    assert set(available_modes(result)) == {"rgb", "depth", "alpha", "normals"}


def test_background_crop_and_normals(opened):
    from nerfkit.app.viewer_adapter import MethodRenderer

    scene, method = opened
    render = MethodRenderer(method)
    index = scene.split("test")[0]
    black = render(_request_for(scene, index, background=(0.0, 0.0, 0.0)))
    empty = black.alpha < 0.05
    assert empty.any() and black.rgb[empty].max() < 0.1
    # A crop box far away from everything leaves only the background.
    cropped = render(_request_for(scene, index, background=(0.0, 1.0, 0.0), crop=((50, 50, 50), (51, 51, 51))))
    assert np.allclose(cropped.rgb, [0.0, 1.0, 0.0]) and cropped.alpha.max() == 0.0
    assert np.isinf(cropped.depth).all()
    # A box around the whole scene changes nothing.
    low, high = scene.aabb.numpy() - 1.0, scene.aabb.numpy() + 1.0
    whole = render(_request_for(scene, index, crop=(tuple(low.min(0)), tuple(high.max(0)))))
    plain = render(_request_for(scene, index))
    assert np.allclose(whole.rgb, plain.rgb)
    solid = np.isfinite(plain.depth) & (np.linalg.norm(plain.normals, axis=-1) > 0)
    assert solid.mean() > 0.02
    assert np.allclose(np.linalg.norm(plain.normals[solid], axis=-1), 1.0, atol=1e-4)
    assert (plain.normals[solid][:, 2] <= 1e-6).all()        # facing the camera (OpenCV: -z)


def test_display_modes_are_distinct_pictures(opened):
    from nerfkit.app.viewer_adapter import MethodRenderer

    scene, method = opened
    result = MethodRenderer(method)(_request_for(scene, scene.split("test")[0]))
    pictures = {mode: to_display(result, mode) for mode in ("rgb", "depth", "alpha", "normals")}
    for mode, picture in pictures.items():
        assert picture.dtype == np.uint8 and picture.shape == (*result.rgb.shape[:2], 3), mode
    assert np.array_equal(pictures["rgb"], (result.rgb * 255 + 0.5).astype(np.uint8))
    modes = list(pictures)
    for a in range(len(modes)):
        for b in range(a + 1, len(modes)):
            assert not np.array_equal(pictures[modes[a]], pictures[modes[b]]), (modes[a], modes[b])


def test_training_views_and_up(opened):
    from nerfkit.app.viewer_adapter import scene_up, training_views

    scene, _ = opened
    views = training_views(scene)
    assert len(views) == len(scene.split("train"))
    assert all(v.thumbnail.dtype == np.uint8 and v.thumbnail.shape[2] == 3 for v in views)
    assert np.allclose(views[0].camera_to_world, scene.cameras.c2w[scene.split("train")[0]].double().numpy())
    up = scene_up(scene)
    assert np.isclose(np.linalg.norm(up), 1.0)
    # Every training camera's 'down' axis points against the up direction (upright photos).
    downs = scene.cameras.c2w[scene.split("train"), :3, 1].double().numpy()
    assert (downs @ up < 0).all()


def test_keyframe_pose_goes_back_to_the_original_world(opened, tmp_path):
    from nerfkit.video.camera_path import (
        CameraPath,
        Keyframe,
        load_camera_path,
        save_camera_path,
    )

    scene, _ = opened
    index = scene.split("train")[0]
    scene_pose = scene.cameras.c2w[index].double().numpy()
    world_to_scene = scene.world_to_scene.double().numpy()
    world_pose = scene_pose_to_world(np.linalg.inv(world_to_scene), scene_pose)
    assert np.allclose(world_pose[:3, :3] @ world_pose[:3, :3].T, np.eye(3), atol=1e-6)
    # The camera centre maps back onto the scene's: x_scene = world_to_scene @ x_world.
    assert np.allclose(world_to_scene[:3, :3] @ world_pose[:3, 3] + world_to_scene[:3, 3], scene_pose[:3, 3],
                       atol=1e-6)
    path = tmp_path / "path.json"
    save_camera_path(path, CameraPath([Keyframe(world_pose, 40.0)], 64, 48, 10, 1.0, False))
    assert np.allclose(load_camera_path(path).keyframes[0].camera_to_world, world_pose)

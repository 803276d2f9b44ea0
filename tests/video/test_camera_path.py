"""Camera paths: the JSON file round-trips exactly and rejects every malformed file with one sentence
naming it; interpolation passes through the keyframes with orthonormal rotations and the right frame
count, and a loop closes as smoothly as it runs; the orbit circles the scene's centre at a constant
distance looking at it; world -> scene conversion keeps every point on the same pixel."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from nerfkit.video.camera_path import (
    ORBIT_FRAMES,
    CameraPath,
    Keyframe,
    frame_times,
    interpolate_path,
    load_camera_path,
    look_at,
    orbit_geometry,
    orbit_path,
    path_cameras,
    sample_path,
    save_camera_path,
)
from nerfkit.data.cameras import project
from nerfkit.core.errors import NerfkitError


def _pose(rotation: Rotation, position) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotation.as_matrix()
    pose[:3, 3] = position
    return pose


def _random_path(count: int = 4, loop: bool = False, seed: int = 0, fps: int = 10,
                 seconds: float = 3.0) -> CameraPath:
    rng = np.random.default_rng(seed)
    rotations = Rotation.random(count, random_state=seed)
    keys = [Keyframe(_pose(rotations[i], rng.normal(size=3) * 3.0), 30.0 + 10.0 * i) for i in range(count)]
    return CameraPath(keys, 64, 48, fps, seconds, loop)


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) rotation angles in radians between (N, 3, 3) rotation stacks."""
    return Rotation.from_matrix(np.einsum("nji,njk->nik", a, b)).magnitude()


# ------------------------------------------------------------------------------- the JSON file


def test_json_round_trip_is_exact(tmp_path):
    path = _random_path(5, loop=True, seconds=2.345)
    path.keyframes[0].camera_to_world[0, 3] = 1e-17 + 1.0 / 3.0      # awkward floats survive too
    target = tmp_path / "sub" / "path.json"
    save_camera_path(target, path)
    loaded = load_camera_path(target)
    assert loaded == path
    for a, b in zip(loaded.keyframes, path.keyframes):
        assert a.camera_to_world.dtype == np.float64 and np.array_equal(a.camera_to_world, b.camera_to_world)
    data = json.loads(target.read_text())
    assert data["format"] == "nerfkit-camera-path" and data["version"] == 1
    assert set(data) == {"format", "version", "width", "height", "fps", "seconds", "loop", "keyframes"}
    assert np.array_equal(np.array(data["keyframes"][2]["camera_to_world"]), path.keyframes[2].camera_to_world)
    assert [p.name for p in target.parent.iterdir()] == ["path.json"]       # no temp file left


def test_save_refuses_a_path_that_would_not_load(tmp_path):
    bad = _random_path(2)
    bad.keyframes[1].camera_to_world[:3, :3] *= 2.0
    with pytest.raises(NerfkitError, match="keyframe 1"):
        save_camera_path(tmp_path / "bad.json", bad)
    assert not list(tmp_path.iterdir())


def _valid_dict() -> dict:
    return {"format": "nerfkit-camera-path", "version": 1, "width": 64, "height": 48, "fps": 30,
            "seconds": 2.0, "loop": False,
            "keyframes": [{"camera_to_world": np.eye(4).tolist(), "fov_y_degrees": 40.0}]}


def _edit(change):
    def make() -> str:
        data = _valid_dict()
        change(data)
        return json.dumps(data)
    return make


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(data):
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value
    return change


def _delete(*keys):
    def change(data):
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]
    return change


_SCALED = (np.eye(4) * [2, 2, 2, 1]).tolist()
_NAN = np.eye(4).tolist()
_NAN[0][3] = float("nan")

MALFORMED = {
    "not json": (lambda: "{\"format\": ", "not valid JSON"),
    "a list": (lambda: "[1, 2]", "expected an object"),
    "other format": (_edit(_set("format", "nerfstudio")), "format"),
    "no version": (_edit(_delete("version")), "version"),
    "no width": (_edit(_delete("width")), "width"),
    "width text": (_edit(_set("width", "64")), "width"),
    "width zero": (_edit(_set("width", 0)), "width"),
    "height float": (_edit(_set("height", 47.5)), "height"),
    "fps bool": (_edit(_set("fps", True)), "fps"),
    "fps fraction": (_edit(_set("fps", 29.97)), "fps"),
    "seconds negative": (_edit(_set("seconds", -1.0)), "seconds"),
    "seconds nan": (_edit(_set("seconds", float("nan"))), "seconds"),
    "seconds text": (_edit(_set("seconds", "5")), "seconds"),
    "too many frames": (_edit(_set("seconds", 1e9)), "frames"),
    "loop text": (_edit(_set("loop", "yes")), "loop"),
    "no keyframes": (_edit(_delete("keyframes")), "keyframes"),
    "zero keyframes": (_edit(_set("keyframes", [])), "at least one keyframe"),
    "keyframe number": (_edit(_set("keyframes", [3])), "keyframe 0"),
    "matrix 3x4": (_edit(_set("keyframes", 0, "camera_to_world", np.eye(4)[:3].tolist())), "4 rows of 4"),
    "matrix text": (_edit(_set("keyframes", 0, "camera_to_world", [["1", 0, 0, 0]] * 4)), "4 rows of 4"),
    "matrix missing": (_edit(_delete("keyframes", 0, "camera_to_world")), "camera_to_world"),
    "matrix nan": (_edit(_set("keyframes", 0, "camera_to_world", _NAN)), "non-finite"),
    "matrix scaled": (_edit(_set("keyframes", 0, "camera_to_world", _SCALED)), "rotation"),
    "matrix mirrored": (_edit(_set("keyframes", 0, "camera_to_world", np.diag([1.0, 1, -1, 1]).tolist())),
                        "rotation"),
    "last row": (_edit(_set("keyframes", 0, "camera_to_world", 3, [0, 0, 1, 1])), "last row"),
    "fov zero": (_edit(_set("keyframes", 0, "fov_y_degrees", 0.0)), "fov_y_degrees"),
    "fov missing": (_edit(_delete("keyframes", 0, "fov_y_degrees")), "fov_y_degrees"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformed_file_is_one_sentence_naming_the_file(tmp_path, case):
    make, expected = MALFORMED[case]
    target = tmp_path / "path.json"
    target.write_text(make())
    with pytest.raises(NerfkitError) as error:
        load_camera_path(target)
    message = str(error.value)
    assert str(target) in message and expected in message and "\n" not in message, message


def test_missing_folder_and_binary_files_are_one_sentence(tmp_path):
    binary = tmp_path / "path.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for target, expected in [(tmp_path / "nope.json", "does not exist"), (tmp_path, "not a file"),
                             (binary, "not")]:
        with pytest.raises(NerfkitError) as error:
            load_camera_path(target)
        assert str(target) in str(error.value) and expected in str(error.value)


def test_a_valid_hand_written_file_loads(tmp_path):
    data = _valid_dict()
    data["fps"] = 24.0                              # an integral float is an integer
    data["keyframes"][0]["camera_to_world"][0][3] = 1      # ints are numbers
    data["comment"] = "extra keys are ignored"
    (tmp_path / "path.json").write_text(json.dumps(data))
    path = load_camera_path(tmp_path / "path.json")
    assert path.fps == 24 and path.frame_count == 48 and path.keyframes[0].camera_to_world[0, 3] == 1.0


# ------------------------------------------------------------------------------ interpolation


@pytest.mark.parametrize("fps,seconds", [(10, 3.0), (30, 5.0), (24, 0.5), (7, 1.0 / 7.0)])
def test_frame_count_is_fps_times_seconds(fps, seconds):
    for loop in (False, True):
        frames = interpolate_path(_random_path(3, loop=loop, fps=fps, seconds=seconds))
        assert len(frames) == round(fps * seconds)


def test_interpolation_passes_through_keyframes_with_orthonormal_rotations():
    path = _random_path(4, fps=10, seconds=3.1)            # 31 frames: every 10th is a keyframe
    frames = interpolate_path(path)
    assert len(frames) == 31
    for frame, key in zip(frames[::10], path.keyframes):
        assert np.array_equal(frame[0], key.camera_to_world) and frame[1] == key.fov_y_degrees
    poses = np.stack([pose for pose, _ in frames])
    rotations = poses[:, :3, :3]
    assert np.abs(np.einsum("nji,njk->nik", rotations, rotations) - np.eye(3)).max() < 1e-9
    assert np.abs(np.linalg.det(rotations) - 1.0).max() < 1e-9
    assert np.array_equal(poses[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (31, 1)))
    # The spline itself goes through the keyframes (not only the snapped frames at integer times).
    for j, key in enumerate(path.keyframes):
        near = np.clip([j - 1e-7, j + 1e-7], 0, 3)
        poses_near, fov_near = sample_path(path, near)
        assert np.abs(poses_near - key.camera_to_world).max() < 1e-5
        assert np.abs(fov_near - key.fov_y_degrees).max() < 1e-5
    # The fov is linear between keyframes; the motion is smooth (no step larger than 3x the mean).
    _, fov = sample_path(path, np.array([0.5, 2.25]))
    assert np.allclose(fov, [35.0, 52.5])
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 3.0 * steps.mean()


def test_a_single_keyframe_is_a_still():
    path = _random_path(1, fps=5, seconds=1.0)
    frames = interpolate_path(path)
    assert len(frames) == 5
    assert all(np.array_equal(pose, path.keyframes[0].camera_to_world) for pose, _ in frames)


def test_two_keyframes_move_in_a_straight_line():
    start, end = _pose(Rotation.identity(), [0, 0, 0]), _pose(Rotation.from_euler("y", 90, degrees=True),
                                                               [4, 0, 0])
    path = CameraPath([Keyframe(start, 40.0), Keyframe(end, 60.0)], 32, 32, fps=5, seconds=1.0)
    poses, fovs = sample_path(path, frame_times(path))
    assert np.allclose(poses[:, :3, 3], np.linspace([0, 0, 0], [4, 0, 0], 5))
    assert np.allclose(fovs, np.linspace(40, 60, 5))
    assert np.allclose(_angles(poses[:-1, :3, :3], poses[1:, :3, :3]), math.radians(22.5))


def test_loop_closes_smoothly():
    path = _random_path(5, loop=True, fps=20, seconds=3.0, seed=3)     # 60 frames, 12 per segment
    frames = interpolate_path(path)
    assert len(frames) == 60
    poses = np.stack([pose for pose, _ in frames])
    assert np.array_equal(poses[0], path.keyframes[0].camera_to_world)
    assert not np.allclose(poses[-1], poses[0])                         # the first frame is not repeated
    # Cyclic first and second differences: the seam (between frame 59 and frame 0) is no rougher
    # than the joins between the other keyframes (frames 12, 24, 36, 48).
    positions = np.concatenate([poses[-2:, :3, 3], poses[:, :3, 3], poses[:2, :3, 3]])
    acceleration = np.linalg.norm(positions[2:] - 2 * positions[1:-1] + positions[:-2], axis=1)[1:-1]
    velocity = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    joins = [12, 24, 36, 48]
    assert acceleration[0] <= 1.5 * max(acceleration[j] for j in joins) + 1e-12
    assert velocity[2] < 3.0 * velocity.mean()                            # the step 59 -> 0
    rotations = np.concatenate([poses[-2:, :3, :3], poses[:, :3, :3], poses[:2, :3, :3]])
    turn = _angles(rotations[:-1], rotations[1:])
    turn_change = np.abs(np.diff(turn))
    assert turn_change[1] <= 1.5 * max(turn_change[j + 1] for j in joins) + 1e-9
    # Sampling the loop at times beyond the period repeats it.
    again, _ = sample_path(path, frame_times(path) + 5.0)
    assert np.allclose(again, poses, atol=1e-9)


def test_loop_of_a_circle_of_keyframes_stays_near_the_circle():
    keys = [Keyframe(look_at([2 * math.cos(a), 2 * math.sin(a), 0.5], [0, 0, 0], [0, 0, 1]), 45.0)
            for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)]
    poses, _ = sample_path(CameraPath(keys, 32, 32, loop=True), np.linspace(0, 8, 97))
    radius = np.linalg.norm(poses[:, :2, 3], axis=1)
    assert np.abs(radius - 2.0).max() < 0.02 and np.allclose(poses[:, 2, 3], 0.5)


# ----------------------------------------------------------------------------------- cameras


def test_look_at_uses_opencv_axes():
    pose = look_at(np.array([0.0, -3.0, 0.0]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
    assert np.allclose(pose[:3, 2], [0, 1, 0])        # z forward: towards the target
    assert np.allclose(pose[:3, 1], [0, 0, -1])       # y down: against up
    assert np.allclose(pose[:3, 0], [1, 0, 0])        # x right
    assert np.isclose(np.linalg.det(pose[:3, :3]), 1.0)


def test_world_to_scene_keeps_every_point_on_its_pixel():
    rng = np.random.default_rng(1)
    frames = [(_pose(Rotation.random(random_state=i), rng.normal(size=3) * 2), 35.0 + 5 * i) for i in range(3)]
    similarity = np.eye(4)
    similarity[:3, :3] = 0.37 * Rotation.from_euler("xyz", [20, -40, 75], degrees=True).as_matrix()
    similarity[:3, 3] = [0.5, -1.25, 3.0]
    world = path_cameras(frames, np.eye(4), 80, 60)
    scene = path_cameras(frames, torch.from_numpy(similarity), 80, 60)
    assert scene.c2w.dtype == torch.float32 and tuple(scene.sizes[0].tolist()) == (80, 60)
    rot = scene.c2w[:, :3, :3].double()
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=torch.float64).expand(3, 3, 3),
                          atol=1e-6)
    for i, (pose, _) in enumerate(frames):
        # Points in front of camera i, in world coordinates, and the same points in scene coordinates.
        local = np.column_stack([rng.uniform(-1, 1, (20, 2)), rng.uniform(1, 5, 20)])
        points = local @ pose[:3, :3].T + pose[:3, 3]
        in_scene = points @ similarity[:3, :3].T + similarity[:3, 3]
        ids = torch.full((20,), i)
        pixels_world = project(world, ids, torch.from_numpy(points))
        pixels_scene = project(scene, ids, torch.from_numpy(in_scene))
        assert torch.allclose(pixels_world, pixels_scene, atol=2e-3), (pixels_world - pixels_scene).abs().max()


def test_fov_is_the_vertical_field_of_view():
    camera = path_cameras([(np.eye(4), 60.0)], np.eye(4), 100, 50)
    top = torch.tensor([[0.0, -math.tan(math.radians(30.0)), 1.0]], dtype=torch.float64)
    pixel = project(camera, torch.zeros(1, dtype=torch.long), top)[0]
    assert torch.allclose(pixel, torch.tensor([50.0, 0.0], dtype=torch.float64), atol=1e-4)


# -------------------------------------------------------------------------------------- orbit


@pytest.fixture(scope="module")
def demo_scene(tiny_demo):
    from nerfkit.data.load import load_scene

    return load_scene(tiny_demo)


def _world_train_poses(scene) -> np.ndarray:
    from nerfkit.data.similarity import transform_c2w
    from nerfkit.data.similarity import invert_similarity

    c2w = scene.cameras.c2w[scene.split("train")].double()
    return transform_c2w(invert_similarity(scene.world_to_scene.double()), c2w).numpy()


def test_orbit_circles_the_centre_at_constant_distance_looking_at_it(demo_scene):
    path = orbit_path(demo_scene)
    geometry = orbit_geometry(demo_scene)
    train = _world_train_poses(demo_scene)
    assert path.loop and path.fps == 30 and len(path.keyframes) == ORBIT_FRAMES
    assert (path.width, path.height) == (32, 32)
    frames = interpolate_path(path)
    assert len(frames) == ORBIT_FRAMES
    poses = np.stack([pose for pose, _ in frames])
    offsets = geometry.center - poses[:, :3, 3]
    distance = np.linalg.norm(offsets, axis=1)
    assert np.allclose(distance, geometry.radius, rtol=1e-9)
    assert np.isclose(geometry.radius, np.linalg.norm(train[:, :3, 3] - geometry.center, axis=1).mean())
    assert np.allclose(np.einsum("ni,ni->n", poses[:, :3, 2], offsets / distance[:, None]), 1.0)
    assert np.abs(poses[:, :3, 0] @ geometry.up).max() < 1e-9                # no roll
    assert (-poses[:, :3, 1] @ geometry.up > 0).all()                          # image up is up
    heights = (poses[:, :3, 3] - geometry.center) @ geometry.up
    assert np.allclose(heights, heights[0])                                     # a level circle
    # The centre is where the training cameras look (the demo's object capture), which the scene
    # normalisation moved to the origin; the fov is the training cameras'.
    centre_in_scene = demo_scene.world_to_scene.double().numpy() @ np.append(geometry.center, 1.0)
    assert np.abs(centre_in_scene[:3]).max() < 1e-6
    intr = demo_scene.cameras.intrinsics[0].double()
    fov = math.degrees(2 * math.atan(0.5 * 32 / float(intr[1])))
    assert all(math.isclose(f, fov, rel_tol=1e-6) for _, f in frames)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.allclose(steps, steps[0])                                         # even speed


def test_orbit_size_and_frames_options(demo_scene):
    path = orbit_path(demo_scene, frames=12, fps=6, width=64)
    assert (path.width, path.height, path.frame_count, path.seconds) == (64, 64, 12, 2.0)
    assert orbit_path(demo_scene, height=20).width == 20
    with pytest.raises(NerfkitError, match="at least 1 frame"):
        orbit_path(demo_scene, frames=0)

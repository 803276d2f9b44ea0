"""Camera paths for videos: keyframes in world coordinates, their JSON file, the default orbit, and
the smooth interpolation between keyframes.

A path lives in the scene's ORIGINAL world coordinates (docs/design.md, "Conventions"), so one file works
for every run of the same scene whatever the normalisation; :func:`path_cameras` moves the frames
into a method's scene coordinates at render time.

The file (``save_camera_path`` / ``load_camera_path``), UTF-8 JSON::

    {
      "format": "nerfkit-camera-path",
      "version": 1,
      "width": 640, "height": 480,          # output size in pixels (ints >= 1)
      "fps": 30,                            # frames per second (int, 1..240)
      "seconds": 5.0,                       # duration (> 0); frames = round(fps * seconds)
      "loop": false,                        # true: the path returns to the first keyframe
      "keyframes": [                        # at least one; evenly spaced in time
        {"camera_to_world": [[r00, r01, r02, tx], [r10, r11, r12, ty], [r20, r21, r22, tz], [0, 0, 0, 1]],
         "fov_y_degrees": 50.0}
      ]
    }

``camera_to_world`` is a 4x4 row-major rigid pose with OpenCV axes (x right, y down, z forward), in
world units; ``fov_y_degrees`` the vertical field of view of a centred pinhole with square pixels.
Keys not listed are ignored.

Interpolation (:func:`interpolate_path`): keyframe ``j`` sits at path time ``j`` (evenly spaced);
positions follow a cubic spline through the keyframes (natural ends; periodic when ``loop``),
rotations scipy's :class:`~scipy.spatial.transform.RotationSpline` (C2 angular motion), the field of
view is linear. An open path's first and last frames are its first and last keyframes; a loop's
frames cover ``[0, K)`` for ``K`` keyframes, so its last frame leads smoothly back to the first.
One keyframe is a still.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation, RotationSpline

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import write_json_atomic
from nerfkit.data.cameras import Cameras
from nerfkit.data.normalize import cameras_look_inward, optical_axis_center
from nerfkit.data.scene import Scene
from nerfkit.data.similarity import invert_similarity, transform_c2w
from nerfkit.video import ORBIT_FPS, ORBIT_FRAMES

__all__ = ["CameraPath", "Keyframe", "frame_times", "interpolate_path", "load_camera_path", "look_at",
           "orbit_geometry", "orbit_path", "path_cameras", "sample_path",
           "save_camera_path"]

FORMAT = "nerfkit-camera-path"
VERSION = 1
MAX_SIZE = 16384             # pixels per side
MAX_FPS = 240
MAX_FRAMES = 100_000
RIGID_TOLERANCE = 1e-3       # |R^T R - I| and |det R - 1| allowed in a file (hand-edited numbers)
ORBIT_MAX_ELEVATION_DEG = 80.0

Frame = tuple[np.ndarray, float]     # (camera_to_world (4, 4) float64 world, fov_y_degrees)


@dataclass(eq=False)
class Keyframe:
    """One pose of a path.

    Attributes:
        camera_to_world: (4, 4) float64 rigid pose, OpenCV axes, the scene's original world
            coordinates and units (stored as a new float64 array).
        fov_y_degrees: vertical field of view in degrees, in (0, 180).
    """

    camera_to_world: np.ndarray
    fov_y_degrees: float

    def __post_init__(self) -> None:
        self.camera_to_world = np.array(self.camera_to_world, dtype=np.float64)
        if self.camera_to_world.shape != (4, 4):
            raise ValueError(f"camera_to_world must be (4, 4), got {self.camera_to_world.shape}")
        self.fov_y_degrees = float(self.fov_y_degrees)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keyframe):
            return NotImplemented
        return (np.array_equal(self.camera_to_world, other.camera_to_world)
                and self.fov_y_degrees == other.fov_y_degrees)


@dataclass
class CameraPath:
    """Keyframes plus the video's size and timing.

    Attributes:
        keyframes: at least one :class:`Keyframe`, evenly spaced in time.
        width, height: output size in pixels.
        fps: frames per second.
        seconds: duration; the video has ``round(fps * seconds)`` frames.
        loop: the path closes: after the last keyframe it returns smoothly to the first.
    """

    keyframes: list[Keyframe]
    width: int
    height: int
    fps: int = 30
    seconds: float = 5.0
    loop: bool = False

    @property
    def frame_count(self) -> int:
        return max(round(self.fps * self.seconds), 1)


# ----------------------------------------------------------------------------------- the file


def save_camera_path(path: Path | str, camera_path: CameraPath) -> None:
    """Write ``camera_path`` as JSON (module docstring) atomically: a temp file, then a rename.

    Raises:
        NerfkitError: the path breaks a rule of the format (the same checks as loading).
    """
    path = Path(path)
    data = _to_dict(camera_path)
    _from_dict(data, path)            # never write a file that would not load
    write_json_atomic(path, data)


def load_camera_path(path: Path | str) -> CameraPath:
    """Read a file written by :func:`save_camera_path` (or by hand in that format).

    Raises:
        NerfkitError: one sentence naming the file and the problem (missing file, not JSON, a
            missing or wrongly typed key, a non-finite or non-rigid pose, no keyframes, bad sizes).
    """
    path = Path(path)
    if not path.exists():
        raise NerfkitError(f"camera path file '{path}' does not exist: expected a JSON file "
                           f"in the {FORMAT} format")
    if not path.is_file():
        raise NerfkitError(f"camera path '{path}' is not a file: expected a JSON file in the "
                           f"{FORMAT} format")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise NerfkitError(f"camera path file '{path}' is not UTF-8 text: expected JSON") from None
    except json.JSONDecodeError as error:
        raise NerfkitError(f"camera path file '{path}' is not valid JSON ({error.msg} at line "
                           f"{error.lineno}, column {error.colno})") from None
    except OSError as error:
        raise NerfkitError(f"camera path file '{path}' cannot be read ({error.strerror})") from None
    return _from_dict(data, path)


def _to_dict(camera_path: CameraPath) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "width": int(camera_path.width),
        "height": int(camera_path.height),
        "fps": int(camera_path.fps),
        "seconds": float(camera_path.seconds),
        "loop": bool(camera_path.loop),
        "keyframes": [{"camera_to_world": [[float(v) for v in row] for row in key.camera_to_world],
                       "fov_y_degrees": float(key.fov_y_degrees)} for key in camera_path.keyframes],
    }


def _from_dict(data: Any, path: Path) -> CameraPath:
    """Check every rule of the format; the first broken one becomes a one-sentence NerfkitError."""
    where = f"camera path file '{path}'"
    if not isinstance(data, dict):
        raise NerfkitError(f"{where} holds a JSON {type(data).__name__}, expected an object")
    if data.get("format") != FORMAT:
        raise NerfkitError(f"{where} has format {data.get('format')!r}, expected '{FORMAT}'")
    if data.get("version") != VERSION:
        raise NerfkitError(f"{where} has version {data.get('version')!r}, expected {VERSION}")
    width = _integer(data, "width", 1, MAX_SIZE, where)
    height = _integer(data, "height", 1, MAX_SIZE, where)
    fps = _integer(data, "fps", 1, MAX_FPS, where)
    seconds = _number(data, "seconds", where)
    if not seconds > 0:
        raise NerfkitError(f"{where} has seconds {seconds!r}, expected a positive number")
    if not 1 <= round(fps * seconds) <= MAX_FRAMES:
        raise NerfkitError(f"{where} asks for {round(fps * seconds)} frames (fps x seconds), "
                           f"expected 1 to {MAX_FRAMES}")
    loop = data.get("loop")
    if not isinstance(loop, bool):
        raise NerfkitError(f"{where} has loop {loop!r}, expected true or false")
    keyframes = data.get("keyframes")
    if not isinstance(keyframes, list) or not keyframes:
        raise NerfkitError(f"{where} needs 'keyframes': a list of at least one keyframe")
    return CameraPath([_keyframe(item, i, where) for i, item in enumerate(keyframes)],
                      width, height, fps, seconds, loop)


def _integer(data: dict, key: str, low: int, high: int, where: str) -> int:
    value = data.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise NerfkitError(f"{where} has {key} {value!r}, expected an integer from {low} to {high}")
    return value


def _number(data: dict, key: str, where: str) -> float:
    value = data.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise NerfkitError(f"{where} has {key} {value!r}, expected a finite number")
    return float(value)


def _keyframe(item: Any, index: int, where: str) -> Keyframe:
    name = f"{where}, keyframe {index},"
    if not isinstance(item, dict):
        raise NerfkitError(f"{name} is a JSON {type(item).__name__}, expected an object")
    rows = item.get("camera_to_world")
    if not (isinstance(rows, list) and len(rows) == 4 and all(
            isinstance(row, list) and len(row) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in row) for row in rows)):
        raise NerfkitError(f"{name} needs 'camera_to_world': 4 rows of 4 numbers")
    matrix = np.array(rows, dtype=np.float64)
    problem = _pose_problem(matrix)
    if problem:
        raise NerfkitError(f"{name} has a camera_to_world that {problem}")
    fov = _number(item, "fov_y_degrees", name)
    if not 0.0 < fov < 180.0:
        raise NerfkitError(f"{name} has fov_y_degrees {fov!r}, expected degrees between 0 and 180")
    return Keyframe(matrix, fov)


def _pose_problem(matrix: np.ndarray) -> str:
    """'' for a (4, 4) rigid pose, else what is wrong with it (the end of a sentence)."""
    if not np.isfinite(matrix).all():
        return "holds non-finite values (NaN or infinity)"
    if np.abs(matrix[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-9:
        return f"has last row {matrix[3].tolist()}, expected [0, 0, 0, 1]"
    rotation = matrix[:3, :3]
    orthogonal = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
    det = float(np.linalg.det(rotation))
    if orthogonal > RIGID_TOLERANCE or abs(det - 1.0) > RIGID_TOLERANCE:
        return f"is not a rotation plus translation (rotation determinant {det:.4g}, expected 1)"
    return ""


# ---------------------------------------------------------------------------- interpolation


def frame_times(camera_path: CameraPath) -> np.ndarray:
    """(N,) float64 path time of each frame (keyframe ``j`` at time ``j``), N = ``frame_count``.

    Open: evenly from the first keyframe (0) to the last (K - 1). Loop: ``i * K / N``, so the
    frame after the last would be the first again.
    """
    count, keys = camera_path.frame_count, len(camera_path.keyframes)
    if keys == 1:
        return np.zeros(count)
    if camera_path.loop:
        return np.arange(count, dtype=np.float64) * keys / count
    return np.linspace(0.0, keys - 1.0, count)


def sample_path(camera_path: CameraPath, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The path at arbitrary times (keyframe ``j`` at time ``j``; a loop has period K).

    Args:
        times: (N,) path times; an open path is clamped to ``[0, K - 1]``.
    Returns:
        camera_to_world (N, 4, 4) float64 world, fov_y_degrees (N,) float64. At integer times the
        keyframes themselves, bit for bit.
    """
    keys = camera_path.keyframes
    count = len(keys)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    poses = np.stack([key.camera_to_world for key in keys])
    fovs = np.array([key.fov_y_degrees for key in keys])
    if count == 1:
        return np.repeat(poses[:1], len(times), 0), np.repeat(fovs[:1], len(times))
    if camera_path.loop:
        times = np.mod(times, count)
        knots = np.arange(count + 1, dtype=np.float64)
        positions = CubicSpline(knots, np.concatenate([poses[:, :3, 3], poses[:1, :3, 3]]),
                                bc_type="periodic")(times)
        # RotationSpline has no periodic mode: spline three laps and read the middle one, so the
        # closing segment is as smooth as the others.
        laps = np.arange(-count, 2 * count + 1, dtype=np.float64)
        rotations = Rotation.from_matrix(poses[np.mod(laps, count).astype(int), :3, :3])
        rotation = RotationSpline(laps, rotations)(times).as_matrix()
        fov = np.interp(times, knots, np.concatenate([fovs, fovs[:1]]))
    else:
        times = np.clip(times, 0.0, count - 1.0)
        knots = np.arange(count, dtype=np.float64)
        positions = CubicSpline(knots, poses[:, :3, 3], bc_type="natural")(times)
        rotation = RotationSpline(knots, Rotation.from_matrix(poses[:, :3, :3]))(times).as_matrix()
        fov = np.interp(times, knots, fovs)
    out = np.tile(np.eye(4), (len(times), 1, 1))
    out[:, :3, :3] = rotation
    out[:, :3, 3] = positions
    on_key = np.isclose(times, np.round(times), rtol=0.0, atol=1e-12)
    for i in np.flatnonzero(on_key):
        j = round(times[i]) % count
        out[i], fov[i] = poses[j], fovs[j]
    return out, fov


def interpolate_path(camera_path: CameraPath) -> list[Frame]:
    """Every frame of the video: ``round(fps * seconds)`` pairs ``(c2w (4, 4) float64 world, fov_y
    degrees)``, smooth through the keyframes (module docstring)."""
    poses, fovs = sample_path(camera_path, frame_times(camera_path))
    return [(pose, float(fov)) for pose, fov in zip(poses, fovs)]


# ----------------------------------------------------------------------------------- cameras


def focal_from_fov(fov_y_degrees: float, height: int) -> float:
    """Focal length in pixels of a centred pinhole with ``height`` rows and that vertical fov."""
    return 0.5 * height / math.tan(math.radians(fov_y_degrees) * 0.5)


def path_cameras(frames: Sequence[Frame], world_to_scene: torch.Tensor | np.ndarray,
                 width: int, height: int) -> Cameras:
    """Frames (world coordinates) as nerfkit :class:`Cameras` in a method's scene coordinates.

    Args:
        frames: ``(c2w (4, 4) world, fov_y_degrees)`` pairs, e.g. from :func:`interpolate_path`.
        world_to_scene: (4, 4) similarity ``x_scene = world_to_scene @ x_world``
            (``Scene.world_to_scene``); the camera axes are rotated, its position also scaled.
        width, height: image size in pixels.
    Returns:
        N pinhole cameras: c2w (N, 4, 4) float32 scene coordinates with orthonormal rotations,
        ``fx = fy`` from the fov, principal point at the image centre, no distortion.
    """
    if not frames:
        raise ValueError("path_cameras needs at least one frame")
    c2w_world = torch.from_numpy(np.stack([np.asarray(pose, dtype=np.float64) for pose, _ in frames]))
    similarity = torch.as_tensor(world_to_scene, dtype=torch.float64)
    c2w = transform_c2w(similarity, c2w_world)
    focal = torch.tensor([focal_from_fov(fov, height) for _, fov in frames], dtype=torch.float64)
    count = len(frames)
    intrinsics = torch.stack([focal, focal, torch.full((count,), width / 2.0, dtype=torch.float64),
                              torch.full((count,), height / 2.0, dtype=torch.float64)], -1)
    sizes = torch.tensor([[width, height]], dtype=torch.int64).repeat(count, 1)
    return Cameras(c2w.float(), intrinsics.float(), sizes, torch.zeros(count, 5))


# --------------------------------------------------------------------------------------- orbit


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(4, 4) float64 OpenCV camera-to-world at ``position`` (3,) looking at ``target`` (3,) with
    image-up as close to ``up`` (3,) as possible (camera y axis = down)."""
    forward = np.asarray(target, np.float64) - np.asarray(position, np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(-np.asarray(up, np.float64), forward)
    if np.linalg.norm(right) < 1e-9:                     # looking straight along up: any right
        right = np.cross(forward, [1.0, 0.0, 0.0] if abs(forward[0]) < 0.9 else [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, position
    return pose


@dataclass(frozen=True)
class OrbitGeometry:
    """The circle of :func:`orbit_path`, in world coordinates.

    Attributes:
        center: (3,) the point every frame looks at. up: (3,) unit axis of the circle.
        radius: distance of every camera to ``center`` (world units).
        elevation_degrees: angle of the cameras above the plane through ``center`` normal to ``up``.
        start: (3,) unit direction (normal to ``up``) of the first frame's azimuth.
    """

    center: np.ndarray
    up: np.ndarray
    radius: float
    elevation_degrees: float
    start: np.ndarray = field(repr=False)


def orbit_geometry(scene: Scene, split: str = "train") -> OrbitGeometry:
    """The circle around the scene that the training cameras suggest.

    Centre: the look-at point of the cameras when they surround one (an object capture), else the
    centre of the scene box; up: the mean camera up (-y); radius and elevation: the cameras' means
    about that centre; the orbit starts at the first camera's azimuth.
    """
    c2w = _world_poses(scene, split)
    if cameras_look_inward(torch.from_numpy(c2w)):
        center = optical_axis_center(torch.from_numpy(c2w)).numpy()
    else:
        box_center = scene.aabb.double().mean(0).numpy()
        center = _scene_to_world(scene) @ np.append(box_center, 1.0)
        center = center[:3]
    up = -c2w[:, :3, 1].mean(0)
    up = up / np.linalg.norm(up) if np.linalg.norm(up) > 1e-6 else -c2w[0, :3, 1]
    offsets = c2w[:, :3, 3] - center
    distances = np.linalg.norm(offsets, axis=1)
    if float(distances.mean()) < 1e-9:
        raise NerfkitError(f"cannot build an orbit for scene '{scene.root}': its {split} cameras all "
                           "sit at the scene centre; give a camera path with --path")
    sines = np.clip((offsets @ up) / np.maximum(distances, 1e-12), -1.0, 1.0)
    elevation = float(np.clip(np.degrees(np.arcsin(sines)).mean(), -ORBIT_MAX_ELEVATION_DEG,
                              ORBIT_MAX_ELEVATION_DEG))
    start = offsets[0] - (offsets[0] @ up) * up
    if np.linalg.norm(start) < 1e-9 * max(float(distances[0]), 1e-12):
        start = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    return OrbitGeometry(center, up, float(distances.mean()), elevation, start / np.linalg.norm(start))


def orbit_path(scene: Scene, frames: int = ORBIT_FRAMES, fps: int = ORBIT_FPS, width: int | None = None,
               height: int | None = None, split: str = "train") -> CameraPath:
    """The built-in path: one turn around :func:`orbit_geometry`'s circle, looking at its centre.

    Args:
        scene: the loaded scene (its training cameras and ``world_to_scene``).
        frames: frames of the whole turn (one keyframe per frame, so every frame lies exactly on
            the circle); the video lasts ``frames / fps`` seconds.
        width, height: output size; by default the first training camera's (one given: the other
            keeps that camera's aspect).
    Returns:
        A looping :class:`CameraPath` in world coordinates with the training cameras' mean
        vertical field of view.
    """
    if frames < 1:
        raise NerfkitError(f"an orbit needs at least 1 frame, got {frames}")
    geometry = orbit_geometry(scene, split)
    cameras = scene.cameras[scene.split(split)]
    base_width, base_height = (int(v) for v in cameras.sizes[0])
    if width is None and height is None:
        width, height = base_width, base_height
    elif height is None:
        height = max(round(width * base_height / base_width), 1)
    elif width is None:
        width = max(round(height * base_width / base_height), 1)
    fov = float(np.degrees(2.0 * np.arctan(0.5 * cameras.sizes[:, 1].double()
                                           / cameras.intrinsics[:, 1].double()).numpy()).mean())
    side = np.cross(geometry.up, geometry.start)
    elevation = math.radians(geometry.elevation_degrees)
    keyframes = []
    for angle in np.arange(frames) * (2.0 * math.pi / frames):
        around = math.cos(angle) * geometry.start + math.sin(angle) * side
        position = geometry.center + geometry.radius * (math.cos(elevation) * around
                                                        + math.sin(elevation) * geometry.up)
        keyframes.append(Keyframe(look_at(position, geometry.center, geometry.up), fov))
    return CameraPath(keyframes, int(width), int(height), fps, frames / fps, loop=True)


def _scene_to_world(scene: Scene) -> np.ndarray:
    return invert_similarity(scene.world_to_scene.double().cpu()).numpy()


def _world_poses(scene: Scene, split: str) -> np.ndarray:
    """(N, 4, 4) float64 camera-to-world of a split in the original world coordinates."""
    c2w = scene.cameras.c2w[scene.split(split)].double().cpu()
    return transform_c2w(torch.from_numpy(_scene_to_world(scene)), c2w).numpy()

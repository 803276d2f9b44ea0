"""instant-ngp / nerfstudio ``transforms.json`` -> a :class:`Scene` in original world coordinates.

Intrinsics are read from the top level and may be overridden per frame: ``fl_x, fl_y, cx, cy, w,
h, k1, k2, k3, p1, p2, camera_angle_x, camera_angle_y``, and the lens: ``camera_model`` (one of
:data:`SUPPORTED_CAMERA_MODELS`; nerfstudio's ``OPENCV_FISHEYE`` and instant-ngp's
``is_fisheye: true`` are the equidistant fisheye with ``k1, k2, k3, k4``). ``transform_matrix`` is an OpenGL
camera-to-world (4x4 or 3x4), converted to OpenCV here; ``file_path`` is relative to the json's
folder. nerfstudio's ``train_filenames`` / ``val_filenames`` / ``test_filenames`` give the splits
and ``ply_file_path`` an optional point cloud in the same world coordinates.

The JSON helpers here are shared with the NeRF-synthetic reader (:mod:`nerfkit.data.blender`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import plyfile
import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.data.cameras import Cameras, opengl_to_opencv
from nerfkit.data.images import check_images_exist, image_size, resolve_image_path
from nerfkit.data.scene import Scene

FISHEYE_MODEL = "OPENCV_FISHEYE"
SUPPORTED_CAMERA_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", FISHEYE_MODEL)
_DISTORTION_KEYS = ("k1", "k2", "p1", "p2", "k3")
_FISHEYE_KEYS = ("k1", "k2", "k3", "k4")
_UNSUPPORTED_DISTORTION_KEYS = ("k4", "k5", "k6")
_UNSUPPORTED_FISHEYE_KEYS = ("p1", "p2", "k5", "k6")


def read_json(path: Path) -> dict:
    """The top-level object of a JSON file; NerfkitError naming the file when it is not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:   # ValueError: bad JSON or UTF-8
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NerfkitError(f"'{path}' could not be read as JSON: {reason}") from None
    if not isinstance(data, dict):
        raise NerfkitError(f"'{path}' must hold a JSON object at the top level")
    return data


def json_number(value, key: str, path: Path, owner: str = "") -> float:
    """``value`` as a finite float, or NerfkitError naming ``key`` (of ``owner``) and the file.

    JSON booleans and strings are refused even where Python could convert them.
    """
    where = f"'{key}'{f' of {owner}' if owner else ''} in '{path}'"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NerfkitError(f"{where} is {_short(value)}, expected a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise NerfkitError(f"{where} is {_short(value)}, expected a finite number")
    return number


def _short(value) -> str:
    """A JSON value for an error message, cut to 40 characters."""
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def json_frames(meta: dict, path: Path) -> list[dict]:
    """The ``frames`` list of a transforms file."""
    frames = meta.get("frames")
    if not isinstance(frames, list):
        raise NerfkitError(f"'{path}' has no 'frames' list")
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise NerfkitError(f"frame {index} in '{path}' is not a JSON object")
    return frames


def frame_value(frame: dict, key: str, index: int, path: Path):
    """``frame[key]``, or NerfkitError naming the key, the frame and the file."""
    if key not in frame:
        raise NerfkitError(f"frame {index} in '{path}' has no '{key}'")
    return frame[key]


def frame_c2w(frame: dict, index: int, path: Path) -> Tensor:
    """(4, 4) float64 OpenCV camera-to-world from a frame's OpenGL ``transform_matrix``."""
    raw = frame_value(frame, "transform_matrix", index, path)
    try:
        if isinstance(raw, (str, bytes, dict)):
            raise TypeError("not a list")
        matrix = torch.tensor(raw, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise NerfkitError(f"'transform_matrix' of frame {index} in '{path}' is not a matrix of "
                           "numbers") from None
    if matrix.shape == (3, 4):
        matrix = torch.cat([matrix, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)])
    if matrix.shape != (4, 4):
        raise NerfkitError(f"'transform_matrix' of frame {index} in '{path}' has shape "
                           f"{tuple(matrix.shape)}, expected 4x4")
    return opengl_to_opencv(matrix)


def frame_image_path(frame: dict, index: int, path: Path) -> Path:
    """The image file of a frame: ``file_path`` relative to the json's folder (suffix optional)."""
    relative = frame_value(frame, "file_path", index, path)
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise NerfkitError(f"'file_path' of frame {index} in '{path}' is not a file name")
    try:
        return resolve_image_path(Path(os.path.normpath(path.parent / relative)))
    except (OSError, ValueError) as exc:      # e.g. a name too long for the file system
        raise NerfkitError(f"'file_path' of frame {index} in '{path}' is not a usable file name "
                           f"({getattr(exc, 'strerror', None) or exc})") from None


def frame_mask_path(frame: dict, index: int, path: Path) -> Path | None:
    """The mask file a frame names (nerfstudio's ``mask_path``, relative to the json's folder,
    suffix optional), or None when it names none."""
    relative = frame.get("mask_path")
    if relative is None:
        return None
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise NerfkitError(f"'mask_path' of frame {index} in '{path}' is not a file name")
    return resolve_image_path(Path(os.path.normpath(path.parent / relative)))


def _intrinsics(meta: dict, frame: dict, image: Path, path: Path) -> tuple[list[float], list[float],
                                                                          tuple[int, int], bool]:
    """``[fx, fy, cx, cy]``, the distortion (``[k1, k2, p1, p2, k3]``, or ``[k1, k2, k3, k4, 0]``
    of a fisheye), ``(w, h)`` and whether the frame's camera is a fisheye."""
    def get(key: str):
        return frame.get(key, meta.get(key))

    def number(key: str) -> float | None:
        value = get(key)
        return None if value is None else json_number(value, key, path, f"'{image.name}'")

    model = get("camera_model")
    if model is not None and model not in SUPPORTED_CAMERA_MODELS:
        raise NerfkitError(f"camera model '{model}' in '{path}' is not supported; "
                           f"supported: {', '.join(SUPPORTED_CAMERA_MODELS)}")
    if get("is_fisheye") and model not in (None, FISHEYE_MODEL):
        raise NerfkitError(f"'{path}' sets 'is_fisheye' for camera model '{model}': expected "
                           f"camera_model {FISHEYE_MODEL} (or none) for a fisheye")
    fisheye = model == FISHEYE_MODEL or bool(get("is_fisheye"))
    keys = _FISHEYE_KEYS if fisheye else _DISTORTION_KEYS
    for key in _UNSUPPORTED_FISHEYE_KEYS if fisheye else _UNSUPPORTED_DISTORTION_KEYS:
        if get(key):
            raise NerfkitError(f"distortion coefficient '{key}' in '{path}' is not supported "
                               f"for {FISHEYE_MODEL if fisheye else 'pinhole'} cameras (only "
                               f"{', '.join(keys)})")
    width, height = number("w"), number("h")
    if width is None or height is None:
        width, height = image_size(image)
    for key, value in (("w", width), ("h", height)):
        if value < 1 or not float(value).is_integer():
            raise NerfkitError(f"'{key}' of '{image.name}' in '{path}' is {value}, expected a "
                               "whole number of pixels >= 1")
    width, height = int(width), int(height)
    fx, fy = number("fl_x"), number("fl_y")
    if fx is None and get("camera_angle_x") is not None:
        fx = 0.5 * width / math.tan(0.5 * _angle(number("camera_angle_x"), "camera_angle_x", path))
    if fy is None and get("camera_angle_y") is not None:
        fy = 0.5 * height / math.tan(0.5 * _angle(number("camera_angle_y"), "camera_angle_y", path))
    if fx is None:
        fx = fy
    if fx is None:
        raise NerfkitError(f"'{path}' gives no focal length for '{image.name}': expected key "
                           "'fl_x' (or 'camera_angle_x')")
    fy = fx if fy is None else fy
    if fx <= 0 or fy <= 0:
        raise NerfkitError(f"the focal length of '{image.name}' in '{path}' is {min(fx, fy)}, "
                           "expected a positive number of pixels")
    cx = number("cx") if get("cx") is not None else 0.5 * width
    cy = number("cy") if get("cy") is not None else 0.5 * height
    distortion = [number(key) or 0.0 for key in keys] + ([0.0] if fisheye else [])
    return [float(fx), float(fy), float(cx), float(cy)], distortion, (width, height), fisheye


def _angle(value: float, key: str, path: Path) -> float:
    """A field of view in radians, checked to lie in (0, pi)."""
    if not 0.0 < value < math.pi:
        raise NerfkitError(f"'{key}' in '{path}' is {value}, expected radians in (0, pi)")
    return value


def _given_splits(meta: dict, paths: list[Path], path: Path) -> dict[str, list[int]]:
    """nerfstudio's ``{split}_filenames`` lists -> camera indices (empty when none are given)."""
    index_of = {os.path.normpath(p): i for i, p in enumerate(paths)}
    splits = {}
    for split in ("train", "val", "test"):
        names = meta.get(f"{split}_filenames")
        if names is None:
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) and n and "\0" not in n
                                                  for n in names):
            raise NerfkitError(f"'{split}_filenames' in '{path}' must be a list of file names")
        indices = []
        for name in names:
            resolved = os.path.normpath(resolve_image_path(path.parent / name))
            if resolved not in index_of:
                raise NerfkitError(f"'{split}_filenames' in '{path}' lists '{name}', which is "
                                   "not a frame of that file")
            indices.append(index_of[resolved])
        splits[split] = sorted(indices)
    return splits


def read_ply_points(meta: dict, path: Path) -> tuple[Tensor | None, Tensor | None]:
    """nerfstudio's ``ply_file_path`` point cloud: (P, 3) float64 xyz and (P, 3) uint8 colours.

    The points share the frames' world coordinates. (None, None) when the key is absent.
    """
    if not meta.get("ply_file_path"):
        return None, None
    if not isinstance(meta["ply_file_path"], str) or "\0" in meta["ply_file_path"]:
        raise NerfkitError(f"'ply_file_path' in '{path}' must be a file name, got "
                           f"{_short(meta['ply_file_path'])}")
    ply_path = path.parent / meta["ply_file_path"]
    if not ply_path.is_file():
        raise NerfkitError(f"point cloud '{ply_path}' named by 'ply_file_path' in '{path}' is "
                           "missing")
    try:
        vertex = plyfile.PlyData.read(str(ply_path))["vertex"]
        xyz = np.stack([vertex[axis] for axis in "xyz"], -1).astype(np.float64)
        names = vertex.data.dtype.names
        rgb = (np.stack([vertex[c] for c in ("red", "green", "blue")], -1).astype(np.uint8)
               if "red" in names else np.full_like(xyz, 128, dtype=np.uint8))
    except Exception as exc:
        raise NerfkitError(f"point cloud '{ply_path}' could not be read: {exc}") from exc
    return torch.from_numpy(xyz), torch.from_numpy(rgb)


def scene_kind_hint(meta: dict, path: Path) -> str:
    """``"unbounded"`` for ``aabb_scale > 1``, ``"object"`` for ``<= 1``, else ``"auto"``."""
    aabb_scale = meta.get("aabb_scale")
    if aabb_scale is None:
        return "auto"
    return "unbounded" if json_number(aabb_scale, "aabb_scale", path) > 1 else "object"


def parse_transforms_json(root: Path, filename: str = "transforms.json") -> Scene:
    """Read ``root/transforms.json`` (images are checked to exist, not read).

    Returns:
        A :class:`Scene` in original world coordinates: ``world_to_scene`` is the identity,
        ``images`` is empty, cameras are float64 and sorted by image path (as nerfstudio does),
        ``splits`` is empty unless the file lists them, ``extras["kind"]`` is the
        ``aabb_scale`` hint, ``extras["size_source"]`` the json file and ``extras["mask_paths"]``
        each frame's ``mask_path`` (None where it has none).
    """
    path = root / filename
    meta = read_json(path)
    frames = json_frames(meta, path)
    if not frames:
        raise NerfkitError(f"'{path}' has an empty 'frames' list")
    paths = [frame_image_path(frame, i, path) for i, frame in enumerate(frames)]
    order = sorted(range(len(frames)), key=lambda i: str(paths[i]))
    frames, paths = [frames[i] for i in order], [paths[i] for i in order]
    check_images_exist(paths, path)
    c2w = torch.stack([frame_c2w(frame, order[i], path) for i, frame in enumerate(frames)])
    intrinsics, distortion, sizes, fisheye = zip(*(_intrinsics(meta, frame, image, path)
                                                   for frame, image in zip(frames, paths)))
    cameras = Cameras(c2w, torch.tensor(intrinsics, dtype=torch.float64),
                      torch.tensor(sizes, dtype=torch.int64),
                      torch.tensor(distortion, dtype=torch.float64), torch.tensor(fisheye, dtype=torch.bool))
    hint = scene_kind_hint(meta, path)
    points, points_rgb = read_ply_points(meta, path)
    return Scene(name=root.name, root=root, format="transforms", image_paths=paths, images=[],
                 cameras=cameras, splits=_given_splits(meta, paths, path),
                 world_to_scene=torch.eye(4, dtype=torch.float64),
                 aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]), unbounded=hint == "unbounded",
                 points3d=points, points_rgb=points_rgb,
                 extras={"kind": hint, "size_source": path, "aabb_scale": meta.get("aabb_scale"),
                         "mask_paths": [frame_mask_path(frame, order[i], path) for i, frame in enumerate(frames)]})

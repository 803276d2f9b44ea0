"""Write tiny synthetic scenes in every supported format from one set of known cameras.

The writers use only numpy, json, imageio and pycolmap (never nerfkit's readers), so a loader
test compares nerfkit against an independent description of the same cameras.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pycolmap

GL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])   # OpenCV <-> OpenGL camera axes (an involution)


@dataclass
class KnownCameras:
    """Ground truth in world coordinates.

    Attributes:
        c2w: (N, 4, 4) float64 camera-to-world, OpenCV axes.
        intrinsics: (N, 4) ``fx, fy, cx, cy`` (pixel centres at +0.5).
        sizes: (N, 2) int ``width, height``.
        distortion: (N, 5) OpenCV ``k1, k2, p1, p2, k3`` (a fisheye model's ``k1, k2, k3, k4, 0``).
        names: N image stems (``cam_000``), sorted in camera order.
        center: (3,) the point all cameras look at.
    """

    c2w: np.ndarray
    intrinsics: np.ndarray
    sizes: np.ndarray
    distortion: np.ndarray
    names: list[str]
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __len__(self) -> int:
        return len(self.names)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(4, 4) OpenCV camera-to-world at ``eye`` looking at ``target``, image "up" towards ``up``."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, y, z], 1)
    c2w[:3, 3] = eye
    return c2w


def orbit_cameras(n: int = 10, width: int = 32, height: int = 24, focal: float = 30.0,
                  center=(0.7, -1.2, 0.4), radius: float = 3.5) -> KnownCameras:
    """``n`` cameras on a tilted ring around ``center``, all looking at it (an object capture).

    Intrinsics are the ones every format can express: ``fx = fy``, principal point at the centre.
    """
    center = np.asarray(center, dtype=np.float64)
    c2w = []
    for i in range(n):
        azimuth = 2 * math.pi * i / n
        elevation = math.radians(20.0 + 15.0 * math.sin(3 * azimuth))
        offset = radius * np.array([math.cos(azimuth) * math.cos(elevation),
                                    math.sin(azimuth) * math.cos(elevation), math.sin(elevation)])
        c2w.append(look_at(center + offset, center))
    intrinsics = np.tile([focal, focal, width / 2, height / 2], (n, 1)).astype(np.float64)
    return KnownCameras(np.stack(c2w), intrinsics, np.tile([width, height], (n, 1)),
                        np.zeros((n, 5)), [f"cam_{i:03d}" for i in range(n)], center)


def make_image(index: int, width: int, height: int, alpha: bool = False) -> np.ndarray:
    """A deterministic uint8 (H, W, 3|4) test image: gradients plus noise seeded by ``index``."""
    rng = np.random.default_rng(index)
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1),
                    rng.integers(0, 256, (height, width))], -1).astype(np.uint8)
    if not alpha:
        return rgb
    return np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], -1)


def write_images(folder: Path, cams: KnownCameras, alpha: bool = False,
                 suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(cams.names):
        width, height = (int(v) for v in cams.sizes[i])
        iio.imwrite(folder / f"{name}{suffix}", make_image(i, width, height, alpha))


def colmap_params(model: str, intrinsics: np.ndarray, distortion: np.ndarray) -> list[float]:
    """COLMAP parameter vector of ``model`` for one camera (``fx`` doubles as ``f``)."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    k1, k2, p1, p2, _ = (float(v) for v in distortion)
    return {
        "SIMPLE_PINHOLE": [fx, cx, cy],
        "PINHOLE": [fx, fy, cx, cy],
        "SIMPLE_RADIAL": [fx, cx, cy, k1],
        "RADIAL": [fx, cx, cy, k1, k2],
        "OPENCV": [fx, fy, cx, cy, k1, k2, p1, p2],
        # the fisheyes' third and fourth coefficients sit where a pinhole's p1, p2 do
        "OPENCV_FISHEYE": [fx, fy, cx, cy, k1, k2, p1, p2],
        "SIMPLE_RADIAL_FISHEYE": [fx, cx, cy, k1],
        "RADIAL_FISHEYE": [fx, cx, cy, k1, k2],
        "SIMPLE_FISHEYE": [fx, cx, cy],
        "FISHEYE": [fx, fy, cx, cy],
    }[model]


WRITABLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE",
                   "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "SIMPLE_FISHEYE", "FISHEYE")


def colmap_reconstruction(cams: KnownCameras, model: str = "PINHOLE",
                          points: np.ndarray | None = None,
                          colors: np.ndarray | None = None) -> pycolmap.Reconstruction:
    """A pycolmap reconstruction with one camera per image (ids 1..N) and optional points."""
    rec = pycolmap.Reconstruction()
    for i, name in enumerate(cams.names):
        width, height = (int(v) for v in cams.sizes[i])
        camera = pycolmap.Camera.create_from_model_name(i + 1, model, 1.0, width, height)
        if model in WRITABLE_MODELS:
            camera.params = colmap_params(model, cams.intrinsics[i], cams.distortion[i])
        rec.add_camera_with_trivial_rig(camera)
        w2c = np.linalg.inv(cams.c2w[i])
        image = pycolmap.Image(name=f"{name}.png", camera_id=i + 1, image_id=i + 1)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(w2c[:3, :4]))
    if points is not None:
        for xyz, rgb in zip(points, colors):
            rec.add_point3D(np.asarray(xyz, np.float64), pycolmap.Track(),
                            np.asarray(rgb, np.uint8))
    return rec


def write_colmap(root: Path, cams: KnownCameras, binary: bool = False, model: str = "PINHOLE",
                 points: np.ndarray | None = None, colors: np.ndarray | None = None,
                 sparse_subdir: str = "sparse/0") -> Path:
    """``root/images/*.png`` + ``root/sparse/0`` (text or binary model). Returns ``root``."""
    write_images(root / "images", cams)
    model_dir = root / sparse_subdir
    model_dir.mkdir(parents=True, exist_ok=True)
    rec = colmap_reconstruction(cams, model, points, colors)
    (rec.write_binary if binary else rec.write_text)(str(model_dir))
    return root


def _gl_matrix(c2w: np.ndarray) -> list[list[float]]:
    return (c2w @ GL_FLIP).tolist()


def write_blender(root: Path, cams: KnownCameras,
                  splits: dict[str, list[int]] | None = None) -> Path:
    """NeRF-synthetic folder: RGBA ``{split}/cam_NNN.png`` + ``transforms_{split}.json``.

    ``file_path`` is written without extension, as in the original dataset. Default splits: every
    third camera is test, camera 1 is val, the rest train.
    """
    n = len(cams)
    if splits is None:
        test = list(range(0, n, 3))
        splits = {"train": [i for i in range(n) if i % 3 and i != 1], "val": [1], "test": test}
    width = int(cams.sizes[0, 0])
    angle_x = 2.0 * math.atan(0.5 * width / float(cams.intrinsics[0, 0]))
    for split, indices in splits.items():
        frames = []
        for i in indices:
            (root / split).mkdir(parents=True, exist_ok=True)
            w, h = (int(v) for v in cams.sizes[i])
            iio.imwrite(root / split / f"{cams.names[i]}.png", make_image(i, w, h, alpha=True))
            frames.append({"file_path": f"./{split}/{cams.names[i]}", "rotation": 0.0,
                           "transform_matrix": _gl_matrix(cams.c2w[i])})
        meta = {"camera_angle_x": angle_x, "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))
    return root


def write_transforms(root: Path, cams: KnownCameras, aabb_scale: float | None = None,
                     extra: dict | None = None, frame_extra: dict[int, dict] | None = None) -> Path:
    """instant-ngp ``transforms.json`` + ``images/cam_NNN.png``.

    Camera 0's intrinsics are written at the top level; a camera whose intrinsics or distortion
    differ gets per-frame overrides. ``extra`` / ``frame_extra`` are merged in last.
    """
    write_images(root / "images", cams)
    keys = ("fl_x", "fl_y", "cx", "cy")
    dkeys = ("k1", "k2", "p1", "p2", "k3")
    top = dict(zip(keys, cams.intrinsics[0].tolist()))
    top.update(dict(zip(dkeys, cams.distortion[0].tolist())))
    top.update(w=int(cams.sizes[0, 0]), h=int(cams.sizes[0, 1]))
    frames = []
    for i, name in enumerate(cams.names):
        frame = {"file_path": f"images/{name}.png", "transform_matrix": _gl_matrix(cams.c2w[i])}
        own = dict(zip(keys, cams.intrinsics[i].tolist()))
        own.update(dict(zip(dkeys, cams.distortion[i].tolist())))
        own.update(w=int(cams.sizes[i, 0]), h=int(cams.sizes[i, 1]))
        frame.update({k: v for k, v in own.items() if v != top[k]})
        frame.update((frame_extra or {}).get(i, {}))
        frames.append(frame)
    meta = dict(top, frames=frames)
    if aabb_scale is not None:
        meta["aabb_scale"] = aabb_scale
    meta.update(extra or {})
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root


def pinhole_project(cams: KnownCameras, index: int, points: np.ndarray) -> np.ndarray:
    """(P, 3) world points -> (P, 2) pixels of camera ``index`` with OpenCV distortion (numpy)."""
    w2c = np.linalg.inv(cams.c2w[index])
    local = points @ w2c[:3, :3].T + w2c[:3, 3]
    x, y = local[:, 0] / local[:, 2], local[:, 1] / local[:, 2]
    k1, k2, p1, p2, k3 = cams.distortion[index]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    fx, fy, cx, cy = cams.intrinsics[index]
    return np.stack([fx * xd + cx, fy * yd + cy], -1)

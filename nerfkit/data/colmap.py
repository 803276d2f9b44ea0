"""COLMAP folders (``images/`` + ``sparse/0/`` or ``sparse/``, .bin or .txt) -> a :class:`Scene`.

Read with pycolmap. COLMAP's cameras are world-to-camera with OpenCV axes and its pixel
convention is ours (the top-left corner of the image is (0, 0), the first pixel centre (0.5, 0.5)),
so poses are only inverted and intrinsics copied. Supported camera models map onto nerfkit's
``fx, fy, cx, cy`` + OpenCV ``k1, k2, p1, p2, k3``, or a fisheye's ``k1, k2, k3, k4``
(:mod:`nerfkit.data.colmap_cameras`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap
import torch

from nerfkit.core.errors import NerfkitError
from nerfkit.data.cameras import Cameras
from nerfkit.data.colmap_cameras import camera_from_colmap
from nerfkit.data.colmap_check import check_model_files
from nerfkit.data.images import check_images_exist
from nerfkit.data.scene import Scene

IMAGES_DIR = "images"


def find_model_dir(root: Path) -> Path | None:
    """``root/sparse/0`` or ``root/sparse`` when it holds ``cameras.bin`` or ``cameras.txt``."""
    for candidate in (root / "sparse" / "0", root / "sparse"):
        if any((candidate / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return candidate
    return None


def model_file(model_dir: Path, stem: str) -> Path:
    """``stem.bin`` if present (pycolmap prefers it), else ``stem.txt``."""
    binary = model_dir / f"{stem}.bin"
    return binary if binary.is_file() else model_dir / f"{stem}.txt"


def _check_text_models(model_dir: Path) -> None:
    """Name an unsupported model in ``cameras.txt`` (pycolmap's own message does not)."""
    path = model_dir / "cameras.txt"
    if not path.is_file():
        return
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and not line.lstrip().startswith("#"):
            camera_from_colmap(fields[1], [0.0] * 8, path)


def read_reconstruction(model_dir: Path) -> pycolmap.Reconstruction:
    """pycolmap's reconstruction of ``model_dir``; NerfkitError naming the folder on failure."""
    for stem in ("cameras", "images", "points3D"):
        if not model_file(model_dir, stem).is_file():
            raise NerfkitError(f"COLMAP model '{model_dir}' has no {stem}.bin or {stem}.txt")
    check_model_files(model_dir)       # pycolmap aborts the process on some truncated files
    try:
        return pycolmap.Reconstruction(str(model_dir))
    except Exception as exc:  # pycolmap raises ValueError/IndexError/RuntimeError
        _check_text_models(model_dir)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NerfkitError(f"COLMAP model '{model_dir}' could not be read: {reason}") from None


def _model_name(camera) -> str:
    name = getattr(camera, "model_name", None)
    return str(name) if name else camera.model.name


def _has_pose(image) -> bool:
    flag = getattr(image, "has_pose", None)
    if flag is None:
        flag = getattr(image, "registered", True)
    return bool(flag() if callable(flag) else flag)


def _c2w(image) -> np.ndarray:
    """(4, 4) float64 camera-to-world of a pycolmap image (``cam_from_world`` inverted).

    Inverted as a rigid transform (``R^T``, ``-R^T t``), so a damaged pose gives non-finite or
    non-rotation values that :func:`nerfkit.data.normalize.check_poses` names, never a crash.
    """
    pose = image.cam_from_world
    pose = pose() if callable(pose) else pose     # a method in pycolmap 4.x, a property before
    w2c = np.asarray(pose.matrix(), dtype=np.float64)
    c2w = np.eye(4)
    c2w[:3, :3] = w2c[:3, :3].T
    c2w[:3, 3] = -w2c[:3, :3].T @ w2c[:3, 3]
    return c2w


def parse_colmap(root: Path) -> Scene:
    """Read a COLMAP folder (images are checked to exist, not read).

    Only images with a pose are used, sorted by name; files in ``images/`` that the model does
    not list are ignored.

    Returns:
        A :class:`Scene` in original world coordinates: ``world_to_scene`` is the identity,
        ``images`` and ``splits`` are empty, cameras are float64, ``points3d`` (P, 3) float64 /
        ``points_rgb`` (P, 3) uint8 hold the sparse points (None when there are none),
        ``extras["kind"]`` is ``"unbounded"`` and ``extras["size_source"]`` the cameras file.
    """
    model_dir = find_model_dir(root)
    if model_dir is None:
        raise NerfkitError(f"'{root}' has no COLMAP model: expected sparse/0/cameras.bin or "
                           "cameras.txt")
    reconstruction = read_reconstruction(model_dir)
    cameras_file, images_file = model_file(model_dir, "cameras"), model_file(model_dir, "images")
    images = sorted((im for im in reconstruction.images.values() if _has_pose(im)),
                    key=lambda im: im.name)
    if not images:
        raise NerfkitError(f"'{images_file}' has no registered images")
    paths = [root / IMAGES_DIR / im.name for im in images]
    check_images_exist(paths, images_file)
    lenses, sizes = [], []
    for im in images:
        camera = reconstruction.cameras[im.camera_id]
        lenses.append(camera_from_colmap(_model_name(camera), camera.params, cameras_file))
        sizes.append([int(camera.width), int(camera.height)])
    cameras = Cameras(torch.from_numpy(np.stack([_c2w(im) for im in images])),
                      torch.tensor([lens.intrinsics for lens in lenses], dtype=torch.float64),
                      torch.tensor(sizes, dtype=torch.int64),
                      torch.tensor([lens.distortion for lens in lenses], dtype=torch.float64),
                      torch.tensor([lens.fisheye for lens in lenses], dtype=torch.bool))
    points = list(reconstruction.points3D.values())
    xyz = rgb = None
    if points:
        xyz = torch.from_numpy(np.stack([np.asarray(p.xyz, dtype=np.float64) for p in points]))
        rgb = torch.from_numpy(np.stack([np.asarray(p.color, dtype=np.uint8) for p in points]))
    return Scene(name=root.name, root=root, format="colmap", image_paths=paths, images=[],
                 cameras=cameras, splits={}, world_to_scene=torch.eye(4, dtype=torch.float64),
                 aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]), unbounded=True,
                 points3d=xyz, points_rgb=rgb,
                 extras={"kind": "unbounded", "size_source": cameras_file})

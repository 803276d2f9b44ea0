"""A scene's training cameras as a COLMAP text model in the scene's ORIGINAL world coordinates: the
poses a run refined (``pose_refine=on``) or, without refinement, the ones it was given.

COLMAP's conventions (as :mod:`nerfkit.data.colmap` reads them): ``images.txt`` holds per image the
world-to-camera rotation as a unit quaternion ``QW QX QY QZ`` (w >= 0) and translation ``TX TY TZ``
(OpenCV axes, so ``x_cam = R x_world + t``), its camera id and name; ``cameras.txt`` the
intrinsics in pixels of the full-size photos (``PINHOLE fx fy cx cy``; ``OPENCV`` adds ``k1 k2 p1
p2``, ``FULL_OPENCV`` ``k1 k2 p1 p2 k3 k4 k5 k6`` when ``k3`` is used); ``points3D.txt`` is empty.

Poses are moved back from scene coordinates by the inverse of the scene's normalising similarity;
the intrinsics and image names are read again from the scene folder, so a run trained with
``--downscale`` (or splat's undistorted pinholes) still writes the photos' own cameras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import atomic_write
from nerfkit.data.load import PARSERS
from nerfkit.data.scene import Scene
from nerfkit.data.similarity import camera_to_world_from_scene
from nerfkit.render.gaussians import rotmat_to_quat

MODEL_FILES = ("cameras.txt", "images.txt", "points3D.txt")


@dataclass(frozen=True)
class ColmapCamera:
    """One entry of ``cameras.txt``: a COLMAP model name, the photo's size and the model's params."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]


def colmap_camera(intrinsics: Sequence[float], distortion: Sequence[float], width: int, height: int) -> ColmapCamera:
    """The simplest COLMAP model holding nerfkit's ``fx fy cx cy`` and OpenCV ``k1 k2 p1 p2 k3``."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    k1, k2, p1, p2, k3 = (float(v) for v in distortion)
    if k3 != 0.0:
        return ColmapCamera("FULL_OPENCV", width, height, (fx, fy, cx, cy, k1, k2, p1, p2, k3, 0.0, 0.0, 0.0))
    if any(v != 0.0 for v in (k1, k2, p1, p2)):
        return ColmapCamera("OPENCV", width, height, (fx, fy, cx, cy, k1, k2, p1, p2))
    return ColmapCamera("PINHOLE", width, height, (fx, fy, cx, cy))


@dataclass
class CameraExport:
    """Cameras ready to be written as a COLMAP text model (:meth:`write`).

    Attributes:
        names: N image names, relative to the scene's ``images/`` folder (COLMAP scenes) or to the
            scene folder (other formats).
        c2w: (N, 4, 4) float64 camera-to-world, OpenCV axes, the scene's original world coordinates.
        cameras: N intrinsics, one per image (identical ones share a COLMAP camera id).
        refined: the poses are a run's refined ones (False: as the scene gives them).
    """

    names: list[str]
    c2w: Tensor
    cameras: list[ColmapCamera]
    refined: bool

    def __len__(self) -> int:
        return len(self.names)

    def write(self, folder: Path) -> list[Path]:
        """Write ``cameras.txt``, ``images.txt`` and an empty ``points3D.txt`` into ``folder``
        (created when missing; each file atomically). Returns the three paths."""
        ids: dict[ColmapCamera, int] = {}
        for camera in self.cameras:
            ids.setdefault(camera, len(ids) + 1)
        camera_lines = ["# Camera list with one line of data per camera:",
                        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]", f"# Number of cameras: {len(ids)}"]
        camera_lines += [f"{index} {camera.model} {camera.width} {camera.height} " + " ".join(map(_number, camera.params))
                         for camera, index in ids.items()]
        rotation = self.c2w[:, :3, :3].double().transpose(-1, -2)                  # world-to-camera
        translation = -(rotation @ self.c2w[:, :3, 3:].double())[..., 0]
        quats = rotmat_to_quat(rotation)
        image_lines = ["# Image list with two lines of data per image:",
                       "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                       "#   POINTS2D[] as (X, Y, POINT3D_ID)",
                       f"# Number of images: {len(self)}, mean observations per image: 0"]
        for index, (name, camera) in enumerate(zip(self.names, self.cameras)):
            values = " ".join(map(_number, [*quats[index].tolist(), *translation[index].tolist()]))
            image_lines += [f"{index + 1} {values} {ids[camera]} {name}", ""]
        point_lines = ["# 3D point list with one line of data per point:",
                       "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
                       "# Number of points: 0, mean track length: 0"]
        paths = [Path(folder) / name for name in MODEL_FILES]
        for path, lines in zip(paths, (camera_lines, image_lines, point_lines)):
            with atomic_write(path) as file:
                file.write(("\n".join(lines) + "\n").encode("utf-8"))
        return paths


def _number(value: float) -> str:
    """Shortest text that reads back as the same float64."""
    return repr(float(value))


def image_name(scene: Scene, path: Path) -> str:
    """A photo's name in COLMAP's sense: its path inside ``images/`` (else inside the scene folder)."""
    for base in (scene.root / "images", scene.root):
        try:
            name = Path(path).relative_to(base).as_posix()
        except ValueError:
            continue
        if any(character.isspace() for character in name):
            raise NerfkitError(f"image '{path}' has white space in its name, which a COLMAP text model "
                               f"cannot hold: expected names without spaces")
        return name
    raise NerfkitError(f"image '{path}' is outside the scene folder '{scene.root}': it has no name to "
                       f"write into a COLMAP model")


def export_cameras(scene: Scene, image_ids: Sequence[int] | None = None) -> CameraExport:
    """The cameras ``image_ids`` (default: the training split) of ``scene`` in world coordinates.

    The poses are ``scene.cameras`` (a run's refined training poses when the scene came from
    :func:`nerfkit.runs.session.open_run` of a run with ``pose_refine=on``), moved back by the
    inverse of ``scene.world_to_scene``; the intrinsics and names are the scene folder's own (full
    size, with their lens distortion).

    Raises:
        NerfkitError: the scene folder no longer lists the images the scene was loaded with.
    """
    ids = list(scene.split("train") if image_ids is None else image_ids)
    original = PARSERS[scene.format](scene.root)
    if [str(p) for p in original.image_paths] != [str(p) for p in scene.image_paths]:
        raise NerfkitError(f"the scene at '{scene.root}' lists other images than when it was loaded: "
                           f"expected the same {len(scene.image_paths)} images")
    world = camera_to_world_from_scene(scene.cameras.c2w[ids].double(), scene.world_to_scene.double())
    cameras = [colmap_camera(original.cameras.intrinsics[i].tolist(), original.cameras.distortion[i].tolist(),
                             *(int(v) for v in original.cameras.sizes[i])) for i in ids]
    names = [image_name(scene, scene.image_paths[i]) for i in ids]
    return CameraExport(names, world, cameras, bool(scene.extras.get("refined_poses", False)))


__all__ = ["CameraExport", "ColmapCamera", "MODEL_FILES", "colmap_camera", "export_cameras", "image_name"]

"""Sparse points for a scene that comes with poses but no points (a ``transforms.json`` without a
point cloud, a COLMAP model whose ``points3D`` is empty): SIFT features matched between the photos
and triangulated with the KNOWN cameras (pycolmap's ``triangulate_points``; nothing is re-posed).

The photos are only read. Everything COLMAP writes goes to a temporary folder beside the cache,
and the result, ``points.npz`` (world coordinates, the scene's own units), is cached once per scene
under :func:`nerfkit.core.files.user_cache_dir` ``/triangulated/<key>/``, the key a hash of the
scene folder's path, its cameras and its photos' names, sizes and modification times: a changed
scene is triangulated again, an unchanged one never. pycolmap is imported only here, when a scene
is first triangulated.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nerfkit.core.files import atomic_path, user_cache_dir
from nerfkit.data.scene import Scene

CACHE_VERSION = 1              # bump when what is cached, or how it is made, changes
FEATURE_IMAGE_SIZE = 1024      # SIFT runs on the photos downsized to at most this many pixels wide
EXHAUSTIVE_LIMIT = 100         # up to this many photos every pair is matched, else each with its nearest
NEIGHBOURS = 20                # photos matched with each photo beyond EXHAUSTIVE_LIMIT


@dataclass
class TriangulatedPoints:
    """A scene's triangulated points.

    Attributes:
        xyz: (P, 3) float64 points in the scene's original world coordinates.
        rgb: (P, 3) uint8 colours.
        seconds: how long the triangulation took when it ran (also for a cached result).
        cached: True when read from the cache rather than computed now.
        path: the cache file.
    """

    xyz: np.ndarray
    rgb: np.ndarray
    seconds: float
    cached: bool
    path: Path


def cache_file(scene: Scene, cache_root: Path | None = None) -> Path:
    """Where the triangulated points of ``scene`` (as :func:`nerfkit.data.load.parse_scene` gives
    it: world coordinates, full-size cameras) are cached."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} size {FEATURE_IMAGE_SIZE} root {Path(scene.root).resolve()}".encode())
    cameras = scene.cameras
    for tensor in (cameras.c2w, cameras.intrinsics, cameras.distortion):
        digest.update(tensor.double().contiguous().numpy().tobytes())
    digest.update(cameras.sizes.long().numpy().tobytes() + cameras.fisheye.numpy().tobytes())
    for path in scene.image_paths:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    root = cache_root if cache_root is not None else user_cache_dir()
    return root / "triangulated" / f"{Path(scene.root).resolve().name}-{digest.hexdigest()[:16]}" / "points.npz"


def triangulate_known_poses(scene: Scene, cache_root: Path | None = None, threads: int = 0,
                            log: Callable[[str], None] | None = None) -> TriangulatedPoints | None:
    """The cached triangulated points of ``scene``, triangulating them first when there are none.

    Args:
        scene: as :func:`nerfkit.data.load.parse_scene` gives it (world coordinates, full-size
            cameras, the photos' paths).
        cache_root: the cache folder (None: :func:`~nerfkit.core.files.user_cache_dir`).
        threads: CPU threads for COLMAP (0: all cores).
        log: receives a line when the triangulation starts.
    Returns:
        The points, or None: when pycolmap is missing or fails (one warning says why) or the photos
        gave no points (``log`` says so; that result is cached too, so it is tried once).
    """
    path = cache_file(scene, cache_root)
    cached = _read_cache(path)
    if cached is not None:
        return cached if len(cached.xyz) else None
    try:
        import pycolmap
    except ImportError:
        warnings.warn("pycolmap is not installed, so the scene's sparse points cannot be triangulated "
                      "from its poses: training starts without them (pip install pycolmap, or "
                      "--set triangulate=off to silence this)", stacklevel=2)
        return None
    if log is not None:
        log(f"triangulating sparse points of {len(scene.image_paths)} photos from their known poses "
            "(once per scene; --set triangulate=off skips it)")
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=path.parent))
    try:
        xyz, rgb = _triangulate(pycolmap, scene, work, threads)
    except Exception as error:          # pycolmap raises RuntimeError/ValueError on bad input
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        warnings.warn(f"the sparse points of '{scene.root}' could not be triangulated ({reason}): "
                      "training starts without them", stacklevel=2)
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - start
    with atomic_path(path, ".npz") as temp:
        np.savez(temp, xyz=xyz, rgb=rgb, seconds=seconds)
    if not len(xyz):
        if log is not None:
            log(f"no sparse points could be triangulated from the photos of '{scene.root}' (too few features "
                "match between them): training starts without them")
        return None
    return TriangulatedPoints(xyz, rgb, seconds, False, path)


def _read_cache(path: Path) -> TriangulatedPoints | None:
    """The cached points at ``path``, or None when there are none (or the file is damaged: then they
    are made again)."""
    try:
        with np.load(path) as stored:
            xyz, rgb, seconds = stored["xyz"], stored["rgb"], float(stored["seconds"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):      # missing, or not a whole .npz
        return None
    if xyz.ndim != 2 or xyz.shape[1:] != (3,) or rgb.shape != xyz.shape:
        return None
    return TriangulatedPoints(xyz.astype(np.float64), rgb.astype(np.uint8), seconds, True, path)


def _triangulate(pycolmap, scene: Scene, work: Path, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Features, matches and points of ``scene``'s photos in ``work``: (P, 3) float64, (P, 3) uint8."""
    pycolmap.logging.minloglevel = 3           # fatal only: the caller reports
    paths = [Path(p).resolve() for p in scene.image_paths]
    image_root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    names = [p.relative_to(image_root).as_posix() for p in paths]
    database = work / "database.db"
    threads = threads if threads > 0 else -1    # COLMAP: -1 = all cores
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = FEATURE_IMAGE_SIZE
    extraction.num_threads = threads
    pycolmap.extract_features(database, image_root, image_names=names, camera_mode=pycolmap.CameraMode.PER_IMAGE,
                              extraction_options=extraction)
    db = pycolmap.Database.open(database)
    try:
        ids = {image.name: (image.image_id, image.camera_id) for image in db.read_all_images()}
        cameras = [_colmap_camera(pycolmap, scene, index, ids[name][1]) for index, name in enumerate(names)]
        for camera in cameras:                 # matching verifies pairs with the known intrinsics
            db.update_camera(camera)
    finally:
        db.close()
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    if len(names) <= EXHAUSTIVE_LIMIT:
        pycolmap.match_exhaustive(database, matching_options=matching)
    else:
        pairs = work / "pairs.txt"
        pairs.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in _nearest_pairs(scene, NEIGHBOURS)))
        pycolmap.match_image_pairs(database, matching_options=matching,
                                   pairing_options=pycolmap.ImportedPairingOptions(match_list_path=pairs))
    known = pycolmap.Reconstruction()
    for index, (name, camera) in enumerate(zip(names, cameras)):
        known.add_camera_with_trivial_rig(camera)
        w2c = np.linalg.inv(scene.cameras.c2w[index].double().numpy())
        image = pycolmap.Image(name=name, camera_id=camera.camera_id, image_id=ids[name][0])
        known.add_image_with_trivial_frame(image, pycolmap.Rigid3d(w2c[:3, :4]))
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    (work / "model").mkdir()
    result = pycolmap.triangulate_points(known, database, image_root, work / "model", options=options)
    points = list(result.points3D.values())
    xyz = np.array([p.xyz for p in points], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in points], dtype=np.uint8).reshape(-1, 3)
    return xyz, rgb


def _colmap_camera(pycolmap, scene: Scene, index: int, camera_id: int):
    """Camera ``index`` of ``scene`` as a pycolmap camera with id ``camera_id`` (the fitting model:
    PINHOLE, OPENCV, FULL_OPENCV for a k3, OPENCV_FISHEYE)."""
    fx, fy, cx, cy = (float(v) for v in scene.cameras.intrinsics[index])
    k = [float(v) for v in scene.cameras.distortion[index]]
    width, height = (int(v) for v in scene.cameras.sizes[index])
    if bool(scene.cameras.fisheye[index]):
        model, params = "OPENCV_FISHEYE", [fx, fy, cx, cy, *k[:4]]
    elif k[4] != 0.0:
        model, params = "FULL_OPENCV", [fx, fy, cx, cy, *k, 0.0, 0.0, 0.0]
    elif any(k):
        model, params = "OPENCV", [fx, fy, cx, cy, *k[:4]]
    else:
        model, params = "PINHOLE", [fx, fy, cx, cy]
    camera = pycolmap.Camera.create_from_model_name(camera_id, model, fx, width, height)
    camera.params = params
    camera.has_prior_focal_length = True
    return camera


def _nearest_pairs(scene: Scene, neighbours: int) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of each camera with the ``neighbours`` cameras that look most
    alike: nearest in viewing direction plus distance (in units of the median nearest spacing)."""
    c2w = scene.cameras.c2w.double().numpy()
    centres, forward = c2w[:, :3, 3], c2w[:, :3, 2]
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    spacing = max(float(np.median(distance.min(1))), 1e-12)
    angle = np.arccos(np.clip(forward @ forward.T, -1.0, 1.0))
    score = angle + distance / (spacing * 10.0)
    np.fill_diagonal(score, np.inf)
    pairs = set()
    for i, row in enumerate(score):
        for j in np.argsort(row)[:neighbours]:
            pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)

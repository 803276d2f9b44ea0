"""Sparse points for scenes with poses but no points: photos of the demo object with their true poses
(a COLMAP model with an empty points3D, a transforms.json without a point cloud) get points
triangulated on the true surface, once per scene (cached outside the scene folder, which stays
untouched), used as splat's start; ``triangulate=off`` and a missing pycolmap leave the scene as it was."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from demo_photos import write_demo_photos
from nerfkit.cli import main
from nerfkit.data import load_scene
from nerfkit.data.demo import TRACE_BOX, demo_sdf
from nerfkit.data.inputs import SceneInfo
from nerfkit.data.load import parse_scene
from nerfkit.data.similarity import invert_similarity, transform_points
from nerfkit.ingest.triangulate import cache_file
from nerfkit.methods.splat import initial_gaussians
from nerfkit.methods.splat_config import SplatConfig
from nerfkit.runs.sparse_points import with_triangulated_points

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from scene_writers import GL_FLIP, KnownCameras, colmap_reconstruction  # noqa: E402

SIZE, COUNT = 200, 20
SCENE_SIZE = TRACE_BOX[1][0] - TRACE_BOX[0][0]       # the demo object's box, 1.7 world units wide


@pytest.fixture(scope="module")
def posed_photos(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], float]:
    """20 photos over 200 degrees of a spiral and their true poses (JPEG, 200 px)."""
    photos = tmp_path_factory.mktemp("triangulate") / "photos"
    truth, focal = write_demo_photos(photos, count=COUNT, size=SIZE, turn_degrees=200.0)
    return photos, truth, focal


def _colmap_scene(root: Path, photos: Path, truth: dict, focal: float) -> Path:
    names = sorted(truth)
    cams = KnownCameras(np.stack([truth[n].numpy() for n in names]),
                        np.tile([focal, focal, SIZE / 2, SIZE / 2], (COUNT, 1)), np.tile([SIZE, SIZE], (COUNT, 1)),
                        np.zeros((COUNT, 5)), names)
    reconstruction = colmap_reconstruction(cams, "PINHOLE")          # no points: points3D is empty
    for image in reconstruction.images.values():
        image.name = image.name.replace(".png", ".jpg")
    (root / "sparse" / "0").mkdir(parents=True)
    reconstruction.write_text(str(root / "sparse" / "0"))
    (root / "images").symlink_to(photos)                             # the same photos, not copied
    return root


def _transforms_scene(root: Path, photos: Path, truth: dict, focal: float) -> Path:
    root.mkdir(parents=True)
    (root / "images").symlink_to(photos)
    frames = [{"file_path": f"images/{name}.jpg", "transform_matrix": (truth[name].numpy() @ GL_FLIP).tolist()}
              for name in sorted(truth)]
    meta = {"camera_model": "PINHOLE", "fl_x": focal, "fl_y": focal, "cx": SIZE / 2, "cy": SIZE / 2, "w": SIZE,
            "h": SIZE, "frames": frames}                               # no ply_file_path: no points
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def _folder_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):   # rglob follows the images/ link
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    digest.update(str(sorted(str(p.relative_to(root)) for p in root.rglob("*"))).encode())
    return digest.hexdigest()


class _NoPycolmap:
    """Stands in for pycolmap: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"pycolmap.{name} was used: the cached points should have been read")


@pytest.mark.parametrize("write", [_colmap_scene, _transforms_scene], ids=["colmap", "transforms"])
def test_posed_photos_get_points_on_the_surface_once(posed_photos, tmp_path, monkeypatch, write):
    photos, truth, focal = posed_photos
    monkeypatch.setenv("NERFKIT_CACHE", str(tmp_path / "cache"))
    root = write(tmp_path / "scene", photos, truth, focal)
    before = _folder_hash(root)
    scene = load_scene(root)
    assert scene.points3d is None
    lines = []
    with_points = with_triangulated_points(scene, "auto", log=lines.append)
    assert with_points.world_to_scene.equal(scene.world_to_scene)     # placed as without points
    world = transform_points(invert_similarity(scene.world_to_scene.double()), with_points.points3d.double())
    distance = demo_sdf(world.float()).abs()
    print(f"{len(distance)} points, median distance to the surface {float(distance.median()):.4f} "
          f"({100 * float(distance.median()) / SCENE_SIZE:.2f}% of the scene), {lines[-1]}")
    assert len(distance) >= 100
    assert float(distance.median()) < 0.02 * SCENE_SIZE
    assert with_points.points_rgb.shape == (len(distance), 3) and with_points.points_rgb.dtype == torch.uint8
    cached = cache_file(parse_scene(root))
    assert cached.is_file() and tmp_path / "cache" in cached.parents
    assert _folder_hash(root) == before                               # nothing written into the scene
    monkeypatch.setitem(sys.modules, "pycolmap", _NoPycolmap())
    again = with_triangulated_points(load_scene(root), "auto", log=lines.append)
    torch.testing.assert_close(again.points3d, with_points.points3d, rtol=0, atol=0)
    assert "cached" in lines[-1]
    # splat starts its Gaussians at these points rather than anywhere in the box
    means = initial_gaussians(SplatConfig(), SceneInfo.from_scene(again))["means"]
    torch.testing.assert_close(means, again.points3d)


def test_off_and_a_missing_pycolmap_leave_the_scene_without_points(posed_photos, tmp_path, monkeypatch):
    photos, truth, focal = posed_photos
    monkeypatch.setenv("NERFKIT_CACHE", str(tmp_path / "cache"))
    scene = load_scene(_colmap_scene(tmp_path / "scene", photos, truth, focal))
    assert with_triangulated_points(scene, "off").points3d is None
    monkeypatch.setitem(sys.modules, "pycolmap", None)                  # import pycolmap raises ImportError
    with pytest.warns(UserWarning, match="pycolmap is not installed") as caught:
        assert with_triangulated_points(scene, "auto").points3d is None
    assert len(caught) == 1
    assert not list((tmp_path / "cache").rglob("*.npz"))               # nothing cached: tried again next time


def test_train_reports_the_triangulated_points_then_reads_them_from_the_cache(posed_photos, tmp_path, monkeypatch,
                                                                              capsys):
    photos, truth, focal = posed_photos
    monkeypatch.setenv("NERFKIT_CACHE", str(tmp_path / "cache"))
    root = _colmap_scene(tmp_path / "scene", photos, truth, focal)
    args = ["train", str(root), "--method", "splat", "--output-dir", str(tmp_path / "out"), "--no-progress",
            "--no-viewer", "--threads", "2", "--max-steps", "1", "--downscale", "4"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "sparse points triangulated from the known poses" in first, first
    assert main(args) == 0
    assert "sparse points cached from the known poses" in capsys.readouterr().out

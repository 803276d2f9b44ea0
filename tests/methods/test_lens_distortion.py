"""Lens distortion in every method: the demo object photographed through a known OpenCV lens trains
with splat (photos resampled onto covering pinholes, scored by warping renders into the lens) and
ngp (distortion-aware rays) to within 1 dB of its pinhole twin, and its TSDF mesh lands on the true
surface as well as the twin's. The same photos read as pinhole ones (the lens dropped, what a
pipeline that ignores it does) miss those bars: the test fails without the fix."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from nerfkit.cli import main
from nerfkit.data import load_scene
from nerfkit.data.cameras import Cameras, opengl_to_opencv
from nerfkit.data.demo import CAMERA_ANGLE_X, demo_camera_poses, render_demo_view
from nerfkit.data.lens import covering_pinhole, undistort_image, warp_to_distorted
from nerfkit.export.mesh_io import read_mesh
from nerfkit.export.tsdf import chamfer_distance, sample_surface
from nerfkit.image.metrics import psnr
from lens_scenes import LENS, without_lens, write_lens_demo
from tiny_run import tiny_splat_args, tiny_train_args

STEPS = 300
TURN_DEG = 10.0     # each camera looks this far off the object, so it sits where the lens bends it


@pytest.fixture(scope="module")
def lens_scenes(tmp_path_factory) -> dict[str, Path]:
    """The distorted capture, its pinhole twin and the distorted photos read as pinhole ones."""
    root = tmp_path_factory.mktemp("lens")
    distorted = write_lens_demo(root / "distorted", turn_deg=TURN_DEG)
    pinhole = write_lens_demo(root / "pinhole", distortion=(0.0,) * 5, turn_deg=TURN_DEG)
    ignored = without_lens(distorted, root / "lens_ignored")
    return {"distorted": distorted, "pinhole": pinhole, "lens_ignored": ignored}


def _one_camera(size: int) -> tuple[Cameras, Tensor]:
    c2w = opengl_to_opencv(demo_camera_poses(1, 1, 0, 0)["test"][0])
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    camera = Cameras(c2w[None].float(), torch.tensor([[focal, focal, size / 2, size / 2]]),
                     torch.tensor([[size, size]]), torch.tensor([LENS], dtype=torch.float32))
    return camera, c2w


def _render(camera: Cameras, c2w, distortion=None) -> torch.Tensor:
    fx, fy, cx, cy = (float(v) for v in camera.intrinsics[0])
    width, height = (int(v) for v in camera.sizes[0])
    view = render_demo_view(c2w, fx, fy, cx, cy, width, height, supersample=3, distortion=distortion)
    return torch.cat([view["rgb"] * view["alpha"][..., None] + (1 - view["alpha"][..., None]),
                      view["alpha"][..., None]], -1)              # on white, and alpha


def test_undistorting_a_photo_and_warping_a_render_match_the_true_images():
    camera, c2w = _one_camera(64)
    pinhole = covering_pinhole(camera)
    assert bool((pinhole.sizes > camera.sizes).all()) and not pinhole.has_distortion    # barrel: it widens
    photo = _render(camera, c2w, torch.tensor(LENS, dtype=torch.float64))
    ideal = _render(pinhole, c2w)
    resampled, keep = undistort_image((photo[..., :3] * 255).round().to(torch.uint8).numpy(), camera, pinhole)
    keep = torch.from_numpy(keep)
    assert 0.6 < float(keep.float().mean()) < 1.0            # the corners of the wider image hold nothing
    assert psnr(torch.from_numpy(resampled).float() / 255, ideal[..., :3], keep) > 26.0
    warped, covered = warp_to_distorted(ideal, pinhole, camera)
    assert bool(covered.all())                               # the covering camera covers the photo
    assert psnr(warped[..., :3], photo[..., :3]) > 26.0
    plain = _render(camera.without_distortion(), c2w)      # the lens does move the picture
    assert psnr(plain[..., :3], photo[..., :3]) < psnr(warped[..., :3], photo[..., :3]) - 5.0


def _train(scene: Path, output: Path, method: str) -> Path:
    if method == "ngp":
        args = tiny_train_args(scene, output, "--max-steps", str(STEPS), "--eval-every", "0")
    else:
        args = tiny_splat_args(scene, output, "--max-steps", str(STEPS))
    assert main(args) == 0
    return next(output.glob(f"*/{method}/*/metrics.json")).parent


def _chamfer(run: Path, scene: Path) -> float:
    assert main(["export", "mesh", str(run), "--resolution", "64", "--output", str(run / "mesh.ply")]) == 0
    mesh, truth = read_mesh(run / "mesh.ply"), read_mesh(scene / "gt_mesh.ply")
    rng = np.random.default_rng(0)
    points = sample_surface(mesh["vertices"], mesh["faces"], 20000, rng)
    return chamfer_distance(points, sample_surface(truth["vertices"], truth["faces"], 20000, rng))[2]


def _like_the_twin(psnr_db: float, chamfer: float, twin: tuple[float, float]) -> bool:
    """The bars: held-out PSNR within 1 dB of the pinhole twin's, mesh about as close to the surface."""
    return psnr_db > twin[0] - 1.0 and chamfer < 1.25 * twin[1] + 0.005


@pytest.mark.parametrize("method", ["splat", "ngp"])
def test_a_distorted_capture_trains_like_its_pinhole_twin(lens_scenes, tmp_path, method):
    assert load_scene(lens_scenes["distorted"]).cameras.has_distortion
    assert not load_scene(lens_scenes["pinhole"]).cameras.has_distortion
    assert not load_scene(lens_scenes["lens_ignored"]).cameras.has_distortion
    scores = {}
    for name, scene in lens_scenes.items():
        run = _train(scene, tmp_path / name, method)
        scores[name] = (json.loads((run / "metrics.json").read_text())["psnr"], _chamfer(run, scene))
    print(f"{method}: " + ", ".join(f"{name} {db:.2f} dB, Chamfer {ch:.4f}" for name, (db, ch) in scores.items()))
    assert _like_the_twin(*scores["distorted"], scores["pinhole"]), scores
    assert not _like_the_twin(*scores["lens_ignored"], scores["pinhole"]), scores

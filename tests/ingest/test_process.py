"""`nerfkit process`: photos and a video of the demo scene become a posed scene matching the truth."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nerfkit.cli import main
from nerfkit.data.load import load_scene
from nerfkit.ingest.pose_eval import align_poses, pose_errors
from demo_photos import write_demo_photos


@pytest.fixture(scope="module")
def demo_photos(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """60 "photos" (320 px JPEG on white) of the demo object along a rising spiral, as a phone
    walk-around would take them (7.5 degrees apart), and their true OpenCV camera-to-world poses."""
    photos = tmp_path_factory.mktemp("process") / "photos"
    truth, _ = write_demo_photos(photos, count=60, size=320, turn_degrees=450.0)
    return photos, truth


def _pose_errors(out: Path, truth: dict[str, torch.Tensor]) -> dict:
    scene = load_scene(out, 1.0, 1000, None)
    estimated = torch.linalg.inv(scene.world_to_scene.double()) @ scene.cameras.c2w.double()
    true = torch.stack([truth[Path(p).stem] for p in scene.image_paths])
    return pose_errors(estimated, true, align_poses(estimated, true))


def test_photos_become_a_posed_scene_matching_the_true_cameras(demo_photos, tmp_path, capsys):
    photos, truth = demo_photos
    before = sorted((p.name, p.stat().st_mtime_ns) for p in photos.iterdir())
    out = tmp_path / "scene"
    assert main(["process", str(photos), str(out), "--threads", "1"]) == 0     # one thread: the same result every run
    printed = capsys.readouterr().out
    assert "registered 60 of 60 images" in printed and "time:" in printed and "exhaustive" in printed
    assert sorted((p.name, p.stat().st_mtime_ns) for p in photos.iterdir()) == before   # input untouched
    report = json.loads((out / "process.json").read_text())
    assert report["registered"] == 60 and report["points3d"] > 500 and report["mean_reprojection_error"] < 1.0
    assert set(report["seconds"]) >= {"images", "features", "matching", "mapping"}
    errors = _pose_errors(out, truth)
    assert errors["median_rotation_deg"] < 1.0, errors["median_rotation_deg"]
    assert errors["median_position_relative"] < 0.01, errors["median_position_relative"]


def test_a_video_of_the_views_goes_through_too(demo_photos, tmp_path):
    photos, truth = demo_photos
    frames = [iio.imread(p) for p in sorted(photos.glob("*.jpg"))]
    video = tmp_path / "orbit.mp4"
    iio.imwrite(video, np.stack(frames), fps=10, codec="libx264", plugin="FFMPEG", quality=9)
    out = tmp_path / "scene"
    assert main(["process", str(video), str(out), "--video-frames", "60", "--undistort", "--downscale", "2",
                 "--threads", "1"]) == 0
    report = json.loads((out / "process.json").read_text())
    # Sequential matching of compressed frames registers ~54 of 60 (exhaustive: all 60).
    assert report["images"] == 60 and report["registered"] >= 48 and report["matcher"] == "sequential"
    assert len(list((out / "images_2").iterdir())) == 60
    scene = load_scene(out, 1.0, 8, None)
    assert scene.points3d is not None and scene.points3d.shape[0] > 100
    assert float(scene.cameras.distortion.abs().max()) == 0.0          # undistorted to PINHOLE
    errors = _pose_errors(out, {f"frame_{i:05d}": pose for i, pose in enumerate(truth.values())})
    assert errors["median_rotation_deg"] < 1.0 and errors["median_position_relative"] < 0.01, errors


@pytest.mark.parametrize("setup, message", [
    ("empty", "holds no images"),
    ("two", "only 2 image(s)"),
    ("corrupt", "cannot be read"),
    ("mixed", "all photos of a scene must have the same size"),
    ("bad_video", "could not be decoded"),
    ("text_file", "not a video"),
    ("missing", "does not exist"),
])
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, capsys, setup, message):
    source = tmp_path / "input"
    rng = np.random.default_rng(0)
    if setup in ("empty", "two", "corrupt", "mixed"):
        source.mkdir()
        count = {"empty": 0, "two": 2}.get(setup, 4)
        for i in range(count):
            size = (48, 64) if not (setup == "mixed" and i == 3) else (64, 48)
            iio.imwrite(source / f"{i}.png", rng.integers(0, 255, size + (3,), dtype=np.uint8))
        if setup == "corrupt":
            (source / "9.jpg").write_bytes(b"not a jpeg at all")
    elif setup == "bad_video":
        source = tmp_path / "clip.mp4"
        source.write_bytes(b"\x00\x01 definitely not a video" * 10)
    elif setup == "text_file":
        source = tmp_path / "notes.txt"
        source.write_text("hello")
    assert main(["process", str(source), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nerfkit: error:") and message in err and "Traceback" not in err, err
    assert len(err.splitlines()) == 1


def test_output_inside_the_input_is_refused(tmp_path, capsys):
    source = tmp_path / "photos"
    source.mkdir()
    assert main(["process", str(source), str(source / "scene")]) == 2
    assert "inside the input" in capsys.readouterr().err


def test_collapsed_cameras_are_told_apart_from_real_captures():
    from nerfkit.ingest.process import collapsed_cameras

    rng = np.random.default_rng(0)
    points = rng.normal(size=(2000, 3))                               # the scene, spread ~1
    angles = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    orbit = np.stack([4 * np.cos(angles), 4 * np.sin(angles), np.full(60, 1.0)], axis=1)
    assert not collapsed_cameras(orbit, points)
    # a forward-facing capture: a 5 cm baseline before a scene 50 units away and 10 units wide
    forward = np.stack([np.linspace(0, 0.05, 30), np.zeros(30), np.zeros(30)], axis=1)
    assert not collapsed_cameras(forward, 10 * points + [0, 0, 50])
    # what COLMAP returned once for the demo photos: 50 of 60 cameras at one point (1e-5 apart)
    collapsed = np.concatenate([orbit[:10], [0.59, -0.24, -0.70] + 1e-5 * rng.normal(size=(50, 3))])
    assert collapsed_cameras(collapsed, 12 * points)
    # ... and what it returned in another CI run: cameras 1.5e-6 apart, the points collapsed with them,
    # one camera 3e5 units away (the scene loader refuses that pose)
    tiny = 1.5e-6 * rng.normal(size=(59, 3))
    assert collapsed_cameras(np.concatenate([tiny, [[3e5, 0.0, 0.0]]]), 1e-6 * points)
    assert not collapsed_cameras(orbit[:2], points) and not collapsed_cameras(orbit, points[:0])


def test_a_collapsed_mapping_is_mapped_again_and_then_refused(demo_photos, tmp_path, capsys, monkeypatch):
    import pycolmap

    from nerfkit.ingest import process as process_module

    import shutil

    photos = tmp_path / "photos"                # the first 20 photos map in seconds
    photos.mkdir()
    for photo in sorted(demo_photos[0].iterdir())[:20]:
        shutil.copy(photo, photos / photo.name)
    seeds, verdicts = [], iter([True, False])
    real_mapping = pycolmap.incremental_mapping

    def recording_mapping(*args, options, **kwargs):
        seeds.append(options.random_seed)
        return real_mapping(*args, options=options, **kwargs)

    monkeypatch.setattr(pycolmap, "incremental_mapping", recording_mapping)
    monkeypatch.setattr(process_module, "_model_collapsed", lambda model: next(verdicts))
    out = tmp_path / "retried"
    assert main(["process", str(photos), str(out), "--threads", "1"]) == 0
    assert seeds == [0, 1] and "mapping attempt 1 collapsed" in capsys.readouterr().out
    assert len(list((out / "colmap" / "sparse").iterdir())) >= 1         # the second attempt's models

    seeds.clear()
    monkeypatch.setattr(process_module, "_model_collapsed", lambda model: True)
    assert main(["process", str(photos), str(tmp_path / "refused"), "--threads", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert seeds == [0, 1, 2] and len(error) == 1
    assert error[0].startswith("nerfkit: error: COLMAP's reconstruction of") and "collapsed" in error[0]

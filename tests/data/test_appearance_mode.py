"""``appearance=auto`` decided from the scene (``data/appearance.py``): on for a photo capture with many
training images whose brightness varies, off for rendered scenes, few images or steady exposure; the
run's config.yaml records the decision; a bad value is one sentence."""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import yaml

from nerfkit.cli import main
from nerfkit.core.errors import NerfkitError
from nerfkit.data.appearance import MIN_IMAGES, brightness_spread, check_appearance_mode, resolve_appearance_mode
from nerfkit.data.load import load_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scene_writers import orbit_cameras, write_blender, write_colmap  # noqa: E402
from tiny_run import tiny_train_args  # noqa: E402


def _vary_exposure(images: Path, spread: float) -> None:
    """Scale each photo's colours by its own gain, ``exp(spread * z)`` with z in [-1, 1]."""
    paths = sorted(images.glob("*.png"))
    for index, path in enumerate(paths):
        gain = np.exp(spread * (2.0 * index / max(len(paths) - 1, 1) - 1.0))
        image = iio.imread(path).astype(np.float64)
        image[..., :3] = np.clip(image[..., :3] * gain, 0, 255)
        iio.imwrite(path, image.round().astype(np.uint8))


def test_brightness_spread_is_the_std_of_log_mean_colour():
    flat = [np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 100, np.uint8)]
    assert brightness_spread(flat) == 0.0
    pair = [np.full((8, 8, 3), 50, np.uint8), np.full((8, 8, 3), 200, np.uint8)]
    assert brightness_spread(pair) == pytest.approx(np.log(4.0) / 2, rel=1e-9)       # std of (log 50, log 200)
    # alpha weights the mean; a keep mask leaves pixels out
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, :3], rgba[:4, :, 3] = 200, 255                 # top half opaque and bright, the rest transparent
    assert brightness_spread([rgba, np.dstack([np.full((8, 8, 3), 200, np.uint8), np.full((8, 8), 255, np.uint8)])]) \
        == pytest.approx(0.0, abs=1e-12)
    keep = np.zeros((8, 8), bool)
    keep[:4] = True
    half = np.zeros((8, 8, 3), np.uint8)
    half[:4] = 200
    assert brightness_spread([half, np.full((8, 8, 3), 200, np.uint8)], [keep, None]) == pytest.approx(0.0, abs=1e-12)


def test_auto_is_on_for_a_capture_whose_exposure_varies(tmp_path):
    cams = orbit_cameras(n=MIN_IMAGES + 6, width=32, height=24)
    steady = write_colmap(tmp_path / "steady", cams)
    assert resolve_appearance_mode("auto", load_scene(steady)) == "off"
    varying = write_colmap(tmp_path / "varying", cams)
    _vary_exposure(varying / "images", 0.4)
    scene = load_scene(varying)
    assert resolve_appearance_mode("auto", scene) == "on"
    assert resolve_appearance_mode("off", scene) == "off" and resolve_appearance_mode("on", load_scene(steady)) == "on"


def test_auto_is_off_for_rendered_scenes_and_few_photos(tmp_path):
    blender = write_blender(tmp_path / "synthetic", orbit_cameras(n=3 * MIN_IMAGES, width=32, height=24))
    for split in ("train", "test", "val"):
        _vary_exposure(blender / split, 0.4)
    assert resolve_appearance_mode("auto", load_scene(blender)) == "off"
    few = write_colmap(tmp_path / "few", orbit_cameras(n=MIN_IMAGES // 2, width=32, height=24))
    _vary_exposure(few / "images", 0.4)
    assert resolve_appearance_mode("auto", load_scene(few)) == "off"


def test_a_bad_value_is_one_sentence(tiny_demo, tmp_path, capsys):
    with pytest.raises(NerfkitError, match="appearance must be one of auto, on, off, got 'yes'"):
        check_appearance_mode("yes")
    assert main(tiny_train_args(tiny_demo, tmp_path, "--max-steps", "1", "--set", "appearance=yes")) == 2
    err = capsys.readouterr().err
    assert "appearance" in err and "Traceback" not in err


def test_the_run_records_what_auto_decided(tmp_path, capsys):
    cams = orbit_cameras(n=MIN_IMAGES + 6, width=32, height=24)
    varying = write_colmap(tmp_path / "varying", cams)
    _vary_exposure(varying / "images", 0.4)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (varying / "images").iterdir())
    assert main(tiny_train_args(varying, tmp_path / "out", "--max-steps", "2", "--eval-every", "0",
                                "--triangulate", "off")) == 0
    assert "appearance: on" in capsys.readouterr().out
    config = yaml.safe_load(next((tmp_path / "out").glob("*/ngp/*/config.yaml")).read_text())
    assert config["method"]["appearance"] == "on"
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (varying / "images").iterdir()) == before

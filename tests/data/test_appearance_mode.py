"""``appearance=auto`` decided from the scene (``data/appearance.py``): on for a photo capture of many
training photos whose EXIF exposure varies, off for rendered scenes, few photos, one exposure or no
EXIF (however much the photos' brightness varies with what they show); the run's config.yaml
records the decision; a bad value is one sentence."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import yaml
from PIL import ExifTags, Image

from nerfkit.cli import main
from nerfkit.core.errors import NerfkitError
from nerfkit.data.appearance import (MIN_IMAGES, check_appearance_mode, exposure_spread, exposure_value,
                                     resolve_appearance_mode)
from nerfkit.data.load import load_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scene_writers import orbit_cameras, write_blender, write_transforms  # noqa: E402
from tiny_run import tiny_train_args  # noqa: E402


def _save_photo(path: Path, rgb: np.ndarray, seconds: float | None, f_number: float = 1.8, iso: int = 100) -> None:
    """``rgb`` as a JPEG with the EXIF of a photo taken at ``seconds``, ``f_number``, ``iso``
    (no EXIF when ``seconds`` is None)."""
    exif = Image.Exif()
    if seconds is not None:
        tags = exif.get_ifd(ExifTags.IFD.Exif)
        tags[ExifTags.Base.ExposureTime] = seconds
        tags[ExifTags.Base.FNumber] = f_number
        tags[ExifTags.Base.ISOSpeedRatings] = iso
    Image.fromarray(rgb).save(path, quality=95, exif=exif)


def _capture(root: Path, n: int, times: list[float | None]) -> Path:
    """A transforms.json capture of ``n`` JPEG photos taken at ``times[i % len(times)]`` seconds."""
    write_transforms(root, orbit_cameras(n=n, width=32, height=24))
    meta = json.loads((root / "transforms.json").read_text())
    for i, frame in enumerate(meta["frames"]):
        png = root / frame["file_path"]
        _save_photo(png.with_suffix(".jpg"), iio.imread(png)[..., :3], times[i % len(times)])
        png.unlink()
        frame["file_path"] = str(Path(frame["file_path"]).with_suffix(".jpg"))
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_the_exposure_value_of_a_photo_and_the_spread_of_a_capture(tmp_path):
    rgb = np.full((8, 8, 3), 120, np.uint8)
    _save_photo(tmp_path / "a.jpg", rgb, 1 / 100, f_number=2.0, iso=200)
    assert exposure_value(tmp_path / "a.jpg") == pytest.approx(math.log2(4.0 * 100) - 1.0, abs=1e-9)
    _save_photo(tmp_path / "b.jpg", rgb, 1 / 25, f_number=2.0, iso=200)              # two stops brighter
    _save_photo(tmp_path / "none.jpg", rgb, None)
    iio.imwrite(tmp_path / "render.png", rgb)
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    for path in ("none.jpg", "render.png", "broken.jpg"):
        assert exposure_value(tmp_path / path) is None, path
    assert exposure_spread([tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "none.jpg"]) == pytest.approx(2.0)
    assert exposure_spread([tmp_path / "a.jpg", tmp_path / "none.jpg", tmp_path / "render.png"]) is None


def test_auto_is_on_for_a_capture_whose_exposure_varies(tmp_path):
    n = MIN_IMAGES + 6
    varying = load_scene(_capture(tmp_path / "varying", n, [1 / 60, 1 / 120, 1 / 250]))
    assert resolve_appearance_mode("auto", varying) == "on"
    assert resolve_appearance_mode("off", varying) == "off"
    steady = load_scene(_capture(tmp_path / "steady", n, [1 / 120]))
    assert resolve_appearance_mode("auto", steady) == "off" and resolve_appearance_mode("on", steady) == "on"
    tiny_steps = load_scene(_capture(tmp_path / "tiny-steps", n, [1 / 120, 1 / 125]))       # under 1/3 stop
    assert resolve_appearance_mode("auto", tiny_steps) == "off"


def test_auto_is_off_without_exif_rendered_scenes_and_few_photos(tmp_path):
    # photos whose brightness varies a lot with what they show, but no exposure to go by
    no_exif = load_scene(_capture(tmp_path / "no-exif", MIN_IMAGES + 6, [None]))
    assert resolve_appearance_mode("auto", no_exif) == "off"
    blender = write_blender(tmp_path / "synthetic", orbit_cameras(n=3 * MIN_IMAGES, width=32, height=24))
    assert resolve_appearance_mode("auto", load_scene(blender)) == "off"
    few = load_scene(_capture(tmp_path / "few", MIN_IMAGES // 2, [1 / 60, 1 / 250]))
    assert resolve_appearance_mode("auto", few) == "off"


def test_a_bad_value_is_one_sentence(tiny_demo, tmp_path, capsys):
    with pytest.raises(NerfkitError, match="appearance must be one of auto, on, off, got 'yes'"):
        check_appearance_mode("yes")
    assert main(tiny_train_args(tiny_demo, tmp_path, "--max-steps", "1", "--set", "appearance=yes")) == 2
    err = capsys.readouterr().err
    assert "appearance" in err and "Traceback" not in err


def test_the_run_records_what_auto_decided(tmp_path, capsys):
    capture = _capture(tmp_path / "varying", MIN_IMAGES + 6, [1 / 60, 1 / 120, 1 / 250])
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (capture / "images").iterdir())
    assert main(tiny_train_args(capture, tmp_path / "out", "--max-steps", "2", "--eval-every", "0",
                                "--triangulate", "off")) == 0
    assert "appearance: on" in capsys.readouterr().out
    config = yaml.safe_load(next((tmp_path / "out").glob("*/ngp/*/config.yaml")).read_text())
    assert config["method"]["appearance"] == "on"
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (capture / "images").iterdir()) == before

"""``masks=alpha``: a capture's masks/ folder becomes the images' alpha channel; bad masks name themselves
(``masks=ignore``, the default where masks exist: tests/data/test_ignore_masks.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from nerfkit.core.errors import NerfkitError
from nerfkit.data import load_scene
from scene_writers import KnownCameras, orbit_cameras, write_colmap, write_transforms


def disc_mask(index: int, width: int, height: int) -> np.ndarray:
    """uint8 (H, W): 255 inside a disc whose centre moves with ``index``, 0 outside."""
    ys, xs = np.mgrid[0:height, 0:width]
    cx, cy = width / 2 + (index % 3) - 1, height / 2
    return np.where((xs - cx) ** 2 + (ys - cy) ** 2 < (0.35 * height) ** 2, 255, 0).astype(np.uint8)


def write_masks(root: Path, cams: KnownCameras, name=lambda stem: f"{stem}.png", rgb: bool = False) -> list:
    folder = root / "masks"
    folder.mkdir(parents=True, exist_ok=True)
    masks = []
    for i, stem in enumerate(cams.names):
        width, height = (int(v) for v in cams.sizes[i])
        mask = disc_mask(i, width, height)
        iio.imwrite(folder / name(stem), np.repeat(mask[..., None], 3, 2) if rgb else mask)
        masks.append(mask)
    return masks


def by_stem(scene) -> dict[str, int]:
    return {Path(p).stem: i for i, p in enumerate(scene.image_paths)}


@pytest.fixture
def cams() -> KnownCameras:
    return orbit_cameras(n=8)


@pytest.mark.parametrize("naming", ["stem", "colmap"])
def test_colmap_masks_become_alpha(tmp_path, cams, naming):
    root = write_colmap(tmp_path / "capture", cams)
    name = (lambda stem: f"{stem}.png") if naming == "stem" else (lambda stem: f"{stem}.png.png")
    masks = write_masks(root, cams, name, rgb=naming == "colmap")
    plain = load_scene(root)
    scene = load_scene(root, masks="alpha")
    index = by_stem(scene)
    for i, stem in enumerate(cams.names):
        image = scene.images[index[stem]]
        assert image.shape[2] == 4
        np.testing.assert_array_equal(image[..., 3], masks[i])
        np.testing.assert_array_equal(image[..., :3], plain.images[by_stem(plain)[stem]])
    # a masked capture is an object (a box), whatever the format would imply
    assert not scene.unbounded and scene.extras["kind"] == "object" and scene.extras["masks"] == "alpha"
    assert plain.images[0].shape[2] == 3


def test_masks_downscale_with_the_image(tmp_path, cams):
    root = write_transforms(tmp_path / "capture", cams)
    masks = write_masks(root, cams)
    scene = load_scene(root, downscale=2, masks="alpha")
    index = by_stem(scene)
    for i, stem in enumerate(cams.names):
        alpha = scene.images[index[stem]][..., 3].astype(np.float64)
        box = masks[i].reshape(alpha.shape[0], 2, alpha.shape[1], 2).mean(axis=(1, 3))
        assert np.abs(alpha - box).max() <= 1.0          # the mean of each 2x2 block, rounded


def test_masks_ignore_by_default_and_never_written(tmp_path, cams):
    root = write_colmap(tmp_path / "capture", cams)
    assert load_scene(root).masks is None and load_scene(root).extras["masks"] == "off"   # no masks/ folder
    write_masks(root, cams)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in root.rglob("*"))
    scene = load_scene(root)
    assert scene.images[0].shape[2] == 3 and scene.masks is not None and scene.extras["masks"] == "ignore"
    assert load_scene(root, masks="off").masks is None
    load_scene(root, masks="alpha")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_bad_masks_are_one_sentence(tmp_path, cams):
    root = write_colmap(tmp_path / "capture", cams)
    with pytest.raises(NerfkitError, match=r"'.*masks' is not a folder"):
        load_scene(root, masks="alpha")
    write_masks(root, cams)
    with pytest.raises(NerfkitError, match="masks must be one of auto, off, ignore, alpha, got 'bogus'"):
        load_scene(root, masks="bogus")
    (root / "masks" / f"{cams.names[3]}.png").unlink()
    with pytest.raises(NerfkitError, match=rf"image '.*{cams.names[3]}.png' has no mask in"):
        load_scene(root, masks="alpha")
    iio.imwrite(root / "masks" / f"{cams.names[3]}.png", np.zeros((5, 7), np.uint8))
    with pytest.raises(NerfkitError, match=r"mask '.*' is 7x5 pixels but its photo is 32x24"):
        load_scene(root, masks="alpha")
    (root / "masks" / f"{cams.names[3]}.png").write_bytes(b"not a png")
    with pytest.raises(NerfkitError, match=r"could not be read: it is not a valid image file"):
        load_scene(root, masks="alpha")


def test_train_flag_reports_a_missing_mask_folder(tmp_path, cams):
    root = write_colmap(tmp_path / "capture", cams)
    result = subprocess.run([sys.executable, "-m", "nerfkit", "train", str(root), "--masks", "alpha",
                             "--output-dir", str(tmp_path / "out"), "--no-viewer", "--max-steps", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "is not a folder" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("metrics.json"))

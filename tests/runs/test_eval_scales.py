"""Multiscale evaluation (``nerfkit eval --scales``): downscaled cameras, area-downsampled ground
truth, and the command end to end on a tiny trained run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_run import train_tiny_ngp_once

from nerfkit.cli import main
from nerfkit.data.cameras import Cameras, generate_rays, image_pixels
from nerfkit.runs.evaluate import area_downscale, evaluate_split, ground_truth

SCALE_ERROR = "nerfkit: error: --scales expects a comma-separated list of positive integers such as 1,2,4, got '{}'"


def _cameras(width: int, height: int, distortion: list[float]) -> Cameras:
    """Two cameras of one size with different poses and intrinsics (cx, cy off-centre)."""
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[1, :3, :3] = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    c2w[1, :3, 3] = torch.tensor([0.3, -0.2, 1.5])
    intrinsics = torch.tensor([[40.0, 42.0, 18.3, 12.9], [55.5, 55.5, width / 2.0, height / 2.0]])
    sizes = torch.tensor([[width, height]] * 2)
    return Cameras(c2w, intrinsics, sizes, torch.tensor([distortion] * 2))


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("distortion", [[0.0] * 5, [0.05, -0.01, 0.002, -0.001, 0.0]])
def test_downscaled_rays_go_through_block_centres(factor, distortion):
    full = _cameras(37, 26, distortion)                  # odd sizes: the right and bottom are cropped
    small = full.downscaled(factor)
    width, height = 37 // factor, 26 // factor
    assert small.sizes.tolist() == [[width, height]] * 2
    assert torch.equal(small.intrinsics, full.intrinsics / factor)
    assert torch.equal(small.distortion, full.distortion) and torch.equal(small.c2w, full.c2w)
    pixels = image_pixels(width, height)                  # (i + 0.5, j + 0.5)
    block_centres = (pixels - 0.5) * factor + factor / 2.0   # (i*f + f/2, j*f + f/2) at full size
    for camera in range(2):
        ids = torch.full((len(pixels),), camera, dtype=torch.int64)
        origins, dirs = generate_rays(small, ids, pixels)
        full_origins, full_dirs = generate_rays(full, ids, block_centres)
        assert torch.equal(origins, full_origins)
        torch.testing.assert_close(dirs, full_dirs, rtol=0, atol=1e-6)
    assert torch.equal(full.downscaled(1).intrinsics, full.intrinsics)


def test_downscaled_rejects_non_integer_factors():
    with pytest.raises(ValueError, match="positive integer"):
        _cameras(8, 8, [0.0] * 5).downscaled(0)


def test_area_downscale_checkerboard_constant_and_crop():
    ys, xs = torch.meshgrid(torch.arange(6), torch.arange(7), indexing="ij")
    board = ((xs + ys) % 2).float()[..., None].repeat(1, 1, 3)          # period-2 checkerboard, 6x7
    grey = area_downscale(board, 2)
    assert grey.shape == (3, 3, 3) and torch.equal(grey, torch.full((3, 3, 3), 0.5))
    constant = torch.full((9, 10, 3), 0.3)
    assert torch.allclose(area_downscale(constant, 4), torch.full((2, 2, 3), 0.3))
    ramp = torch.arange(5.0)[None, :, None].repeat(3, 1, 1)              # 3x5, columns 0..4
    assert area_downscale(ramp, 2)[..., 0].tolist() == [[0.5, 2.5]]      # last row and column cropped
    assert area_downscale(ramp, 1) is ramp


def test_ground_truth_composites_before_averaging():
    image = np.zeros((4, 4, 4), np.uint8)
    image[:, :, 3] = 255                                   # opaque black ...
    image[:, 1::2] = (255, 0, 0, 0)                        # ... beside fully transparent red columns
    image[2:, 2:] = (0, 0, 0, 128)                         # a half-transparent black block
    scene = SimpleNamespace(images=[image])
    white = torch.ones(3)
    target = ground_truth(scene, 0, white, 2)
    assert target.shape == (2, 2, 3)
    # left blocks: two black + two white pixels -> 0.5 grey (averaging RGBA first gives pink)
    torch.testing.assert_close(target[:, 0], torch.full((2, 3), 0.5))
    torch.testing.assert_close(target[0, 1], torch.full((3,), 0.5))
    # the half-transparent block on white: 1 - 128/255 everywhere
    torch.testing.assert_close(target[1, 1], torch.full((3,), 1.0 - 128 / 255))
    assert torch.equal(ground_truth(scene, 0, white), ground_truth(scene, 0, white, 1))


@pytest.fixture(scope="module")
def trained_run(tiny_demo, tmp_path_factory) -> Path:
    return train_tiny_ngp_once(tiny_demo, tmp_path_factory.mktemp("scales-runs"), 150)


def test_eval_scales_end_to_end(trained_run, tmp_path, capsys):
    output = tmp_path / "multi.json"
    capsys.readouterr()
    assert main(["eval", str(trained_run), "--scales", "1,2,1", "-o", str(output)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[2] == str(output), lines
    assert lines[0].startswith("test x1: PSNR ") and lines[0].endswith("(32x32, 3 images)"), lines
    assert lines[1].startswith("test x2: PSNR ") and lines[1].endswith("(16x16, 3 images)"), lines
    data = json.loads(output.read_text())
    assert set(data) == {"run", "step", "split", "background", "scales", "psnr", "ssim"}
    assert data["run"] == str(trained_run) and data["split"] == "test" and data["background"] == "white"
    assert list(data["scales"]) == ["1", "2"] and list(data["psnr"]) == ["1", "2"]
    for key, result in data["scales"].items():
        assert result["scale"] == int(key) and len(result["images"]) == 3
        assert data["psnr"][key] == result["psnr"] and data["ssim"][key] == result["ssim"]
        assert math.isfinite(result["psnr"]) and result["psnr"] > 18.0, result["psnr"]   # measured ~24 dB
        assert 0.6 < result["ssim"] <= 1.0, result["ssim"]
    # scale 1 of the multiscale JSON scores the same renders as the plain command
    assert main(["eval", str(trained_run)]) == 0
    plain = json.loads((trained_run / "eval-test.json").read_text())
    assert "scale" not in plain and abs(plain["psnr"] - data["psnr"]["1"]) < 1e-6


def test_eval_scale_images_are_downscaled(trained_run, tmp_path):
    from PIL import Image

    from nerfkit.runs.session import open_run

    config, scene, method, step = open_run(trained_run)
    result = evaluate_split(method, scene, "test", "white", limit=1, out_dir=tmp_path, scale=2)
    name = result["images"][0]["name"]
    assert result["scale"] == 2
    for suffix in ("_x2.png", "_x2_depth.png", "_x2_gt.png"):
        with Image.open(tmp_path / f"{name}{suffix}") as image:
            assert image.size == (16, 16), suffix
    assert not (tmp_path / f"{name}.png").exists()


@pytest.mark.parametrize("value", ["0", "a", "1,,2", "-2", "3.5", ""])
def test_bad_scales_syntax(value, tmp_path, capsys):
    # the syntax is checked before the run folder is even looked at
    assert main(["eval", str(tmp_path / "nowhere"), f"--scales={value}"]) == 2
    assert capsys.readouterr().err.strip() == SCALE_ERROR.format(value)


def test_scales_too_large_for_the_images(trained_run, capsys):
    assert main(["eval", str(trained_run), "--scales", "1,64"]) == 2
    assert capsys.readouterr().err.strip() == ("nerfkit: error: --scales 64 is larger than the smallest "
                                               "test image dimension (32 px): expected at most 32")
    assert main(["eval", str(trained_run), "--scales", "4"]) == 2
    assert capsys.readouterr().err.strip() == (
        "nerfkit: error: --scales 4 shrinks the smallest test image dimension to 8 px, below the "
        "11 px SSIM window: expected at most 2")

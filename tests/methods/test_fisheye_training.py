"""OpenCV fisheye captures: ngp and mipnerf train on the demo object photographed through a fisheye
to within 1 dB of its pinhole twin (rays per pixel through the lens, evaluated in the lens), and
splat, whose rasterizer projects through pinholes, refuses such a scene in one sentence before any
training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nerfkit.cli import main
from nerfkit.data import load_scene
from fisheye_scenes import write_fisheye_demo
from tiny_run import tiny_mip_args, tiny_train_args

STEPS = 150


@pytest.fixture(scope="module")
def fisheye_scenes(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fisheye")
    return write_fisheye_demo(root / "fisheye"), write_fisheye_demo(root / "pinhole", fisheye=None)


def _psnr(method: str, scene: Path, output: Path) -> float:
    arguments = tiny_train_args if method == "ngp" else tiny_mip_args
    assert main(arguments(scene, output, "--max-steps", str(STEPS), "--eval-every", "0", threads=1)) == 0
    return json.loads(next(output.glob(f"*/{method}/*/metrics.json")).read_text())["psnr"]


@pytest.mark.parametrize("method", ["ngp", "mipnerf"])
def test_a_fisheye_capture_trains_like_its_pinhole_twin(fisheye_scenes, tmp_path, method):
    fisheye, pinhole = fisheye_scenes
    assert load_scene(fisheye).cameras.has_fisheye and not load_scene(pinhole).cameras.has_distortion
    scores = {name: _psnr(method, scene, tmp_path / name)
              for name, scene in (("fisheye", fisheye), ("pinhole", pinhole))}
    print(f"{method}: fisheye {scores['fisheye']:.2f} dB, pinhole twin {scores['pinhole']:.2f} dB")
    assert scores["fisheye"] > scores["pinhole"] - 1.0, scores


def test_splat_refuses_a_fisheye_scene_in_one_sentence_before_training(fisheye_scenes, tmp_path, capsys):
    fisheye, _ = fisheye_scenes
    args = ["train", str(fisheye), "--method", "splat", "--output-dir", str(tmp_path / "out"), "--no-progress",
            "--no-viewer", "--max-steps", "5"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("nerfkit: error: splat does not support OPENCV_FISHEYE cameras yet; use --method ngp or "
                   "undistort the photos"), err
    assert not (tmp_path / "out").exists()              # refused before a run folder was made

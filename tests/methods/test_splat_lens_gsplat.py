"""gsplat on CUDA and nerfkit's CPU rasterizer agree on a distorted capture (GPU only).

Splat renders pinholes only: a distorted capture's photos are resampled onto covering pinholes at
load, and held-out renders are warped into each photo's lens before scoring
(:func:`nerfkit.runs.evaluate.render_in_lens`). These tests check that this path gives the same
pictures and scores whichever rasterizer renders, and that gsplat trains the distorted capture as
well as its pinhole twin, as the CPU rasterizer does in ``test_lens_distortion.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from nerfkit.cli import main
from nerfkit.image.metrics import psnr
from nerfkit.runs.evaluate import evaluate_split, render_in_lens
from nerfkit.runs.session import open_run
from lens_scenes import LENS, write_lens_demo
from tiny_run import tiny_splat_args

TURN_DEG = 10.0     # as test_lens_distortion: the object sits where the lens bends it


def _train(scene: Path, output: Path, *extra: str) -> Path:
    assert main(tiny_splat_args(scene, output, "--max-steps", "300", *extra)) == 0
    return next(output.glob("*/splat/*/metrics.json")).parent


def _with_backend(method, backend: str, device: str):
    method.settings = dataclasses.replace(method.settings, backend=backend)
    return method.to(device)


@pytest.mark.cuda
def test_gsplat_and_the_cpu_rasterizer_render_a_distorted_capture_alike(tmp_path):
    pytest.importorskip("gsplat")
    scene = write_lens_demo(tmp_path / "distorted", turn_deg=TURN_DEG)
    run = _train(scene, tmp_path / "runs", "--device", "cpu")
    opened = open_run(run)
    background = torch.ones(3)
    cameras = [opened.scene.cameras[i] for i in opened.scene.split("test")]
    assert cameras and all(camera.has_distortion for camera in cameras)

    renders, scores = {}, {}
    for backend, device in (("nerfkit", "cpu"), ("gsplat", "cuda")):
        method = _with_backend(opened.method, backend, device)
        renders[backend] = [render_in_lens(method, camera, background) for camera in cameras]
        scores[backend] = evaluate_split(method, opened.scene)["psnr"]
    for (cpu, cpu_covered), (gpu, gpu_covered) in zip(renders["nerfkit"], renders["gsplat"]):
        assert cpu_covered is not None and torch.equal(cpu_covered, gpu_covered)   # the same warp
        assert float(cpu["alpha"].mean()) > 0.05, "the object must be in the picture"
        assert psnr(gpu["rgb"].clamp(0, 1), cpu["rgb"].clamp(0, 1)) > 45.0
        torch.testing.assert_close(gpu["alpha"], cpu["alpha"], atol=5e-3, rtol=0)
    assert abs(scores["gsplat"] - scores["nerfkit"]) < 0.05, scores


@pytest.mark.cuda
def test_gsplat_trains_a_distorted_capture_like_its_pinhole_twin(tmp_path):
    pytest.importorskip("gsplat")
    scores = {}
    for name, lens in (("distorted", LENS), ("pinhole", (0.0,) * 5)):
        scene = write_lens_demo(tmp_path / name, distortion=lens, turn_deg=TURN_DEG)
        run = _train(scene, tmp_path / f"runs_{name}", "--device", "cuda", "--set", "backend=gsplat")
        scores[name] = json.loads((run / "metrics.json").read_text())["psnr"]
    assert scores["pinhole"] > 20.0, scores
    assert scores["distorted"] > scores["pinhole"] - 1.0, scores

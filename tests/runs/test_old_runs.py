"""Runs trained by the code before the layered structure (tests/fixtures/runs_v0, commit 0fe404b)
still open: ``nerfkit eval`` scores them exactly as the old code did, ``export`` makes the same
mesh and splat file, ``view`` draws them, and ``train --resume`` continues them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from nerfkit.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs_v0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
RUNS = sorted(EXPECTED)


@pytest.fixture
def old_run(request, tiny_demo, tmp_path) -> Path:
    """A copy of an old run folder, its config.yaml pointed at this machine's tiny demo scene."""
    run = tmp_path / "outputs" / "tiny-demo" / request.param / "2026-12-02_175509"
    shutil.copytree(FIXTURES / request.param, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["scene"] = str(tiny_demo)
    config["train"]["output_dir"] = str(tmp_path / "outputs")
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def test_the_fixtures_are_runs_of_the_old_code():
    assert RUNS == ["mipnerf", "mipnerf360", "ngp", "splat"]
    old = yaml.safe_load((FIXTURES / "ngp" / "config.yaml").read_text())["method"]
    assert old["grid_cascades"] == 0 and old["cone_angle"] == -1.0      # the sentinels of before
    assert yaml.safe_load((FIXTURES / "mipnerf" / "config.yaml").read_text())["method"]["lr"] == 0.0


@pytest.mark.parametrize("old_run", RUNS, indirect=True)
def test_eval_scores_an_old_run_as_the_old_code_did(old_run, capsys):
    expected = EXPECTED[_name(old_run)]
    assert main(["eval", str(old_run)]) == 0
    result = json.loads((old_run / "eval-test.json").read_text())
    assert result["step"] == expected["step"]
    assert result["psnr"] == pytest.approx(expected["psnr"], abs=1e-4)
    assert result["ssim"] == pytest.approx(expected["ssim"], abs=1e-5)


@pytest.mark.parametrize("old_run", RUNS, indirect=True)
def test_export_mesh_of_an_old_run_is_the_old_mesh(old_run, tmp_path, capsys):
    expected = EXPECTED[_name(old_run)]
    out = tmp_path / "mesh.ply"
    assert main(["export", "mesh", str(old_run), "-o", str(out), "--resolution", "32"]) == 0
    from nerfkit.export.mesh_io import read_mesh

    mesh = read_mesh(out)
    assert (len(mesh["vertices"]), len(mesh["faces"])) == (expected["mesh_vertices"], expected["mesh_faces"])


@pytest.mark.parametrize("old_run", ["splat"], indirect=True)
def test_export_splat_of_an_old_run(old_run, tmp_path, capsys):
    from nerfkit.export.splat_ply import read_splat_ply

    out = tmp_path / "splat.ply"
    assert main(["export", "splat", str(old_run), "-o", str(out)]) == 0
    assert read_splat_ply(out)["means"].shape[0] == EXPECTED["splat"]["gaussians"]


@pytest.mark.parametrize("old_run", RUNS, indirect=True)
def test_an_old_run_opens_in_the_viewer_and_resumes_training(old_run, capsys):
    from nerfkit.app.serve import start_viewer
    from nerfkit.app.viewer_adapter import MethodRenderer
    from nerfkit.runs.session import open_run
    from nerfkit.runs.trainer import TrainStats
    from nerfkit.viewer.types import ViewRequest

    _, scene, method, step = open_run(old_run)
    server = start_viewer(method, scene, old_run, "127.0.0.1", 0, TrainStats(step=step))
    server.close()
    camera = scene.cameras.c2w[scene.split("test")[0]].double().numpy()
    frame = MethodRenderer(method)(ViewRequest(camera, np.radians(40.0), 24, 24))
    assert frame.rgb.shape == (24, 24, 3) and frame.rgb.std() > 0.0
    assert main(["train", "--resume", str(old_run), "--max-steps", "32", "--no-progress", "--no-viewer"]) == 0
    metrics = json.loads((old_run / "metrics.json").read_text())
    assert metrics["steps"] == 32


def _name(run: Path) -> str:
    """The fixture a copied run came from (the name of its method folder in ``old_run``)."""
    return run.parent.name

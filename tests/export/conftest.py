"""Fixtures shared by the export tests: one tiny trained ngp run and the demo's ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny_run import tiny_train_args
from nerfkit.cli import main
from nerfkit.export.mesh_io import read_mesh
from nerfkit.export.tsdf import sample_surface


@pytest.fixture(scope="session")
def trained_run(tiny_demo, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("mesh-runs")
    with pytest.MonkeyPatch.context() as patch:      # the autouse fixture is function-scoped
        patch.setenv("NERFKIT_COMPILE", "0")
        assert main(tiny_train_args(tiny_demo, output, "--max-steps", "300")) == 0
    runs = sorted(output.glob("*/ngp/*/config.yaml"))
    assert len(runs) == 1, runs
    return runs[0].parent


@pytest.fixture(scope="session")
def gt_surface(tiny_demo) -> tuple[np.ndarray, np.ndarray]:
    """(gt vertices, 20k points sampled on the gt surface), world coordinates."""
    gt = read_mesh(tiny_demo / "gt_mesh.ply")
    return gt["vertices"], sample_surface(gt["vertices"], gt["faces"], 20000, np.random.default_rng(0))

"""Fixtures of the viewer tests: one tiny trained run shared by the whole folder."""

from __future__ import annotations

import pytest
import torch
from tiny_run import tiny_train_args

VIEWER_RUN_STEPS = 100    # the demo object shows clearly (about 21 dB test PSNR)


@pytest.fixture(scope="session")
def viewer_run(tiny_demo, tmp_path_factory):
    """A finished tiny ngp run (folder) of the 32 px demo scene."""
    from nerfkit.cli import main
    from nerfkit.runs.folder import RunFolder

    output = tmp_path_factory.mktemp("viewer-runs")
    # One torch thread: on a shared 2-core machine two OpenMP threads can be 5x slower, and the
    # viewer subprocess (which reads the run's config) then shares the cores with the browser.
    args = tiny_train_args(tiny_demo, output, "--max-steps", str(VIEWER_RUN_STEPS), threads=1)
    threads = torch.get_num_threads()
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)          # the CLI sets it for the whole process
    return RunFolder.find(output / "tiny-demo" / "ngp").path

"""Fixtures of the hardening suite and the one-line count summary it prints at the end.

Every hardening test reports what it tried into :class:`outcomes.HardeningCounts` (kept in
pytest's ``config.stash``, not in a module global); ``pytest_terminal_summary`` prints one line,
e.g. ``hardening: 1210 broken inputs tried (...), 1210 clear errors, 0 tracebacks; 14 kills, 14
successful resumes``, which shows in a plain ``pytest -q`` run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))   # scene_writers

from corpus import BASES, write_base  # noqa: E402
from outcomes import COUNTS_KEY, HardeningCounts, Tally, run_cli  # noqa: E402
from tiny_run import tiny_train_args  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.stash[COUNTS_KEY] = HardeningCounts()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    counts = config.stash.get(COUNTS_KEY, None)
    if counts is not None and (counts.inputs or counts.kills or counts.fuzzed):
        terminalreporter.write_line(counts.line())


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Runs here train on one thread (``--threads 1``); later tests get their count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def counts(request: pytest.FixtureRequest) -> HardeningCounts:
    return request.config.stash[COUNTS_KEY]


@pytest.fixture
def tally(counts: HardeningCounts) -> Tally:
    return Tally(counts)


@pytest.fixture(scope="session")
def bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    return {base: write_base(base, root / base) for base in BASES}


def _train_run(scene: Path, output: Path, *extra: str) -> Path:
    if "splat" in extra:
        argv = ["train", scene, "--output-dir", output, "--no-progress", "--threads", "1",
                "--no-viewer", "--max-steps", "2", *extra]
    else:
        argv = tiny_train_args(scene, output, "--threads", "1", "--max-steps", "2", *extra)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:     # the autouse fixture is function-scoped
        patch.setenv("NERFKIT_COMPILE", "0")
        outcome = run_cli(argv)
    torch.set_num_threads(threads)
    assert outcome.code == 0, outcome.stderr + outcome.traceback
    runs = sorted(output.glob("*/*/*/config.yaml"))
    assert len(runs) == 1, runs
    return runs[0].parent


@pytest.fixture(scope="session")
def trained_runs(bases, tmp_path_factory) -> dict[str, Path]:
    """A 2-step ngp run and a 2-step splat run of the valid blender base."""
    root = tmp_path_factory.mktemp("runs")
    return {"ngp": _train_run(bases["blender"], root / "ngp"),
            "splat": _train_run(bases["blender"], root / "splat", "--method", "splat",
                                "--set", "init_points=300")}

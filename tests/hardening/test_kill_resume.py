"""``kill -9`` at random moments, many times: ``--resume`` always continues from the newest intact
checkpoint, never from a partial file; a failed checkpoint write keeps the previous checkpoint.

One real ``nerfkit train`` process after another (tiny ngp settings, a checkpoint every step so
that many kills land inside a checkpoint write) is killed with SIGKILL at a seeded random moment:
mostly while it trains, sometimes while it is still starting, and in some rounds the moment a
checkpoint's temp file appears (inside the write). After every kill each file named
``step-NNNNNNN.pt`` must load completely and the newest must not be older than before; before
some resumes a truncated copy is planted under a newer step number, as a half-finished copy would
leave it. Each resume must report the checkpoint :func:`latest_checkpoint` picks.
"""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from outcomes import HardeningCounts, run_cli
from tiny_run import tiny_train_args
from nerfkit.runs.checkpoints import latest_checkpoint, load_checkpoint
from nerfkit.runs.folder import RunFolder


def checkpoint_path(run, step):
    return RunFolder(run).checkpoint(step)


def list_checkpoints(run):
    return RunFolder(run).checkpoints()


KILLS = 14
SEED = 2026
STARTUP_KILLS = {3, 9}            # rounds killed at a random moment of start-up instead
WRITE_KILLS = {5, 7, 11}          # rounds killed the moment a checkpoint's temp file appears
PLANT_PARTIAL = {4, 8, 12}        # rounds resumed with a truncated, newer-named file present
RESUMED = re.compile(r"resumed from (\S+) \(step (\d+),")


def _launch(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "NERFKIT_COMPILE": "0", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "nerfkit.cli", *map(str, argv)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _wait_for(log: Path, pattern: str, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pattern in log.read_text(errors="replace"):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def _wait_for_temp_file(run: Path, process: subprocess.Popen, timeout: float) -> bool:
    """Poll (~1 ms) until a checkpoint write is under way: its temp file exists."""
    folder, deadline = run / "checkpoints", time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with os.scandir(folder) as entries:
            if any(entry.name.startswith(".step-") for entry in entries):
                return True
        time.sleep(0.001)
    return False


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def _check_chain(run: Path, newest_before: int) -> int:
    """Every ``step-*.pt`` loads completely; the newest is not older than before. Returns it."""
    steps = []
    for step, path in list_checkpoints(run):
        state = load_checkpoint(path)                   # raises on any partial file
        assert int(state["step"]) == step, path
        assert all(bool(torch.isfinite(v).all()) for v in state["method"].values()
                   if v.is_floating_point()), path
        steps.append(step)
    newest = max(steps, default=0)
    assert newest >= newest_before, (steps, newest_before)
    return newest


def _plant_partial(run: Path) -> Path:
    """A truncated copy of the newest checkpoint under a step number 1000 higher."""
    newest = latest_checkpoint(run)
    data = newest.read_bytes()
    fake = checkpoint_path(run, int(newest.stem.split("-")[1]) + 1000)
    fake.write_bytes(data[: len(data) // 2])
    return fake


@pytest.mark.filterwarnings("ignore:Skipping unreadable checkpoint")
def test_kill_9_at_random_moments_then_resume(bases, tmp_path, counts: HardeningCounts):
    rng = random.Random(SEED)
    output = tmp_path / "out"
    train = tiny_train_args(bases["blender"], output, "--threads", "1", "--max-steps", "100000",
                            "--checkpoint-every", "1")
    run: Path | None = None
    newest, mid_write, resumed = 0, 0, 0
    for round_ in range(KILLS):
        log = tmp_path / f"round-{round_:02d}.log"
        planted = _plant_partial(run) if run is not None and round_ in PLANT_PARTIAL else None
        expected = latest_checkpoint(run) if run is not None else None
        argv = train if run is None else ["train", "--resume", run, "--no-progress", "--no-viewer",
                                          "--threads", "1"]
        process = _launch(argv, log)
        if round_ in STARTUP_KILLS:
            time.sleep(rng.uniform(0.0, 2.0))
        elif run is None:
            assert _wait_for(log, "run folder:", process, 120), log.read_text()
            time.sleep(rng.uniform(1.5, 2.5))          # past the first checkpoints
        elif expected is None:
            assert _wait_for(log, "has no checkpoint yet", process, 120), log.read_text()
            time.sleep(rng.uniform(1.5, 2.5))
        else:
            assert _wait_for(log, "resumed from", process, 120), log.read_text()
            match = RESUMED.search(log.read_text())
            assert match and Path(match.group(1)) == expected, (log.read_text(), expected)
            assert int(match.group(2)) == newest
            resumed += 1
            if round_ in WRITE_KILLS:
                for temp in (run / "checkpoints").glob(".step-*"):
                    temp.unlink()
                assert _wait_for_temp_file(run, process, 30), log.read_text()
            else:
                time.sleep(rng.uniform(0.2, 1.2))
        assert process.poll() is None, log.read_text()   # still training when killed
        _kill(process)
        counts.kills += 1
        if run is None:
            runs = sorted(output.glob("*/ngp/*/config.yaml"))
            if not runs:               # killed before the run folder existed: start again
                continue
            run = runs[0].parent
        mid_write += any(p.name.startswith(".step-") for p in (run / "checkpoints").glob(".*"))
        for temp in (run / "checkpoints").glob(".step-*"):
            temp.unlink()              # leftovers of interrupted writes never count as checkpoints
        if planted is not None and planted.exists() and latest_checkpoint(run) is None:
            raise AssertionError("the planted partial file hid every intact checkpoint")
        if planted is not None:
            planted.unlink(missing_ok=True)
        newest = _check_chain(run, newest)
        if list_checkpoints(run):
            assert latest_checkpoint(run) == checkpoint_path(run, newest)
    assert run is not None and newest > 0
    assert resumed >= KILLS // 2
    counts.resumes += resumed
    counts.kills_mid_write += mid_write

    # A last resume with a step limit finishes the run from the newest checkpoint.
    outcome = run_cli(["train", "--resume", run, "--no-progress", "--no-viewer", "--threads", "1",
                       "--max-steps", newest + 3])
    assert outcome.code == 0, outcome.stderr + outcome.traceback
    counts.resumes += 1
    assert load_checkpoint(latest_checkpoint(run))["step"] == newest + 3


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(bases, tmp_path, monkeypatch):
    """The disk fills up at the third checkpoint: one sentence, exit 2, steps 2 and 4 intact."""
    import nerfkit.runs.checkpoints as checkpoints

    real_save, calls = torch.save, []

    def save(obj, file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            file.write(b"partial bytes")        # some bytes reach the temp file, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "save", save)
    output = tmp_path / "out"
    outcome = run_cli(tiny_train_args(bases["blender"], output, "--threads", "1", "--max-steps", "10",
                                      "--checkpoint-every", "2"))
    assert outcome.problems("step-0000006.pt' could not be written: [Errno 28] No space left on "
                            "device") == []
    run = next(output.glob("*/ngp/*"))
    assert [step for step, _ in list_checkpoints(run)] == [2, 4]
    assert not list((run / "checkpoints").glob(".*")), "the temp file of the failed write is left"
    assert load_checkpoint(latest_checkpoint(run))["step"] == 4
    monkeypatch.setattr(checkpoints.torch, "save", real_save)
    outcome = run_cli(["train", "--resume", run, "--no-progress", "--no-viewer", "--threads", "1"])
    assert outcome.code == 0, outcome.stderr + outcome.traceback
    assert load_checkpoint(latest_checkpoint(run))["step"] == 10

"""``nerfkit train --nproc N`` and ``torchrun -m nerfkit train`` end to end (two gloo processes on the
CPU): one run folder, Ctrl-C saves and resumes, a process that dies ends the run in one sentence
and the run resumes; bad use in one sentence each."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiny_run import tiny_train_args
from nerfkit.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "NERFKIT_COMPILE": "0",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _checkpoints(output: Path) -> set[Path]:
    return set(output.glob("*/ngp/*/checkpoints/step-*.pt"))


def _start(args: list[str], *launcher: str) -> subprocess.Popen:
    command = [sys.executable, *(launcher or ["-m", "nerfkit"]), *args]
    return subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_new_checkpoint(process: subprocess.Popen, output: Path, before: set[Path]) -> None:
    deadline = time.monotonic() + 300
    while not _checkpoints(output) - before:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)


def _process_of_rank(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of the launcher's child with RANK=rank (read from /proc)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    for pid in children:
        if f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return int(pid)
    raise AssertionError(f"no process with RANK={rank} among {children}")


def _step(checkpoint: Path) -> int:
    return int(checkpoint.stem.split("-")[1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the launcher's processes in /proc")
def test_two_processes_interrupt_resume_under_torchrun_and_survive_a_dying_process(tiny_demo, tmp_path):
    args = tiny_train_args(tiny_demo, tmp_path, "--checkpoint-every", "5", "--threads", "1")

    # 1. --nproc 2, Ctrl-C: the main process saves where every process stopped; how to go on.
    first = _start([*args, "--max-steps", "100000", "--nproc", "2"])
    _wait_for_new_checkpoint(first, tmp_path, set())
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    runs = sorted(tmp_path.glob("*/ngp/*/config.yaml"))
    assert len(runs) == 1, runs
    run = runs[0].parent
    assert f"resume with: nerfkit train --resume {run} --nproc 2" in err
    interrupted = max(_step(path) for path in _checkpoints(tmp_path))
    assert f"interrupted at step {interrupted}; saved" in out

    # 2. The same run resumed by torchrun's launcher: it goes on from that step to the end.
    target = interrupted + 4
    resumed = _start(["--nproc-per-node", "2", "-m", "nerfkit", "train", "--resume", str(run), "--max-steps",
                      str(target), "--no-progress", "--no-viewer"], "-m", "torch.distributed.run")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resumed from {run}/checkpoints/step-{interrupted:07d}.pt" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == target and metrics["processes"] == 2 and metrics["test_images"] == 3
    assert f"step-{target:07d}.pt" in {path.name for path in _checkpoints(tmp_path)}
    assert len(list(tmp_path.glob("*/ngp/*/config.yaml"))) == 1      # still one run folder

    # 3. A process killed mid-run: the run stops in one sentence that says how to resume it.
    before = _checkpoints(tmp_path)
    third = _start(["train", "--resume", str(run), "--max-steps", "100000", "--no-progress", "--no-viewer",
                    "--nproc", "2"])
    _wait_for_new_checkpoint(third, tmp_path, before)
    os.kill(_process_of_rank(third, 1), signal.SIGKILL)
    out, err = third.communicate(timeout=120)
    assert third.returncode == 2, err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("nerfkit: error: training stopped at step "), err
    assert f"with: nerfkit train --resume {run} --nproc 2" in errors[0]
    assert "Traceback" not in err
    # ... and goes on from its last checkpoint (one process this time).
    last = max(_step(path) for path in _checkpoints(tmp_path))
    assert main(["train", "--resume", str(run), "--max-steps", str(last + 2), "--no-progress", "--no-viewer"]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == last + 2


def test_bad_use_of_processes_is_one_sentence(tiny_demo, tmp_path, monkeypatch, capsys):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    args = tiny_train_args(tiny_demo, tmp_path, "--max-steps", "2")

    def error(*extra: str) -> str:
        assert main([*args, *extra]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nerfkit: error: "), lines
        return lines[0]

    assert "--nproc must be at least 1, got 0" in error("--nproc", "0")
    with socket.socket() as busy:                       # MASTER_PORT taken by another program
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("MASTER_PORT", str(busy.getsockname()[1]))
        assert f"MASTER_PORT {busy.getsockname()[1]} on 127.0.0.1 is in use" in error("--nproc", "2")
    monkeypatch.setenv("RANK", "0")                    # torchrun's variables half set
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "set but not LOCAL_RANK, MASTER_ADDR" in error()
    for name, value in (("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
        monkeypatch.setenv(name, value)
    assert "leave --nproc out" in error("--nproc", "2")
    assert not list(tmp_path.glob("*/ngp/*"))          # nothing was started

"""How often a two-process CPU run ends cleanly: the equivalence run of tests/runs/test_distributed.py
(ngp, then splat, 10 steps each, two gloo processes on the built-in 32 px demo scene) repeated
``--runs`` times; prints each failed run's exit codes and the end of its stderr, then the count.

A process that trained fine but aborted on its way out (exit code -6, "terminate called without an
active exception" from a gloo worker thread during the interpreter's exit) counts as a failure.

    python bench/distributed_exit.py --runs 100
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "runs" / "distributed_worker.py"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_pair(scene: Path, folder: Path) -> tuple[list[int], list[str]]:
    """One two-process run of the test's worker: the exit codes and the stderr of each process."""
    env = {**os.environ, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "NERFKIT_COMPILE": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    processes = [subprocess.Popen([sys.executable, str(WORKER), str(scene), str(folder / "runs"), str(folder / "result.pt")],
                                  env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                  stderr=subprocess.PIPE, text=True) for rank in range(2)]
    errors = [process.communicate(timeout=600)[1] for process in processes]
    return [process.returncode for process in processes], errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="how many two-process runs")
    args = parser.parse_args()
    from nerfkit.data.demo import write_demo_scene

    with tempfile.TemporaryDirectory() as tmp:
        scene = write_demo_scene(Path(tmp) / "tiny-demo", size=32, n_train=12, n_test=3, n_val=2, mesh_resolution=48)
        failed, started = 0, time.perf_counter()
        for index in range(args.runs):
            codes, errors = run_pair(scene, Path(tmp) / f"run{index}")
            if codes != [0, 0]:
                failed += 1
                tails = " | ".join(text.strip().splitlines()[0][:120] if text.strip() else "" for text in errors)
                print(f"run {index}: exit codes {codes}: {tails}", flush=True)
        seconds = time.perf_counter() - started
    print(f"\n{platform.node()}, torch {torch.__version__}: {args.runs - failed} of {args.runs} two-process runs "
          f"ended cleanly, {failed} failed ({seconds / args.runs:.1f} s per run)")


if __name__ == "__main__":
    main()

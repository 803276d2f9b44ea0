"""How often a two-process CPU run ends cleanly: the equivalence run of tests/runs/test_distributed.py
(ngp, then splat, 10 steps each, two gloo processes on the built-in 32 px demo scene) repeated
``--runs`` times; prints each failed run's exit codes and the first line of each process's stderr,
then the count.

A process that trained fine but aborted on its way out (exit code -6, "terminate called without an
active exception" from a gloo worker thread during the interpreter's exit) counts as a failure.

    python bench/distributed_exit.py --runs 100
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runs"))   # the test's worker

from distributed_worker import run_workers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="how many two-process runs")
    args = parser.parse_args()
    from nerfkit.data.demo import write_demo_scene

    with tempfile.TemporaryDirectory() as tmp:
        scene = write_demo_scene(Path(tmp) / "tiny-demo", size=32, n_train=12, n_test=3, n_val=2, mesh_resolution=48)
        failed, started = 0, time.perf_counter()
        for index in range(args.runs):
            folder = Path(tmp) / f"run{index}"
            codes, errors = run_workers(scene, folder / "runs", folder / "result.pt")
            if codes != [0, 0]:
                failed += 1
                firsts = " | ".join(text.strip().splitlines()[0][:120] if text.strip() else "" for text in errors)
                print(f"run {index}: exit codes {codes}: {firsts}", flush=True)
        seconds = time.perf_counter() - started
    print(f"\n{platform.node()}, torch {torch.__version__}: {args.runs - failed} of {args.runs} two-process runs "
          f"ended cleanly, {failed} failed ({seconds / args.runs:.1f} s per run)")


if __name__ == "__main__":
    main()

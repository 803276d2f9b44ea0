"""Test PSNR of a run on N processes against one process for the same number of steps (issue 19).

    python bench/compare_nproc.py ../shared/scenes/object-a --method splat --nproc 2 --max-time 300
    python bench/compare_nproc.py ../shared/scenes/object-a --method ngp --nproc 2 --max-steps 600

Runs ``nerfkit train SCENE --method M --nproc N --max-time T`` and then ``nerfkit train SCENE --method M
--max-steps S`` with S the steps the first run made (or both with ``--max-steps S``), each into its
own run folder under ``--output-dir``, and prints both runs' test PSNR / SSIM, steps and time, and
whether they are within ``--tolerance`` dB. A ray method trains on the same global batch either way;
splat renders N images per step on N processes and one on one process (``--same-batch`` gives the
single process N images per step too: ``--set images_per_step=N``). With ``--max-time`` the
learning-rate schedule of the first run follows time and that of the second steps (progress is
whichever is further), so only ``--max-steps`` compares like with like.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def train(scene: str, method: str, output: Path, *extra: str) -> dict:
    """One ``nerfkit train`` run into ``output``; its metrics.json."""
    before = set(output.glob(f"*/{method}/*/metrics.json"))
    command = [sys.executable, "-m", "nerfkit", "train", scene, "--method", method, "--output-dir", str(output),
               "--no-viewer", "--no-progress", *extra]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    (metrics,) = set(output.glob(f"*/{method}/*/metrics.json")) - before
    return {**json.loads(metrics.read_text()), "run": str(metrics.parent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene")
    parser.add_argument("--method", default="splat")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--max-time", type=float, default=300.0)
    parser.add_argument("--max-steps", type=int, default=0, help="both runs by steps instead")
    parser.add_argument("--output-dir", default="/tmp/nerfkit-nproc")
    parser.add_argument("--tolerance", type=float, default=0.5, help="dB")
    parser.add_argument("--same-batch", action="store_true", help="one process gets N images per step (splat)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    output = Path(args.output_dir)
    settings = [item for pair in (("--set", item) for item in args.set) for item in pair]
    limit = ["--max-steps", str(args.max_steps)] if args.max_steps else ["--max-time", str(args.max_time)]
    many = train(args.scene, args.method, output, "--nproc", str(args.nproc), *limit, *settings)
    batch = ["--set", f"images_per_step={args.nproc}"] if args.same_batch else []
    one = train(args.scene, args.method, output, "--max-steps", str(many["steps"]), *settings, *batch)
    print("| processes | steps | train s | test PSNR | test SSIM | run |")
    print("|---:|---:|---:|---:|---:|---|")
    for count, metrics in ((args.nproc, many), (1, one)):
        print(f"| {count} | {metrics['steps']} | {metrics['train_seconds']:.0f} | {metrics['psnr']:.2f} "
              f"| {metrics['ssim']:.4f} | {metrics['run']} |")
    difference = many["psnr"] - one["psnr"]
    verdict = "within" if abs(difference) <= args.tolerance else "NOT within"
    print(f"PSNR difference {difference:+.2f} dB: {verdict} {args.tolerance} dB")
    sys.exit(0 if abs(difference) <= args.tolerance else 1)


if __name__ == "__main__":
    main()

"""Where a training step's time goes: torch.profiler over a few steps, top operators by self CPU time.

    python bench/profile_step.py ../shared/scenes/object-a --method ngp
    NERFKIT_NATIVE=0 python bench/profile_step.py ../shared/scenes/object-a --method ngp   # the twins

Trains ``--warmup`` steps first (occupancy grid, densification and torch.compile settle), then
profiles ``--steps`` steps and prints the mean step time and a markdown table of the operators
with the most self CPU time (native kernels appear under their extension's function names, e.g.
``nerfkit_cpu::hash_encode_bwd`` shows as the autograd Function that calls it).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from nerfkit.methods.registry import method_spec
from nerfkit.ops._flags import native_enabled
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.runs.session import start_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene")
    parser.add_argument("--method", default="ngp")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--output-dir", default="/tmp/nerfkit-profile")
    args = parser.parse_args()
    train = TrainConfig(scene=args.scene, method=args.method, output_dir=args.output_dir, max_time=0.0,
                        max_steps=10 ** 9, checkpoint_seconds=1e9, checkpoint_every=10 ** 9)
    trainer = start_run(RunConfig(train, method_spec(args.method).config()), log=lambda line: None)
    for _ in range(args.warmup):
        trainer.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.step()
        seconds = (time.perf_counter() - start) / args.steps
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    print(f"{args.method} on {trainer.scene.name}: native kernels {'on' if native_enabled('cpu') else 'off'}, "
          f"{torch.get_num_threads()} threads, {seconds:.3f} s per step (profiled, steps "
          f"{args.warmup + 1}-{args.warmup + args.steps})\n")
    print("| operator | calls / step | self CPU ms / step | share |")
    print("|---|---:|---:|---:|")
    for event in events[:args.top]:
        print(f"| `{event.key}` | {event.count / args.steps:.0f} | "
              f"{event.self_cpu_time_total / 1e3 / args.steps:.1f} | {100 * event.self_cpu_time_total / total:.0f} % |")


if __name__ == "__main__":
    main()

"""End-to-end training benchmark: test PSNR after given seconds (or steps) of training.

One run per scene and method; at each mark the full test split is rendered and scored (evaluation
time is not training time). Prints a markdown table with steps/s, rays (pixels)/s, the Gaussian
count (splat) and peak GPU memory.

    python bench/bench_train.py ../shared/scenes/object-a --method ngp --times 30,60,120,300
    python bench/bench_train.py ../shared/scenes/object-a --method splat --times 60,300,600
    python bench/bench_train.py ../shared/scenes/dtu-scan65 --method splat --steps 7000,30000   # GPU
    python bench/bench_train.py ../shared/scenes/dtu-scan65 --downscale 4 --masks alpha --times 600 --renders /tmp/r
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from nerfkit.core.settings import apply_overrides
from nerfkit.methods.registry import method_spec
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.runs.evaluate import evaluate_split
from nerfkit.runs.session import start_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene")
    parser.add_argument("--method", default="ngp", help="ngp | splat")
    parser.add_argument("--times", default="", help="seconds of training at which to score, e.g. 60,300,600")
    parser.add_argument("--steps", default="", help="or: steps at which to score, e.g. 7000,30000")
    parser.add_argument("--output-dir", default="/tmp/nerfkit-bench")
    parser.add_argument("--downscale", type=float, default=1.0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--masks", default="auto", help="the scene's masks: auto | off | ignore | alpha")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method setting")
    parser.add_argument("--renders", default="", help="write the last mark's held-out renders and photos "
                        "(<name>.png, <name>_gt.png) into this folder")
    parser.add_argument("--subset", default="", help="also print the mean over these test-split positions, e.g. "
                        "0,5,10,15,20 (the views a peer was scored on: bench/peer_nerfacto_eval.py)")
    args = parser.parse_args()
    subset = [int(i) for i in args.subset.split(",")] if args.subset else []
    by_steps = bool(args.steps)
    marks = sorted(float(t) for t in (args.steps or args.times or "30,60,120,300").split(","))
    method = apply_overrides(method_spec(args.method).config(), dict(item.split("=", 1) for item in args.set),
                             "--set")
    train = TrainConfig(scene=args.scene, method=args.method, output_dir=args.output_dir,
                        max_time=0.0 if by_steps else marks[-1], max_steps=int(marks[-1]) if by_steps else 10 ** 9,
                        downscale=args.downscale, masks=args.masks, checkpoint_seconds=1e9, device=args.device,
                        checkpoint_every=10 ** 9)
    trainer = start_run(RunConfig(train, method), log=lambda line: None)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(f"scene {trainer.scene.name}, method {args.method}: {len(trainer.scene.split('train'))} train / "
          f"{len(trainer.scene.split('test'))} test images, {torch.get_num_threads()} threads, {device}")
    rows = []
    for mark in marks:
        while (trainer.stats.step if by_steps else trainer.stats.train_seconds) < mark:
            trainer.step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out_dir = Path(args.renders) if args.renders and mark == marks[-1] else None
        result = evaluate_split(trainer.method, trainer.scene, "test", "white", out_dir=out_dir)
        stats = trainer.stats
        if subset:
            chosen = [result["images"][i] for i in subset]          # positions in the test split
            print(f"at {stats.train_seconds:.0f} s, test views {args.subset}: PSNR "
                  f"{sum(i['psnr'] for i in chosen) / len(chosen):.2f} dB, SSIM "
                  f"{sum(i['ssim'] for i in chosen) / len(chosen):.4f}", flush=True)
        rows.append((stats.step, stats.train_seconds, stats.step / stats.train_seconds,
                     stats.rays_seen / stats.train_seconds, stats.extra.get("gaussians", "-"), result["psnr"],
                     result["ssim"], time.perf_counter() - start, _peak_memory_gib()))
    print("| train s | steps | steps/s | rays/s | Gaussians | test PSNR | test SSIM | eval s | peak GPU GiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for step, seconds, steps_s, rays_s, gaussians, psnr, ssim, eval_s, memory in rows:
        count = f"{gaussians:,}" if isinstance(gaussians, int) else gaussians
        print(f"| {seconds:.0f} | {step} | {steps_s:.2f} | {rays_s:,.0f} | {count} | {psnr:.2f} | {ssim:.4f} "
              f"| {eval_s:.0f} | {memory} |")
    trainer.save()   # a checkpoint, so the run opens in bench_viewer.py --run / nerfkit eval
    print(f"run folder: {trainer.run_dir}")


def _peak_memory_gib() -> str:
    if not torch.cuda.is_available():
        return "-"
    return f"{torch.cuda.max_memory_allocated() / 2 ** 30:.2f}"


if __name__ == "__main__":
    main()

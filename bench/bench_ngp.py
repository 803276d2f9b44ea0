"""End-to-end ngp benchmark: test PSNR after given seconds of training, steps/s, rays/s, peak memory.

One run per scene; at each checkpoint time the full test split is rendered and scored (evaluation
time is not training time). Prints a markdown table.

    python bench/bench_ngp.py ../shared/scenes/object-a --times 30,60,120,300
    python bench/bench_ngp.py ../shared/scenes/dtu-scan65 --times 15,60,300   # on a GPU
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from nerfkit.config import NGPConfig, RunConfig, TrainConfig
from nerfkit.evaluate import evaluate_split
from nerfkit.pipeline import start_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene")
    parser.add_argument("--times", default="30,60,120,300", help="seconds of training at which to score")
    parser.add_argument("--output-dir", default="/tmp/nerfkit-bench")
    parser.add_argument("--downscale", type=float, default=1.0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args()
    times = sorted(float(t) for t in args.times.split(","))
    config = RunConfig(TrainConfig(scene=args.scene, output_dir=args.output_dir, max_time=times[-1],
                                   downscale=args.downscale, checkpoint_seconds=1e9, device=args.device,
                                   checkpoint_every=10 ** 9), NGPConfig())
    trainer = start_run(config, log=lambda line: None)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(f"scene {trainer.scene.name}: {len(trainer.scene.split('train'))} train / "
          f"{len(trainer.scene.split('test'))} test images, {torch.get_num_threads()} threads, {device}")
    rows = []
    for target in times:
        while trainer.stats.train_seconds < target:
            trainer.step()
        start = time.perf_counter()
        result = evaluate_split(trainer.method, trainer.scene, "test", "white")
        stats = trainer.stats
        rows.append((target, stats.step, stats.train_seconds, stats.step / stats.train_seconds,
                     stats.rays_seen / stats.train_seconds, result["psnr"], result["ssim"],
                     time.perf_counter() - start, _peak_memory_gib()))
    print("| train s | steps | steps/s | rays/s | test PSNR | test SSIM | eval s | peak GPU GiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for target, step, seconds, steps_s, rays_s, psnr, ssim, eval_s, memory in rows:
        print(f"| {seconds:.0f} | {step} | {steps_s:.2f} | {rays_s:,.0f} | {psnr:.2f} | {ssim:.4f} "
              f"| {eval_s:.0f} | {memory} |")
    print(f"run folder: {trainer.run_dir}")


def _peak_memory_gib() -> str:
    if not torch.cuda.is_available():
        return "-"
    return f"{torch.cuda.max_memory_allocated() / 2 ** 30:.2f}"


if __name__ == "__main__":
    main()

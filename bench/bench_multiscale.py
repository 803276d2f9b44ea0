"""Multiscale benchmark (Mip-NeRF's multiscale Blender protocol): methods trained for the same time on
full-resolution images, then scored at full, 1/2 and 1/4 resolution against the area-downsampled
ground truth (``evaluate_split(scale=f)``, as ``nerfkit eval --scales 1,2,4``).

Runs train one after the other (keep the machine quiet); each run is ``METHOD`` or
``METHOD:PRESET`` (a preset of configs/, e.g. ``mipnerf:mipnerf-hash``), with ``--set`` overrides
for every run of that method.

    python bench/bench_multiscale.py ../shared/scenes/object-a --runs ngp,mipnerf:mipnerf-hash,mipnerf \
        --seconds 300 --scales 1,2,4
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from nerfkit.core.settings import apply_overrides
from nerfkit.methods.registry import method_spec
from nerfkit.runs.config import RunConfig, TrainConfig, load_preset
from nerfkit.runs.evaluate import evaluate_split
from nerfkit.runs.session import start_run


def run_config(spec: str, args: argparse.Namespace) -> RunConfig:
    """``METHOD`` or ``METHOD:PRESET`` -> the run's config (preset, then ``--set`` for that method)."""
    method, _, preset = spec.partition(":")
    values = load_preset(preset) if preset else {"train": {}, "method": {}}
    overrides = {}
    for item in args.set:                       # METHOD.KEY=VALUE
        name, _, value = item.partition("=")
        owner, _, key = name.partition(".")
        if owner == method:
            overrides[key] = value
    train = TrainConfig(scene=args.scene, method=method, output_dir=args.output_dir, max_time=args.seconds,
                        max_steps=10 ** 9, downscale=args.downscale, checkpoint_seconds=1e9,
                        checkpoint_every=10 ** 9, device=args.device,
                        scene_kind=values["train"].get("scene_kind", "auto"))
    config = apply_overrides(method_spec(method).config(), values["method"], preset or method)
    return RunConfig(train, apply_overrides(config, overrides, "--set"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene")
    parser.add_argument("--runs", default="ngp,mipnerf:mipnerf-hash", help="comma list of METHOD[:PRESET]")
    parser.add_argument("--seconds", type=float, default=300.0, help="training time of every run")
    parser.add_argument("--scales", default="1,2,4")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N test images (0 = all)")
    parser.add_argument("--output-dir", default="/tmp/nerfkit-bench-multiscale")
    parser.add_argument("--downscale", type=float, default=1.0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="method setting for the runs of METHOD, e.g. mipnerf.rays_per_batch=2048")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(f"scene {args.scene}: {args.seconds:.0f} s of training per run, {torch.get_num_threads()} threads, "
          f"{device}")
    header = " | ".join(f"PSNR x{s}" for s in scales) + " | " + " | ".join(f"SSIM x{s}" for s in scales)
    rows = []
    for spec in args.runs.split(","):
        trainer = start_run(run_config(spec, args), log=lambda line: None)
        while not trainer.done():
            trainer.step()
        trainer.save()                          # the run can be evaluated again (nerfkit eval --scales)
        stats = trainer.stats
        results, start = [], time.perf_counter()
        for scale in scales:
            results.append(evaluate_split(trainer.method, trainer.scene, "test", "white", limit=args.limit,
                                          scale=scale))
        psnrs = " | ".join(f"{r['psnr']:.2f}" for r in results)
        ssims = " | ".join(f"{r['ssim']:.4f}" for r in results)
        rows.append(f"| {spec} | {stats.step} | {stats.rays_seen / stats.train_seconds:,.0f} | {psnrs} | {ssims} "
                    f"| {time.perf_counter() - start:.0f} |")
        print(rows[-1], f"(run folder {trainer.run_dir})", flush=True)
    print(f"\n| run | steps | rays/s | {header} | eval s |")
    print("|" + "---|" * (4 + 2 * len(scales)))
    print("\n".join(rows))


if __name__ == "__main__":
    main()

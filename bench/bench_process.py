"""`nerfkit process` benchmark: registration, pose accuracy against ground truth, stage times.

Processes a folder of photos, aligns the estimated cameras to the true ones (similarity, Umeyama)
and prints registration and pose errors; optionally trains on the result and reports held-out PSNR.

    python bench/bench_process.py ../shared/scenes/room-a/images ../shared/scenes/room-a/gt/transforms.json \\
        --train-method splat --train-seconds 300
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from nerfkit.data.load import load_scene
from nerfkit.ingest.pose_eval import align_poses, match_by_stem, pose_errors, read_true_poses
from nerfkit.ingest.process import ProcessOptions, process
from nerfkit.methods.registry import method_spec
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.runs.session import start_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images")
    parser.add_argument("truth", help="transforms.json with the true (OpenGL) camera-to-world poses")
    parser.add_argument("--output", default="/tmp/nerfkit-bench/processed")
    parser.add_argument("--matcher", default="auto")
    parser.add_argument("--train-method", default="", help="ngp | splat: also train on the result")
    parser.add_argument("--train-seconds", type=float, default=300.0)
    args = parser.parse_args()
    out = Path(args.output)
    shutil.rmtree(out, ignore_errors=True)
    report = process(Path(args.images), out, ProcessOptions(matcher=args.matcher), log=lambda line: None)

    scene = load_scene(out, 1.0, 8, None)
    truth = read_true_poses(Path(args.truth))
    match = match_by_stem([Path(p).name for p in scene.image_paths], truth)
    estimated = (torch.linalg.inv(scene.world_to_scene.double()) @ scene.cameras.c2w.double())[match.indices]
    true = match.c2w
    errors = pose_errors(estimated, true, align_poses(estimated, true))
    print("| images | registered | 3D points | reproj. error px | median rot. error deg | max rot. error deg "
          "| median pos. error (% of size) | " + " | ".join(f"{k} s" for k in report.seconds) + " |")
    print("|" + "---:|" * (7 + len(report.seconds)))
    print(f"| {report.images} | {report.registered} ({100 * report.registered_fraction:.1f}%) | {report.points3d:,} "
          f"| {report.mean_reprojection_error:.3f} | {errors['median_rotation_deg']:.3f} "
          f"| {errors['max_rotation_deg']:.3f} | {100 * errors['median_position_relative']:.3f} | "
          + " | ".join(f"{s:.1f}" for s in report.seconds.values()) + " |")
    print(f"scene size (true units): {errors['scene_size']:.3f}; not registered: {report.failed or 'none'}")
    if args.train_method:
        config = RunConfig(TrainConfig(scene=str(out), method=args.train_method, max_time=args.train_seconds,
                                       output_dir="/tmp/nerfkit-bench/outputs"),
                           method_spec(args.train_method).config())
        trainer = start_run(config, log=lambda line: None)
        metrics = trainer.train(progress_bar=False)
        print(f"{args.train_method} on the processed scene, {args.train_seconds:.0f} s: {metrics['steps']} steps, "
              f"held-out PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} on {metrics['test_images']} images "
              f"(every 8th)")


if __name__ == "__main__":
    main()

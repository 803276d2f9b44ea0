"""Surface benchmark: one training run per method, scored at several training times on held-out
views (PSNR) and by its exported mesh against a ground-truth mesh (Chamfer, F-scores).

At each mark the run is paused (evaluation and export are not training time): the test split is
rendered and scored, the mesh is exported with ``nerfkit export mesh``'s defaults (marching cubes on
the SDF for neus, TSDF fusion of rendered depth otherwise) and compared with the truth, both sampled
uniformly by area: accuracy (mesh -> truth), completeness (truth -> mesh), Chamfer (their mean, also
in % of the truth's bounding-box diagonal) and F-scores at 0.5 % and 1 % of the diagonal.

    python bench/bench_surface.py ../shared/scenes/object-a --method neus --minutes 5,10,20
    python bench/bench_surface.py ../shared/scenes/object-a --method splat --minutes 5,10,20 \\
        --set depth_normal_weight=0.05 --set depth_distortion_weight=100
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from nerfkit.core.settings import apply_overrides
from nerfkit.export.mesh import MeshOptions, export_mesh
from nerfkit.export.mesh_io import read_mesh
from nerfkit.export.tsdf import chamfer_distance, f_score, sample_surface
from nerfkit.methods.registry import method_spec
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.runs.evaluate import evaluate_split
from nerfkit.runs.session import start_run

SAMPLES = 200_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene")
    parser.add_argument("--method", default="neus")
    parser.add_argument("--minutes", default="5,10,20", help="training minutes at which to score")
    parser.add_argument("--gt", default=None, help="ground-truth mesh (default: SCENE/gt_mesh.ply)")
    parser.add_argument("--resolution", type=int, default=256, help="mesh export resolution")
    parser.add_argument("--test-limit", type=int, default=0, help="score only this many test images (0: all)")
    parser.add_argument("--output-dir", default="/tmp/nerfkit-bench-surface")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method setting")
    args = parser.parse_args()
    marks = sorted(float(m) * 60.0 for m in args.minutes.split(","))
    truth = read_mesh(Path(args.gt) if args.gt else Path(args.scene) / "gt_mesh.ply")
    diagonal = float(np.linalg.norm(truth["vertices"].max(0) - truth["vertices"].min(0)))
    truth_points = sample_surface(truth["vertices"], truth["faces"], SAMPLES, np.random.default_rng(0))
    method = apply_overrides(method_spec(args.method).config(), dict(item.split("=", 1) for item in args.set),
                             "--set")
    train = TrainConfig(scene=args.scene, method=args.method, output_dir=args.output_dir, max_time=marks[-1],
                        max_steps=10 ** 9, checkpoint_seconds=1e9, checkpoint_every=10 ** 9)
    trainer = start_run(RunConfig(train, method))
    print(f"scene {trainer.scene.name}, method {args.method} {' '.join(args.set)}: "
          f"{torch.get_num_threads()} threads, {platform.processor() or 'cpu'}; truth diagonal {diagonal:.4f}")
    print("| train min | steps | test PSNR | SSIM | eval s | export s | faces | accuracy | completeness | "
          "Chamfer | % diag | F@0.5% | F@1% |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mark in marks:
        while trainer.stats.train_seconds < mark:
            trainer.step()
        clock = time.perf_counter()
        scores = evaluate_split(trainer.method, trainer.scene, "test", "white", limit=args.test_limit)
        eval_seconds = time.perf_counter() - clock
        clock = time.perf_counter()
        mesh = export_mesh(trainer.method, trainer.scene, MeshOptions(resolution=args.resolution))
        export_seconds = time.perf_counter() - clock
        mesh.write(trainer.run_dir / "exports" / f"mesh-{int(mark // 60)}min.ply")
        points = sample_surface(mesh.vertices, mesh.faces, SAMPLES, np.random.default_rng(1))
        accuracy, completeness, chamfer = chamfer_distance(points, truth_points)
        print(f"| {mark / 60:.0f} | {trainer.stats.step} | {scores['psnr']:.2f} | {scores['ssim']:.4f} | "
              f"{eval_seconds:.0f} | {export_seconds:.0f} | {len(mesh.faces):,} | {accuracy:.4f} | "
              f"{completeness:.4f} | {chamfer:.4f} | {100 * chamfer / diagonal:.2f} | "
              f"{f_score(points, truth_points, 0.005 * diagonal):.3f} | "
              f"{f_score(points, truth_points, 0.01 * diagonal):.3f} |", flush=True)
    trainer.save()
    print(f"run folder: {trainer.run_dir}")


if __name__ == "__main__":
    main()

"""Mesh export benchmark: export time and accuracy against a ground-truth mesh.

Exports a mesh from each run (``nerfkit export mesh`` in-process) and compares it with the
ground-truth surface: both are sampled uniformly by area (200k points each), then the mean
nearest-neighbour distances give accuracy (export -> truth), completeness (truth -> export), their
mean (Chamfer), and the F-score at 0.5 % and 1 % of the truth's bounding-box diagonal.

    python bench/bench_mesh.py /tmp/runs/object-a/ngp/<ts> /tmp/runs/object-a/splat/<ts> \\
        --gt ../shared/scenes/object-a/gt_mesh.ply --max-views 50
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from nerfkit.export.mesh import MeshOptions, export_mesh
from nerfkit.export.mesh_io import read_mesh
from nerfkit.export.tsdf import chamfer_distance, f_score, sample_surface
from nerfkit.runs.session import open_run

SAMPLES = 200_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--gt", required=True, help="ground-truth mesh (.ply/.obj) in world coordinates")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--max-views", type=int, default=0)
    parser.add_argument("--faces", type=int, default=0)
    parser.add_argument("--texture", action="store_true")
    parser.add_argument("--fill-holes", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--suffix", default=".ply", help=".ply or .obj")
    args = parser.parse_args()

    truth = read_mesh(Path(args.gt))
    diagonal = float(np.linalg.norm(truth["vertices"].max(0) - truth["vertices"].min(0)))
    rng = np.random.default_rng(0)
    truth_points = sample_surface(truth["vertices"], truth["faces"], SAMPLES, rng)
    print(f"ground truth: {args.gt}, bounding-box diagonal {diagonal:.4f}")
    print("| run | method | views | res | export s (render/sdf/fuse/mesh/texture) | faces | accuracy | "
          "completeness | Chamfer | % diag | F@0.5% | F@1% |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        options = MeshOptions(resolution=args.resolution, max_views=args.max_views, faces=args.faces,
                              texture=args.texture, fill_holes=args.fill_holes)
        output = Path(run) / "exports" / f"bench-mesh{args.suffix}"
        config, scene, method, _ = open_run(Path(run))
        start = time.perf_counter()
        result = export_mesh(method, scene, options)
        result.write(output)
        seconds = time.perf_counter() - start
        mesh = read_mesh(output)
        points = sample_surface(mesh["vertices"], mesh["faces"], SAMPLES, rng)
        accuracy, completeness, chamfer = chamfer_distance(points, truth_points)
        stages = "/".join(f"{result.timings.get(k, 0.0):.0f}" for k in ("render", "sdf", "fuse", "mesh", "texture"))
        print(f"| {Path(run).name} | {config.train.method} | {result.views} | {args.resolution} | "
              f"{seconds:.0f} ({stages}) | {len(result.faces)} | {accuracy:.4f} | {completeness:.4f} | "
              f"{chamfer:.4f} | {100 * chamfer / diagonal:.2f} | "
              f"{f_score(points, truth_points, 0.005 * diagonal):.3f} | "
              f"{f_score(points, truth_points, 0.01 * diagonal):.3f} |", flush=True)


if __name__ == "__main__":
    main()

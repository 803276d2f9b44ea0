"""Where an ngp run's ray-marching samples go: occupancy per cascade, samples marched and kept per
ray, how many carry weight, and the weight per cascade, for random rays of one training view.

    python bench/ngp_samples.py RUN [--view 0] [--rays 4096]

RUN is an ngp run folder with the occupancy sampler (``sampler: occupancy``, the default).
"""

from __future__ import annotations

import argparse

import torch

from nerfkit.data.cameras import generate_rays, image_pixels
from nerfkit.ops import render_weights
from nerfkit.runs.session import open_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--view", type=int, default=0, help="index into the training split")
    parser.add_argument("--rays", type=int, default=4096)
    args = parser.parse_args()
    torch.manual_seed(0)
    opened = open_run(args.run)
    method, scene = opened.method, opened.scene
    if getattr(method, "sampler", "occupancy") != "occupancy":
        raise SystemExit(f"{args.run}: not an occupancy-grid ngp run (sampler: {method.sampler})")
    grid = method.grid
    camera = scene.cameras[scene.split("train")[args.view]]
    width, height = (int(v) for v in camera.sizes[0])
    pixels = image_pixels(width, height)[torch.randperm(width * height)[:args.rays]]
    origins, directions = generate_rays(camera, torch.zeros(pixels.shape[0], dtype=torch.int64), pixels)
    n = origins.shape[0]
    with torch.no_grad():
        rays, starts, ends = grid.sample(origins, directions, method.config.near, method.step_size,
                                         method.cone_angle, method.config.occupancy.max_samples_per_ray)
        points = origins[rays] + directions[rays] * ((starts + ends) * 0.5).unsqueeze(-1)
        sigmas = method.field.density(points)
        weights, transmittance = render_weights(sigmas, starts, ends, rays, n)
    kept = transmittance >= method.config.occupancy.early_stop_eps
    centre, half = (grid.aabb[0] + grid.aabb[1]) / 2, (grid.aabb[1] - grid.aabb[0]) / 2
    cascade = ((points - centre).abs() / half).amax(-1).clamp(min=1.0).log2().ceil()
    print(f"run {args.run}, step {opened.step}, training view {args.view}, {n} rays")
    print(f"marched {rays.numel() / n:.1f} samples/ray, kept {int(kept.sum()) / n:.1f} "
          f"(transmittance >= {method.config.occupancy.early_stop_eps:g}), weight > 0.01: "
          f"{int((weights > 0.01).sum()) / n:.1f}, weight > 0.001: {int((weights > 0.001).sum()) / n:.1f}")
    print("| cascade | occupied | kept samples/ray | weight/ray |")
    print("|---:|---:|---:|---:|")
    for c in range(grid.cascades):
        inside = kept & (cascade == c)
        print(f"| {c} | {float(grid.binary[c].float().mean()):.1%} | {int(inside.sum()) / n:.1f} | "
              f"{float(weights[inside].sum()) / n:.3f} |")


if __name__ == "__main__":
    main()

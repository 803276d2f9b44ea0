"""Splat export formats: file size and the test-view PSNR of each format read back and re-rendered.

Each format is written from the run's Gaussians in world coordinates (as ``nerfkit export splat``
writes it), read back by nerfkit's reader, placed with the scene's cameras
(:func:`nerfkit.export.splat_scene.load_splat_scene`) and rendered at every test view: PSNR
against the ground truth and against the run's own render (the loss the format causes). The
issue's bound: the compressed .ply loses <= 0.5 dB.

    python bench/bench_splat_export.py outputs/object-a/splat/<ts>/
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nerfkit.data.sampler import background_color
from nerfkit.export.gaussians import export_splat
from nerfkit.export.splat_scene import load_splat_scene
from nerfkit.image.metrics import psnr
from nerfkit.methods.base import inference
from nerfkit.runs.evaluate import ground_truth
from nerfkit.runs.session import open_run

FORMATS = [("standard .ply", "splat.ply", "standard"), ("compressed .ply", "splat.compressed.ply", "compressed"),
           (".spz", "splat.spz", "standard"), (".splat", "splat.splat", "standard")]


def test_renders(method, scene, background) -> list[torch.Tensor]:
    with inference(method):
        return [method.render(scene.cameras[i], background)["rgb"].clamp(0, 1) for i in scene.split("test")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a splat run folder (or a parent: its newest run)")
    parser.add_argument("--background", default="white")
    args = parser.parse_args()

    config, scene, method, step = open_run(Path(args.run))
    background = background_color(args.background, 1)[0]
    truth = [ground_truth(scene, i, background) for i in scene.split("test")]
    original = test_renders(method, scene, background)
    base = sum(psnr(r, t) for r, t in zip(original, truth)) / len(truth)
    exported = export_splat(method, scene)
    print(f"scene {scene.name}, splat run at step {step}: {exported.count:,} Gaussians, SH degree "
          f"{exported.sh_degree}; {len(truth)} test views, run PSNR {base:.2f} dB\n")
    print("| format | file size | write s | test PSNR (dB) | change | PSNR vs the run's render (dB) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for label, name, ply_format in FORMATS:
            path = Path(folder) / name
            started = time.perf_counter()
            exported.write(path, ply_format)
            seconds = time.perf_counter() - started
            loaded, _, _ = load_splat_scene(path, scene, next(method.parameters()).device)
            renders = test_renders(loaded, scene, background)
            score = sum(psnr(r, t) for r, t in zip(renders, truth)) / len(truth)
            fidelity = sum(psnr(r, o) for r, o in zip(renders, original)) / len(truth)
            print(f"| {label} | {path.stat().st_size / 2**20:.1f} MiB | {seconds:.1f} | {score:.2f} | "
                  f"{score - base:+.2f} | {fidelity:.1f} |")


if __name__ == "__main__":
    main()

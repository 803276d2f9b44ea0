"""Settings and arguments for quick end-to-end training runs in tests."""

from __future__ import annotations

from pathlib import Path

# Tiny, fast training settings for tests that train end to end: small tables, coarse grid, few
# samples per step. About 0.05 s per step on 2 CPU cores.
TINY_NGP = ["log2_table_size=14", "max_resolution=64", "n_levels=8", "grid_resolution=32",
            "steps_per_diagonal=128", "target_samples=16384", "initial_rays=1024",
            "grid_warmup_steps=64", "render_chunk=4096", "lr_warmup_steps=20"]

# Tiny mipnerf: the hash backbone (Zip-NeRF-style) with few frusta per ray; ~0.1 s per step.
TINY_MIP = ["backbone=hash", "log2_table_size=14", "max_resolution=64", "n_levels=8", "coarse_samples=24",
            "fine_samples=24", "proposal_samples=24", "nerf_samples=16", "proposal_max_resolution=32",
            "rays_per_batch=1024", "lr_warmup_steps=20", "render_chunk=2048"]


# Tiny neus: small grid, a coarse occupancy grid and few samples; ~0.1 s per step.
TINY_NEUS = ["log2_table_size=14", "max_resolution=64", "n_levels=8", "grid_resolution=32",
             "steps_per_diagonal=128", "target_samples=8192", "variance_lr=0.01", "eikonal_weight=0.02",
             "render_chunk=2048",
             "lr_warmup_steps=20"]

# Tiny splat, for 32 px images: densify every 20 steps from step 40 to 100, SH degree up every
# 30 steps; a higher growth threshold than 3DGS's (its 0.0002 is tuned for 800 px images and grows
# this scene to ~13k Gaussians). About 0.07 s per step on 2 cores.
TINY_SPLAT = ["init_points=500", "sh_degree_interval=30", "refine_start=20", "refine_every=20",
              "refine_stop=120", "reset_every=-1", "grad_threshold=0.0005"]


def _method_args(method: str, settings: list[str], scene, output_dir, extra: tuple[str, ...], threads: int) -> list[str]:
    """`nerfkit train --method METHOD` arguments with ``settings`` as ``--set`` items, then ``extra``."""
    args = ["train", str(scene), "--method", method, "--output-dir", str(output_dir), "--no-progress",
            "--threads", str(threads), "--no-viewer"]
    for item in settings:
        args += ["--set", item]
    return args + list(extra)


def tiny_splat_args(scene, output_dir, *extra: str, threads: int = 2) -> list[str]:
    """`nerfkit train --method splat` arguments for a quick run of the tiny splat settings."""
    return _method_args("splat", TINY_SPLAT, scene, output_dir, extra, threads)


def tiny_neus_args(scene, output_dir, *extra: str, threads: int = 2) -> list[str]:
    """`nerfkit train --method neus` arguments for a quick run of the tiny neus settings."""
    return _method_args("neus", TINY_NEUS, scene, output_dir, extra, threads)


def tiny_mip_args(scene, output_dir, *extra: str, threads: int = 2) -> list[str]:
    """`nerfkit train --method mipnerf` arguments for a quick run of the tiny mipnerf settings."""
    return _method_args("mipnerf", TINY_MIP, scene, output_dir, extra, threads)


def tiny_train_args(scene, output_dir, *extra: str, threads: int = 2, viewer: bool = False) -> list[str]:
    """`nerfkit train` arguments for a quick run of the tiny settings (the viewer off unless asked;
    one thread is faster than two where the 2 cores are shared with a browser or a subprocess)."""
    args = ["train", str(scene), "--output-dir", str(output_dir), "--no-progress", "--threads", str(threads),
            "--viewer" if viewer else "--no-viewer"]
    for item in TINY_NGP:
        args += ["--set", item]
    return args + list(extra)


def train_tiny_ngp_once(scene, output: Path, steps: int) -> Path:
    """Train one tiny ngp run (one thread, eager twins) for a module-scoped fixture; its run folder.

    One thread: on the shared 2-core machines two threads are ~2.5x slower under load. The eager
    setting is set here because the suite's autouse fixture is function-scoped.
    """
    import pytest

    from nerfkit.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NERFKIT_COMPILE", "0")
        assert main(tiny_train_args(scene, output, "--max-steps", str(steps), "--eval-every", "0",
                                    "--threads", "1")) == 0
    runs = sorted(output.glob("*/ngp/*/config.yaml"))
    assert len(runs) == 1, runs
    return runs[0].parent

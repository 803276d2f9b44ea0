"""Settings and arguments for quick end-to-end training runs in tests."""

from __future__ import annotations

# Tiny, fast training settings for tests that train end to end: small tables, coarse grid, few
# samples per step. About 0.05 s per step on 2 CPU cores.
TINY_NGP = ["log2_table_size=14", "max_resolution=64", "n_levels=8", "grid_resolution=32",
            "steps_per_diagonal=128", "target_samples=16384", "initial_rays=1024",
            "grid_warmup_steps=64", "render_chunk=4096", "lr_warmup_steps=20"]


def tiny_train_args(scene, output_dir, *extra: str, threads: int = 2, viewer: bool = False) -> list[str]:
    """`nerfkit train` arguments for a quick run of the tiny settings (the viewer off unless asked;
    one thread is faster than two where the 2 cores are shared with a browser or a subprocess)."""
    args = ["train", str(scene), "--output-dir", str(output_dir), "--no-progress", "--threads", str(threads),
            "--viewer" if viewer else "--no-viewer"]
    for item in TINY_NGP:
        args += ["--set", item]
    return args + list(extra)

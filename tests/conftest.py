"""Suite-wide fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _eager_twins(monkeypatch):
    """Keep the CPU twins eager (torch.compile off); the one compile-parity test turns it back on."""
    monkeypatch.setenv("NERFKIT_COMPILE", "0")


# Tiny, fast training settings for tests that train end to end: small tables, coarse grid, few
# samples per step. About 0.05 s per step on 2 CPU cores.
TINY_NGP = ["log2_table_size=14", "max_resolution=64", "n_levels=8", "grid_resolution=32",
            "steps_per_diagonal=128", "target_samples=16384", "initial_rays=1024",
            "grid_warmup_steps=64", "render_chunk=4096", "lr_warmup_steps=20"]


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A 32 px demo scene in NeRF-synthetic layout (12 train, 2 val, 3 test images)."""
    from nerfkit.data.demo import write_demo_scene

    return write_demo_scene(tmp_path_factory.mktemp("demo") / "tiny-demo", size=32, n_train=12,
                            n_test=3, n_val=2, mesh_resolution=48)


def tiny_train_args(scene, output_dir, *extra: str) -> list[str]:
    """`nerfkit train` arguments for a quick run of the tiny settings."""
    args = ["train", str(scene), "--output-dir", str(output_dir), "--no-progress", "--threads", "2"]
    for item in TINY_NGP:
        args += ["--set", item]
    return args + list(extra)

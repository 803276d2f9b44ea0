"""The equivalence runs of test_distributed.py: tiny ngp and splat settings, a few steps of each,
as one process of several (``python distributed_worker.py SCENE OUTPUT RESULT`` with torchrun's
variables set) or in the test's own process (:func:`train_steps` without processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tiny_run, when run as a script

from tiny_run import TINY_NGP  # noqa: E402

from nerfkit.core.settings import apply_overrides  # noqa: E402
from nerfkit.methods.ngp_config import NGPConfig  # noqa: E402
from nerfkit.methods.splat_config import SplatConfig  # noqa: E402
from nerfkit.runs.config import RunConfig, TrainConfig  # noqa: E402

STEPS = 10
# ngp: grid refreshes at steps 0 (every cell) and 4, 8 (a random sample of cells: the global RNG).
NGP = [*TINY_NGP, "grid_update_every=4", "grid_warmup_steps=2", "lr_warmup_steps=1", "initial_rays=2048"]
# splat: densification at steps 3, 6, 9 (clone/split/prune change the number of Gaussians); SH degree
# up every 4 steps; a handful of Gaussians at 32 px.
SPLAT = ["init_points=400", "refine_start=1", "refine_every=3", "refine_stop=1000", "reset_every=-1",
         "sh_degree_interval=4", "grad_threshold=0.00005", "backend=nerfkit"]


def run_config(method: str, scene: Path, output: Path, images_per_step: int | str = "auto") -> RunConfig:
    """The tiny run of ``method`` (ngp or splat) on ``scene``."""
    settings, items = (NGPConfig(), NGP) if method == "ngp" else (SplatConfig(), SPLAT)
    config = apply_overrides(settings, dict(item.split("=") for item in items), "test")
    train = TrainConfig(scene=str(scene), method=method, output_dir=str(output), max_steps=1000,
                        threads=1, device="cpu", images_per_step=images_per_step)
    return RunConfig(train, config)


def train_steps(config: RunConfig, processes=None) -> dict:
    """``STEPS`` steps of ``config`` (as one of ``processes``, or alone): the per-step MSE, the final
    parameters and buffers, and the method's adaptive numbers."""
    from nerfkit.runs.distributed import open_trainer
    from nerfkit.runs.session import start_run

    if processes is None:
        trainer = start_run(config)
    else:
        trainer = open_trainer(processes, lambda: start_run(config, None, processes))
    method = trainer.method
    initial = getattr(method, "n_gaussians", None)
    losses = [float(trainer.step()["mse"]) for _ in range(STEPS)]
    return {"losses": losses, "initial_gaussians": initial, "state": {k: v.detach().clone() for k, v in method.state_dict().items()
                                        if torch.is_tensor(v)},
            "gaussians": getattr(method, "n_gaussians", None),
            "sampler": trainer.sampler.generator.get_state(), "rng": torch.get_rng_state()}


def run_workers(scene: Path, output: Path, result: Path, nproc: int = 2) -> tuple[list[int], list[str]]:
    """``nproc`` processes of this script with torchrun's variables, as ``nerfkit train --nproc``
    starts them; wait for them: the exit code and the whole stderr of each process."""
    from nerfkit.runs.launch import rendezvous_port

    env = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(rendezvous_port({})), "NERFKIT_COMPILE": "0",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    processes = [subprocess.Popen([sys.executable, __file__, str(scene), str(output), str(result)],
                                  env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                  stderr=subprocess.PIPE, text=True) for rank in range(nproc)]
    errors = [process.communicate(timeout=600)[1] for process in processes]
    return [process.returncode for process in processes], errors


def main(scene: str, output: str, result: str) -> None:
    from nerfkit.runs.distributed import connect, disconnect, process_place

    processes = connect(process_place(), "cpu")
    try:
        torch.set_num_threads(1)
        results = {method: train_steps(run_config(method, Path(scene), Path(output)), processes)
                   for method in ("ngp", "splat")}
        if processes.is_main:
            torch.save(results, result)
    finally:
        disconnect()


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""What can go wrong inside a training step that is not a bug: NaN/inf and running out of memory.

- :func:`check_loss` and :func:`check_parameters` run in every step (the loss before
  ``backward``, the parameters right after ``optimizer.step``), so a non-finite value is caught
  in the step that made it and never reaches a checkpoint. They raise :class:`NonFinite`.
- ``on_nan`` (:class:`~nerfkit.runs.config.TrainConfig`) then decides: ``stop`` ends the run with
  one sentence naming the step, the value and the last good checkpoint; ``rollback`` reloads that
  checkpoint, reseeds the ray sampler so the same batch does not come back, and goes on (at most
  :data:`MAX_ROLLBACKS` times to the same checkpoint).
- :func:`out_of_memory_message` turns an allocator failure into a sentence naming the flags
  that reduce memory for the method.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

MAX_ROLLBACKS = 3

# Flags that reduce memory, by method (the first ones help most).
MEMORY_FLAGS = {
    "ngp": ("--downscale 2", "--set target_samples=32768", "--set max_rays=8192",
            "--set render_chunk=4096", "--set max_points_per_query=65536",
            "--set log2_table_size=15"),
    "mipnerf": ("--downscale 2", "--set rays_per_batch=512", "--set target_samples=32768",
                "--set render_chunk=1024", "--set log2_table_size=15"),
    "neus": ("--downscale 2", "--set target_samples=8192", "--set render_chunk=1024",
             "--set log2_table_size=15"),
    "splat": ("--downscale 2", "--set cap_max=300000", "--set grad_threshold=0.0004",
              "--set refine_stop=7500", "--set sh_degree=1"),
}


class NonFinite(Exception):
    """A NaN or inf appeared in training step ``step``; ``what`` says where."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"step {step}: {what}")
        self.step, self.what = step, what



def check_loss(loss: Tensor, step: int) -> None:
    """Raise :class:`NonFinite` when the (scalar) loss of ``step`` is NaN or inf."""
    if not bool(torch.isfinite(loss.detach()).all()):
        raise NonFinite(step, f"the loss is {float(loss.detach().float().sum())}")


def check_parameters(module: nn.Module, step: int) -> None:
    """Raise :class:`NonFinite` naming the first parameter holding NaN or inf.

    One fused reduction over all parameters (a single device sync); the name is looked up only
    when something is wrong.
    """
    params = [p for p in module.parameters() if p.numel()]
    if not params:
        return
    flags = torch.stack([torch.isfinite(p.detach()).all() for p in params])
    if bool(flags.all()):
        return
    for name, param in module.named_parameters():
        if param.numel() and not bool(torch.isfinite(param.detach()).all()):
            bad = int((~torch.isfinite(param.detach())).sum())
            raise NonFinite(step, f"parameter '{name}' holds {bad} NaN/inf values after the "
                                  "optimizer step")
    raise NonFinite(step, "a parameter holds NaN/inf values after the optimizer step")


def diverged_message(error: NonFinite, checkpoint: Path | None, rollbacks: int = 0) -> str:
    """The one sentence a run stopped by a NaN/inf ends with."""
    kept = (f"the last good checkpoint '{checkpoint}' is kept (resume with nerfkit train --resume)"
            if checkpoint is not None else "no checkpoint had been written yet")
    if rollbacks:
        return (f"training diverged at {error} again after {rollbacks} rollbacks; the run stopped "
                f"and {kept}; try a lower --set lr")
    return (f"training diverged at {error}; the run stopped and {kept}; try --set "
            "on_nan=rollback to reload it and go on automatically, or a lower --set lr")


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocator failures (not for other RuntimeErrors)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text
                                                or "can't allocate memory" in text)


def out_of_memory_message(method: str, device: torch.device, step: int) -> str:
    """One sentence for an allocator failure, naming the flags that reduce memory."""
    flags = ", ".join(MEMORY_FLAGS.get(method, ("--downscale 2",)))
    memory = "GPU" if device.type == "cuda" else device.type.upper()
    return (f"training ran out of {memory} memory at step {step} (method {method}); "
            f"reduce memory with {flags} (then resume with nerfkit train --resume)")

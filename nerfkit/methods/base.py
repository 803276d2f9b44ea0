"""The method contract: what the trainer, the viewer, evaluation, rendering and export may ask of a
method, and the base class with its no-op hooks.

A method is an ``nn.Module`` built from its settings and a :class:`~nerfkit.data.inputs.SceneInfo`
(never from images, so a finished run can be re-created from its folder). Per training step the
trainer calls::

    request = method.batch_request(step)                # kind, ray count, cone radii, background
    method.before_step(step, progress)
    out = method.train_step(batch, step, progress)      # {"loss": Tensor, "mse": float, "rays": int, ...}
    out["loss"].backward()
    method.after_backward(step, optimizer)              # densification, statistics
    optimizer.step()

``render(camera, background)`` returns ``{"rgb": (H, W, 3), "depth": (H, W), "alpha": (H, W)}``.
What only some methods can do is declared by the small protocols of
:mod:`nerfkit.methods.capabilities` (Gaussians, a median depth, a density or an SDF).

A run on several processes (``nerfkit train --nproc N``, torchrun) gives each process a share of
the step's batch and reduces the gradients itself; it calls ``method.distribute(across)`` once, and a
method combines the numbers it keeps across steps from its own share (ngp's sample count, splat's
densification statistics) with ``across.sum`` / ``across.max``, so every process makes the same
decisions as a single process would on the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from nerfkit.data.cameras import Cameras, generate_rays, image_pixels
from nerfkit.data.inputs import BatchRequest, ImageBatch, RayBatch


@runtime_checkable
class Method(Protocol):
    """What every method provides."""

    name: str

    def batch_request(self, step: int) -> BatchRequest:
        """What to train on at ``step`` (kind, cone radii and background stay the same all run)."""

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups, each with its ``name`` and own ``lr`` (and ``eps``,
        ``weight_decay``, ``betas``)."""

    def lr_factor(self, step: int, progress: float) -> float | dict[str, float]:
        """Multiplier of the base learning rates at this step (progress in [0, 1]): one for every
        group, or a mapping from group name to multiplier (groups not named keep 1)."""

    def before_step(self, step: int, progress: float) -> None:
        """Work before the forward pass (e.g. occupancy-grid updates)."""

    def train_step(self, batch: RayBatch | ImageBatch, step: int, progress: float) -> dict[str, Any]:
        """Forward pass and loss; returns ``{"loss": Tensor, "mse": float, "rays": int, ...}`` (other
        int/float entries are shown as live statistics)."""

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """Work between backward and the optimizer step."""

    def render(self, camera: Cameras, background: Tensor) -> dict[str, Tensor]:
        """Render camera 0 of ``camera`` at its size on ``background`` (3,): ``rgb`` (H, W, 3),
        ``depth`` (H, W) expected distance along the ray (not divided by alpha), ``alpha`` (H, W)."""

    def distribute(self, across: CrossProcess) -> None:
        """Train as one of several processes: combine per-step statistics with ``across``."""


class CrossProcess(Protocol):
    """How per-step numbers are combined over the processes of one training run.

    Both reduce a tensor in place over all processes (every process gets the result) and return it.
    """

    def sum(self, tensor: Tensor) -> Tensor:
        ...

    def max(self, tensor: Tensor) -> Tensor:
        ...


class OneProcess:
    """:class:`CrossProcess` of a single-process run: there is nothing to combine."""

    def sum(self, tensor: Tensor) -> Tensor:
        return tensor

    def max(self, tensor: Tensor) -> Tensor:
        return tensor


class MethodBase(nn.Module):
    """Base class of the methods: the hooks a method may leave out do nothing; ``across`` combines
    per-step statistics over processes (:class:`OneProcess` until :meth:`distribute`)."""

    name: str = ""
    across: CrossProcess = OneProcess()

    def distribute(self, across: CrossProcess) -> None:
        self.across = across

    def lr_factor(self, step: int, progress: float) -> float | dict[str, float]:
        return 1.0

    def before_step(self, step: int, progress: float) -> None:
        return None

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        return None


def linear_warmup(step: int, warmup_steps: int) -> float:
    """A learning-rate factor rising linearly from 1 / ``warmup_steps`` at step 0 to 1."""
    return min(1.0, (step + 1) / max(warmup_steps, 1))


def warmup_then_log_linear(step: int, progress: float, warmup_steps: int, final_factor: float) -> float:
    """A learning-rate factor: :func:`linear_warmup`, times a log-linear decay from 1 at the start of
    training to ``final_factor`` at its end (``progress`` in [0, 1], clamped)."""
    return linear_warmup(step, warmup_steps) * final_factor ** min(max(progress, 0.0), 1.0)


def render_in_chunks(camera: Cameras, chunk: int, device: torch.device | str,
                     shade: Callable[[Tensor, Tensor, Tensor], dict[str, Tensor]]) -> dict[str, Tensor]:
    """Render camera 0 of ``camera`` at its size, ``chunk`` rays at a time.

    Args:
        shade: ``(origins (R, 3), unit directions (R, 3) on ``device``, pixels (R, 2) on the CPU) ->
            {name: (R,) or (R, C)}``, the per-ray outputs of a method.
    Returns:
        ``{name: (H, W) or (H, W, C)}`` on the CPU.
    """
    width, height = (int(v) for v in camera.sizes[0])
    pixels = image_pixels(width, height)
    origins, directions = generate_rays(camera, torch.zeros(pixels.shape[0], dtype=torch.int64), pixels)
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, pixels.shape[0], chunk):
        rows = slice(start, start + chunk)
        out = shade(origins[rows].to(device), directions[rows].to(device), pixels[rows])
        for name, value in out.items():
            parts.setdefault(name, []).append(value.cpu())
    return {name: torch.cat(values).view(height, width, *values[0].shape[1:]) for name, values in parts.items()}


@contextlib.contextmanager
def inference(method: Any) -> Iterator[None]:
    """Render ``method`` outside training: eval mode and no gradients inside the block, the
    module's training mode restored afterwards (also when the block raises), so it may run between
    training steps."""
    was_training = bool(getattr(method, "training", False))
    if hasattr(method, "eval"):
        method.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training and hasattr(method, "train"):
            method.train()


def method_device(method: Any) -> torch.device:
    """The device of a method's parameters (the CPU for a method without any)."""
    if isinstance(method, nn.Module):
        for tensor in (*method.parameters(), *method.buffers()):
            return tensor.device
    return torch.device("cpu")

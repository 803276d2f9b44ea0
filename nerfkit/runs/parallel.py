"""One process's part of every training step, and how its results join the other processes'.

A run on N processes (``nerfkit train --nproc N``, torchrun; :mod:`nerfkit.runs.distributed` starts
them) trains on the same global batch as a single process, through ``torch.distributed``:

- **Batches.** Every process draws the whole step's batch from the same seeded sampler and keeps its
  share: rays ``[n r / N, n (r + 1) / N)`` of the ``n`` a ray method asks for (the adaptive count
  is kept the same on every process by the method, :meth:`MethodBase.distribute`), or its images
  of the ``images_per_step`` an image method trains on (``auto``: one per process).
- **Gradients.** Each process backpropagates its share's losses; :meth:`ProcessShare.combine` then
  scales its gradients by its weight (rays: its share of the rays; images: 1 / images per step,
  per image) and sums them over the processes in one all-reduce that also carries the step's loss,
  MSE and ray count. Parameters with no gradient on any process stay without one (Adam skips them).
- **Everything else** (occupancy-grid updates, densification, the optimizer) then runs on identical
  inputs on every process: the same parameters, the same global random state (per-process
  randomness inside a forward pass runs on a forked generator, :meth:`ProcessShare.own_randomness`),
  so every process keeps the same model without ever broadcasting it again.
- **Time and Ctrl-C.** Each step ends with one small all-reduce (max) of the step's seconds and a
  stop flag, so every process stops at the same step, by time, by steps or on Ctrl-C.

With one process (the default) nothing is exchanged and a step is what it always was; several images
per step on one process average their gradients the same way.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import is_auto

if TYPE_CHECKING:
    from nerfkit.data.inputs import BatchRequest, ImageBatch, RayBatch
    from nerfkit.data.sampler import ImageSampler, PixelSampler


class StoppedTogether(NerfkitError):
    """This process stops because the whole run stops; the main process (or the launcher) says why."""


class ProcessLost(StoppedTogether):
    """An exchange with the other processes failed: one of them ended or stopped answering."""


@dataclass
class StepPart:
    """This process's part of one step: its batches (one for ray methods, one per image for image
    methods) and the weight of each in the step's mean loss."""

    batches: list[RayBatch | ImageBatch]
    weight: float


@dataclass
class ProcessShare:
    """Which part of each step this process trains on, and the exchanges with the other processes.

    Attributes:
        rank, world: this process's number and the number of processes (1: a single-process run).
        device: where this process trains and exchanges run (its GPU for NCCL, the CPU for gloo).
        timeout: seconds an exchange may wait (the process group's; for the error messages).
        stop_requested: set by a signal handler (Ctrl-C) of this process.
        stopping: every process has agreed to stop after this step (:meth:`end_step`).
    """

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    timeout: float = 1800.0
    stop_requested: bool = False
    stopping: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes (checkpoints, metrics, renders) and serves the viewer."""
        return self.rank == 0

    # --- the step's batches -------------------------------------------------------------------
    def image_count(self, images_per_step: int | str) -> int:
        """Images in one step of an image method, over all processes (``auto``: one per process)."""
        return self.world if is_auto(images_per_step) else int(images_per_step)

    def check(self, request: BatchRequest, images_per_step: int | str) -> None:
        """One sentence when the run's settings cannot give every process a part of each step."""
        if request.kind == "rays" and request.rays < self.world:
            raise NerfkitError(f"a batch of {request.rays} rays cannot be shared by {self.world} processes: "
                               "use fewer processes or more rays per batch")
        if request.kind == "image" and self.image_count(images_per_step) < self.world:
            raise NerfkitError(f"images_per_step {images_per_step} is fewer than the {self.world} "
                               "processes: each process renders at least one image per step (use "
                               f"--set images_per_step=auto or at least {self.world})")

    def step_part(self, sampler: PixelSampler | ImageSampler, request: BatchRequest,
                  images_per_step: int | str = "auto") -> StepPart:
        """This process's batches of the step ``request`` asks for: its share of the rays, or of the
        ``images_per_step`` images (an image method)."""
        if request.kind == "image":
            count = self.image_count(images_per_step)
            if count == 1:
                return StepPart([sampler.sample()], 1.0)
            return StepPart(sampler.sample_many(count, self._slice(count)), 1.0 / count)
        if self.world == 1:
            return StepPart([sampler.sample(request.rays)], 1.0)
        share = self._slice(request.rays)
        return StepPart([sampler.sample(request.rays, share)], (share.stop - share.start) / request.rays)

    def _slice(self, count: int) -> slice:
        return slice(count * self.rank // self.world, count * (self.rank + 1) // self.world)

    @contextlib.contextmanager
    def own_randomness(self, seed: int, step: int) -> Iterator[None]:
        """Inside: this process's own random stream for the step (jittered samples of its rays);
        afterwards the global generator is where it was, the same on every process."""
        if self.world == 1:
            yield
            return
        devices = [torch.cuda.current_device()] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed((seed * 1_000_003 + step) * 4096 + self.rank)
            yield

    # --- joining the results ------------------------------------------------------------------
    def combine(self, module: nn.Module, outs: Sequence[dict[str, Any]], weight: float) -> dict[str, Any]:
        """The step's gradients and numbers over all processes.

        Each of ``outs`` is a ``train_step`` result whose loss has been backpropagated into
        ``module``'s gradients (summed over this process's batches); each weighs ``weight`` in the
        step's mean. Afterwards the gradients are the step's (identical on every process), and the
        result holds the step's ``loss`` (a tensor, to check), ``mse`` and ``rays``, with the other
        entries of this process's last batch.
        """
        if self.world == 1 and len(outs) == 1:
            return outs[0]
        loss = sum(float(out["loss"].detach()) for out in outs) * weight
        mse = sum(float(out["mse"]) for out in outs) * weight
        rays = sum(int(out["rays"]) for out in outs)
        params = [p for p in module.parameters() if p.requires_grad]
        if self.world == 1:
            for param in params:
                if param.grad is not None:
                    param.grad.mul_(weight)
        else:
            loss, mse, rays = self._all_reduce_gradients(params, weight, (loss, mse, rays))
        return {**outs[-1], "loss": torch.tensor(loss), "mse": mse, "rays": int(round(rays))}

    def _all_reduce_gradients(self, params: list[nn.Parameter], weight: float,
                              numbers: tuple[float, ...]) -> tuple[float, ...]:
        """Sum ``weight`` x each gradient and ``numbers`` over the processes: one all-reduce per dtype
        (the numbers and the has-a-gradient flags ride with the float32 gradients)."""
        by_dtype: dict[torch.dtype, list[nn.Parameter]] = {torch.float32: []}
        for param in params:
            by_dtype.setdefault(param.dtype, []).append(param)
        head = torch.tensor([*numbers, *(param.grad is not None for param in params)],
                            dtype=torch.float32, device=self.device)
        flats = {}
        for dtype, group in by_dtype.items():
            parts = [(param.grad if param.grad is not None else torch.zeros_like(param)).reshape(-1)
                     for param in group]
            flat = torch.cat(parts).to(self.device) if parts else torch.zeros(0, dtype=dtype, device=self.device)
            flat.mul_(weight)
            if dtype == torch.float32:
                flat = torch.cat([head, flat])
            self._all_reduce(flat, torch.distributed.ReduceOp.SUM)
            flats[dtype] = flat
        head, flats[torch.float32] = flats[torch.float32][:head.numel()], flats[torch.float32][head.numel():]
        present = dict(zip(map(id, params), (head[len(numbers):] > 0).tolist()))
        for dtype, group in by_dtype.items():
            offset = 0
            for param in group:
                values = flats[dtype][offset:offset + param.numel()].view_as(param)
                offset += param.numel()
                if present[id(param)]:
                    param.grad = values.to(param.device).clone() if param.grad is None else param.grad.copy_(values)
        return tuple(head[:len(numbers)].double().tolist())

    def end_step(self, seconds: float) -> float:
        """The step's duration agreed by every process (the slowest); also agrees on a stop request."""
        if self.world == 1:
            return seconds
        values = torch.tensor([seconds, float(self.stop_requested)], dtype=torch.float64, device=self.device)
        self._all_reduce(values, torch.distributed.ReduceOp.MAX)
        seconds, stop = values.tolist()
        self.stopping = stop > 0
        return seconds

    # --- CrossProcess (what methods reduce themselves) and broadcasts -------------------------
    def sum(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over the processes, in place (it is returned)."""
        return self._reduced_in_place(tensor, "SUM")

    def max(self, tensor: Tensor) -> Tensor:
        """``tensor``'s elementwise maximum over the processes, in place (it is returned)."""
        return self._reduced_in_place(tensor, "MAX")

    def _reduced_in_place(self, tensor: Tensor, op: str) -> Tensor:
        if self.world == 1:
            return tensor
        moved = tensor.to(self.device)
        self._all_reduce(moved, getattr(torch.distributed.ReduceOp, op))
        if moved is not tensor:
            tensor.copy_(moved)
        return tensor

    def from_main(self, value: Any) -> Any:
        """The main process's ``value`` (any picklable object), on every process."""
        if self.world == 1:
            return value
        box = [value if self.is_main else None]
        self._exchange(lambda: torch.distributed.broadcast_object_list(box, src=0, device=self._object_device()))
        return box[0]

    def stop_error(self, message: str) -> NerfkitError:
        """The error that stops every process for ``message``: the main process reports it."""
        return NerfkitError(message) if self.is_main else StoppedTogether(message)

    def metrics(self) -> dict[str, int]:
        """What metrics.json records about the processes (nothing for a single process)."""
        return {} if self.world == 1 else {"processes": self.world}

    def _object_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None

    def _all_reduce(self, tensor: Tensor, op: Any) -> None:
        self._exchange(lambda: torch.distributed.all_reduce(tensor, op=op))

    def _exchange(self, call: Any) -> None:
        try:
            call()
        except RuntimeError as error:                # DistBackendError, DistNetworkError, timeouts
            raise ProcessLost(f"another of the {self.world} processes of this run ended or did not "
                              f"answer within {timedelta(seconds=round(self.timeout))} "
                              f"({exchange_failure(error)})") from None


def exchange_failure(error: BaseException) -> str:
    """The gist of a torch.distributed error: its first sentence, without gloo's source location."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    return text.split(". ")[0].rstrip(".")[:200]


__all__ = ["ProcessLost", "exchange_failure", "ProcessShare", "StepPart", "StoppedTogether"]

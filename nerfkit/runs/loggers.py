"""Training logs: TensorBoard event files (as nerfstudio, gsplat and Inria 3DGS write them), or JSON
lines, and the ``training.png`` plot at the end.

The trainer holds one :class:`TrainingLogger` and calls it twice: :meth:`TrainingLogger.step` after
every training step (it keeps every ``log_every``-th) and :meth:`TrainingLogger.eval` after each
quick held-out evaluation (``--eval-every``); :meth:`TrainingLogger.close` at the end writes the
plot. What one step logs (tags as TensorBoard shows them)::

    train/loss  train/psnr  train/rays_per_second  train/<method number, e.g. gaussians>
    time/train_seconds      lr/<parameter group>   memory/rss_mb  memory/cuda_allocated_mb ...
    eval/psnr  eval/ssim    eval/rgb (ground truth | render)  eval/depth   (at eval steps)
    test/psnr  test/ssim    test/lpips                                     (the final scores)

Backends (``--logger``):

- ``tensorboard``: ``RUN/logs/events.out.tfevents.*`` through ``torch.utils.tensorboard``
  (``tensorboard --logdir outputs/``).
- ``jsonl``: ``RUN/logs/train.jsonl``, one JSON object per logged step (``{"step": 10,
  "train/loss": ..., ...}``); images as PNGs in ``RUN/logs/images/`` named in the object.
- ``none``: nothing on disk except ``training.png``.
- ``auto``: tensorboard when the package imports, else jsonl (with one line saying so).

A resumed run appends to the same folder; points logged after its checkpoint by the killed process
are dropped from the plot (as TensorBoard's purge of orphaned steps).
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Protocol

import numpy as np
import torch

from nerfkit.core.errors import NerfkitError
from nerfkit.image.visualize import save_image
from nerfkit.runs.folder import RunFolder
from nerfkit.runs.plot import HistoryPoint, plot_training

LoggerName = Literal["auto", "tensorboard", "jsonl", "none"]
LOGGER_NAMES = ("auto", "tensorboard", "jsonl", "none")


class LogBackend(Protocol):
    """Where one logged step goes."""

    def write(self, step: int, scalars: Mapping[str, float], images: Mapping[str, np.ndarray]) -> None:
        """Scalars (tag -> value) and images (tag -> (H, W, 3) uint8) of training step ``step``."""

    def close(self) -> None:
        """Flush and release the files."""


def tensorboard_available() -> bool:
    """Whether ``tensorboard`` (needed by ``torch.utils.tensorboard``) can be imported."""
    return importlib.util.find_spec("tensorboard") is not None


def resolve_logger(name: str, available: bool | None = None) -> tuple[str, str]:
    """(backend name, note): ``auto`` becomes tensorboard when it is importable, else jsonl with a
    one-line note; an explicit ``tensorboard`` without the package is one sentence."""
    if name not in LOGGER_NAMES:
        raise NerfkitError(f"--logger must be one of {', '.join(LOGGER_NAMES)}, got '{name}'")
    available = tensorboard_available() if available is None else available
    if name == "auto":
        if available:
            return "tensorboard", ""
        return "jsonl", ("the tensorboard package is not installed: logging to logs/train.jsonl instead "
                         "(pip install tensorboard for TensorBoard event files)")
    if name == "tensorboard" and not available:
        raise NerfkitError("--logger tensorboard needs the tensorboard package (pip install tensorboard); "
                           "use --logger jsonl or none")
    return name, ""


class TensorBoardBackend:
    """Event files in ``folder`` (``torch.utils.tensorboard.SummaryWriter``)."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder), flush_secs=30)

    def write(self, step: int, scalars: Mapping[str, float], images: Mapping[str, np.ndarray]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        for tag, image in images.items():
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class JsonlBackend:
    """``folder/train.jsonl`` (appended; one object per step) and PNGs in ``folder/images/``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.file = open(folder / RunFolder.LOG_JSONL, "a", encoding="utf-8")

    def write(self, step: int, scalars: Mapping[str, float], images: Mapping[str, np.ndarray]) -> None:
        record: dict[str, Any] = {"step": step, **{tag: float(value) for tag, value in scalars.items()}}
        if images:
            names = {}
            for tag, image in images.items():
                name = f"{RunFolder.LOG_IMAGES}/{tag.replace('/', '_')}-step-{step:07d}.png"
                save_image(self.folder / name, image)
                names[tag] = name
            record["images"] = names
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()                 # a killed run keeps every line written so far

    def close(self) -> None:
        self.file.close()


def make_backend(name: str, folder: Path) -> LogBackend | None:
    """The backend called ``name`` writing into ``folder`` (None for ``none``)."""
    if name == "tensorboard":
        return TensorBoardBackend(folder)
    if name == "jsonl":
        return JsonlBackend(folder)
    return None


def memory_scalars(device: torch.device) -> dict[str, float]:
    """``memory/rss_mb`` (the process's resident memory) and, on CUDA, the allocated and peak MB."""
    values = {"memory/rss_mb": _resident_megabytes()}
    if device.type == "cuda" and torch.cuda.is_available():
        values["memory/cuda_allocated_mb"] = torch.cuda.memory_allocated(device) / 2**20
        values["memory/cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return values


def _resident_megabytes() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # peak, KB on Linux


@dataclass
class TrainingLogger:
    """The one logging object of a trainer (see the module docstring).

    Args:
        backend: where logged steps go, or None (``--logger none``).
        plot_file: ``training.png`` written by :meth:`close` (None: no plot).
        log_every: keep every ``log_every``-th step's scalars (eval steps always).
        device: the training device (for the memory numbers).
        history: points already logged (a resumed run), extended as training goes on.
    """

    backend: LogBackend | None
    plot_file: Path | None
    log_every: int = 10
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    history: list[HistoryPoint] = field(default_factory=list)
    _pending: tuple[int, dict[str, float], dict[str, np.ndarray]] | None = None

    def step(self, stats: Any, param_groups: Iterable[Mapping[str, Any]], last: bool = False) -> None:
        """After a training step: log the trainer's live ``stats`` (``step``, ``loss`` (MSE),
        ``psnr``, ``rays_per_second``, ``train_seconds``, ``extra``) and each parameter group's
        learning rate, on every ``log_every``-th step and the ``last`` one."""
        if stats.step % self.log_every != 0 and not last:
            return
        scalars = {"train/loss": float(stats.loss), "train/psnr": float(stats.psnr),
                   "train/rays_per_second": float(stats.rays_per_second),
                   "time/train_seconds": float(stats.train_seconds)}
        scalars.update({f"train/{key}": float(value) for key, value in stats.extra.items()})
        for index, group in enumerate(param_groups):
            scalars[f"lr/{group.get('name') or index}"] = float(group["lr"])
        scalars.update(memory_scalars(self.device))
        self._add(stats.step, scalars, {})
        self._point(stats.step, stats.train_seconds).loss = float(stats.loss)
        self._point(stats.step, stats.train_seconds).psnr = float(stats.psnr)

    def eval(self, step: int, seconds: float, psnr: float, ssim: float, images: Mapping[str, np.ndarray]) -> None:
        """After a quick held-out evaluation at ``step``: its PSNR (dB), SSIM and images (tag ->
        (H, W, 3) uint8, e.g. ``eval/rgb``)."""
        self._add(step, {"eval/psnr": float(psnr), "eval/ssim": float(ssim)}, dict(images))
        self._point(step, seconds).eval_psnr = float(psnr)

    def test(self, step: int, metrics: Mapping[str, Any]) -> None:
        """The final test-split scores (``test/psnr``, ``test/ssim``, ``test/lpips`` when known)."""
        self._add(step, {f"test/{key}": float(metrics[key]) for key in ("psnr", "ssim", "lpips")
                         if isinstance(metrics.get(key), (int, float))}, {})

    def close(self, plot: bool = True) -> Path | None:
        """Write what is pending, close the backend and (``plot``) write ``training.png``; returns
        the plot's path when one was written."""
        self._flush()
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        if plot and self.plot_file is not None and self.history:
            plot_training(self.history, self.plot_file)
            return self.plot_file
        return None

    # --- internals ----------------------------------------------------------------------------
    def _add(self, step: int, scalars: dict[str, float], images: dict[str, np.ndarray]) -> None:
        """Merge into the pending record of ``step`` (one object per step), writing the previous."""
        if self._pending is not None and self._pending[0] != step:
            self._flush()
        if self._pending is None:
            self._pending = (step, {}, {})
        self._pending[1].update(scalars)
        self._pending[2].update(images)

    def _flush(self) -> None:
        if self._pending is not None and self.backend is not None:
            self.backend.write(*self._pending)
        self._pending = None

    def _point(self, step: int, seconds: float) -> HistoryPoint:
        """The history point of ``step``: the last one when it is this step at the same training
        time (scalars and an eval of one step), else a new one at the end. A resumed run that logs
        a step again first drops the killed process's points of that step and later."""
        while self.history and (self.history[-1].step > step or (
                self.history[-1].step == step and self.history[-1].seconds != float(seconds))):
            self.history.pop()
        if not self.history or self.history[-1].step != step:
            self.history.append(HistoryPoint(step, float(seconds)))
        return self.history[-1]


def read_history(folder: Path) -> list[HistoryPoint]:
    """The plot's points from the logs in ``folder`` (``train.jsonl`` or TensorBoard events), in
    the order they were written, without the steps a killed process logged past its checkpoint."""
    jsonl = folder / RunFolder.LOG_JSONL
    rows: list[dict[str, float]] = []
    if jsonl.is_file():
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue                              # a line cut short by a kill
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                rows.append(record)
    elif any(folder.glob("events.out.tfevents.*")):
        rows = _tensorboard_rows(folder)
    logger = TrainingLogger(None, None)
    for row in rows:
        seconds = row.get("time/train_seconds", logger.history[-1].seconds if logger.history else 0.0)
        point = logger._point(int(row["step"]), float(seconds))
        point.loss = float(row.get("train/loss", point.loss))
        point.psnr = float(row.get("train/psnr", point.psnr))
        point.eval_psnr = float(row.get("eval/psnr", point.eval_psnr))
    return logger.history


def _tensorboard_rows(folder: Path) -> list[dict[str, float]]:
    """One dict per step of the event files (ordered by wall time of the step's first event)."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    events: list[tuple[float, int, str, float]] = []
    for tag in ("time/train_seconds", "train/loss", "train/psnr", "eval/psnr"):
        if tag in accumulator.Tags()["scalars"]:
            events += [(event.wall_time, event.step, tag, event.value) for event in accumulator.Scalars(tag)]
    rows: list[dict[str, float]] = []
    for _, step, tag, value in sorted(events):
        if not rows or rows[-1]["step"] != step:
            rows.append({"step": step})
        rows[-1][tag] = value
    return rows


def open_training_logger(name: str, run: RunFolder, log_every: int, device: torch.device,
                         log: Callable[[str], None] | None = None) -> TrainingLogger:
    """The run's logger for ``--logger name`` (``auto``: tensorboard when importable, else jsonl
    with a note through ``log``), continuing the history of a resumed run."""
    backend_name, note = resolve_logger(name)
    if note and log is not None:
        log(note)
    history = read_history(run.logs_dir) if run.logs_dir.is_dir() else []
    return TrainingLogger(make_backend(backend_name, run.logs_dir), run.plot_file, max(1, log_every), device,
                          history)

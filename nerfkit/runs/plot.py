"""``training.png``: PSNR and loss of a run against training time (matplotlib, without pyplot's global
state)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from nerfkit.core.files import atomic_path


@dataclass
class HistoryPoint:
    """One logged step: training seconds, loss (MSE) and PSNR (dB; NaN when not logged)."""

    step: int
    seconds: float
    loss: float = float("nan")
    psnr: float = float("nan")
    eval_psnr: float = float("nan")


def plot_training(history: Sequence[HistoryPoint], path: Path, title: str = "") -> Path:
    """Two panels over training seconds: PSNR (training batches as a line, held-out evals as dots,
    dB) and the training loss (MSE, log scale). Written atomically as a PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def series(attribute: str) -> tuple[list[float], list[float]]:
        pairs = [(p.seconds, getattr(p, attribute)) for p in history if math.isfinite(getattr(p, attribute))]
        return [s for s, _ in pairs], [v for _, v in pairs]

    figure = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    psnr_axes, loss_axes = figure.subplots(1, 2)
    seconds, values = series("psnr")
    psnr_axes.plot(seconds, values, color="#4477aa", linewidth=1.2, label="training batch")
    seconds, values = series("eval_psnr")
    if values:
        psnr_axes.plot(seconds, values, "o-", color="#ee6677", markersize=4, label="held-out view")
    psnr_axes.set(xlabel="training time (s)", ylabel="PSNR (dB)", title="PSNR")
    psnr_axes.grid(alpha=0.3)
    psnr_axes.legend(loc="lower right", fontsize=8)
    seconds, values = series("loss")
    positive = [(s, v) for s, v in zip(seconds, values) if v > 0]
    loss_axes.plot([s for s, _ in positive], [v for _, v in positive], color="#228833", linewidth=1.2)
    if positive:
        loss_axes.set_yscale("log")
    loss_axes.set(xlabel="training time (s)", ylabel="MSE", title="training loss")
    loss_axes.grid(alpha=0.3, which="both")
    if title:
        figure.suptitle(title)
    with atomic_path(Path(path), suffix=".png") as temp:
        figure.savefig(temp, format="png")
    return Path(path)

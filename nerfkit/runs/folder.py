"""The run folder: where it goes, how to find it again, and the name of every file in it.

Layout (docs/design.md, "Run folder")::

    <output_root>/<scene>/<method>/<YYYY-MM-DD_HHMMSS>[_N]/
        config.yaml              marks the folder as a run
        transform.json           the normalising similarity (world -> scene coordinates)
        checkpoints/step-NNNNNNN.pt
        metrics.json, eval-<split>[-multiscale].json
        training.png             PSNR and loss against training time (written at the end)
        logs/                    TensorBoard event files, or train.jsonl + images/ (--logger)
        renders/<split>/, exports/, camera_paths/

:class:`RunFolder` is the only place that spells these names; everything that reads or writes a
run asks it for the path. Writes go through :mod:`nerfkit.core.files` (atomic).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nerfkit.core.errors import NerfkitError

_CHECKPOINT_RE = re.compile(r"step-(\d{7,})\.pt")
_RUN_NAME_RE = re.compile(r"(\d{4}-\d{2}-\d{2}_\d{6})(?:_(\d+))?")
_TIMESTAMP_FORMAT = "%Y-%m-%d_%H%M%S"


@dataclass(frozen=True)
class RunFolder:
    """One run's folder (``path``) and the names of the files in it."""

    path: Path

    CONFIG = "config.yaml"
    TRANSFORM = "transform.json"
    CHECKPOINTS = "checkpoints"
    METRICS = "metrics.json"
    RENDERS = "renders"
    EXPORTS = "exports"
    CAMERA_PATHS = "camera_paths"
    LOGS = "logs"
    LOG_JSONL = "train.jsonl"         # inside logs/
    LOG_IMAGES = "images"             # inside logs/ (the jsonl logger's PNGs)
    PLOT = "training.png"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    # --- creating and finding -----------------------------------------------------------------
    @classmethod
    def create(cls, output_root: Path, scene_name: str, method: str,
               now: datetime | None = None) -> "RunFolder":
        """Create ``output_root/<scene_name>/<method>/<YYYY-MM-DD_HHMMSS>/`` and return it.

        When that folder already exists (two runs started in the same second) the name gets
        ``_1``, ``_2``, ... appended; creation is exclusive, so concurrent runs never share a
        folder. ``now`` defaults to the local time.
        """
        for name in (scene_name, method):
            if not name or name in (".", "..") or "/" in name or os.sep in name:
                raise ValueError(f"scene and method names must be single folder names, got {name!r}")
        parent = Path(output_root) / scene_name / method
        parent.mkdir(parents=True, exist_ok=True)
        stamp = (now or datetime.now()).strftime(_TIMESTAMP_FORMAT)
        suffix = 0
        while True:
            path = parent / (stamp if suffix == 0 else f"{stamp}_{suffix}")
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                suffix += 1

    @classmethod
    def find(cls, path: Path) -> "RunFolder":
        """The run folder that ``path`` names.

        ``path`` may be a run folder (it holds ``config.yaml``; returned as is, checkpoints or
        not), or a method folder ``outputs/<scene>/<method>/``, a scene folder ``outputs/<scene>/``
        or the output root ``outputs/``, in which case the newest run below it that has at least
        one checkpoint is returned. Newest is by the run's folder name (its start time, then the
        ``_N`` suffix), or by the modification time of its ``config.yaml`` when the folder was
        renamed.
        """
        path = Path(path)
        if not path.exists():
            raise NerfkitError(f"'{path}' does not exist: expected a run folder from nerfkit train")
        if (path / cls.CONFIG).is_file():
            return cls(path)
        candidates = [cls(config.parent) for pattern in (f"*/{cls.CONFIG}", f"*/*/{cls.CONFIG}",
                                                         f"*/*/*/{cls.CONFIG}")
                      for config in path.glob(pattern)]
        candidates = [run for run in candidates if run.checkpoints()]
        if not candidates:
            raise NerfkitError(f"'{path}' holds no nerfkit run: expected a folder with config.yaml "
                               f"and checkpoints/ (from nerfkit train)")
        return max(candidates, key=RunFolder._start_key)

    def _start_key(self) -> tuple[datetime, int]:
        """Sort key giving a run's start: from its folder name, else from its config.yaml mtime."""
        match = _RUN_NAME_RE.fullmatch(self.path.name)
        if match:
            try:
                return datetime.strptime(match.group(1), _TIMESTAMP_FORMAT), int(match.group(2) or 0)
            except ValueError:
                pass  # digits in the right places but not a real date: treat as renamed
        return datetime.fromtimestamp(self.config_file.stat().st_mtime), 0

    # --- the files ----------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def transform_file(self) -> Path:
        return self.path / self.TRANSFORM

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def logs_dir(self) -> Path:
        """TensorBoard event files (``events.out.tfevents.*``) or ``train.jsonl`` and ``images/``."""
        return self.path / self.LOGS

    @property
    def plot_file(self) -> Path:
        """``training.png``: PSNR and loss against training time."""
        return self.path / self.PLOT

    @property
    def camera_paths_dir(self) -> Path:
        """Camera paths saved from the viewer (``NAME.json``) and their videos (``NAME.mp4``)."""
        return self.path / self.CAMERA_PATHS

    def checkpoint(self, step: int) -> Path:
        """``checkpoints/step-NNNNNNN.pt`` for training step ``step`` (>= 0)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.checkpoints_dir / f"step-{step:07d}.pt"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every checkpoint file, oldest step first.

        Only names of the form ``step-NNNNNNN.pt`` count; temp files of interrupted writes do not.
        Files are not opened, so a listed checkpoint may still be truncated.
        """
        folder = self.checkpoints_dir
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            match = _CHECKPOINT_RE.fullmatch(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def renders(self, split: str) -> Path:
        """The folder of a split's renders written at the end of training."""
        return self.path / self.RENDERS / split

    def eval_file(self, split: str, multiscale: bool = False) -> Path:
        """``eval-<split>.json`` (``eval-<split>-multiscale.json`` for several scales)."""
        return self.path / (f"eval-{split}-multiscale.json" if multiscale else f"eval-{split}.json")

    def export(self, name: str) -> Path:
        """``exports/<name>``: the default place of an export (``mesh.ply``, ``splat.ply``, ...)."""
        return self.path / self.EXPORTS / name

"""The run folder: where it goes, how to find it again, and crash-safe writes into it.

Layout (DESIGN.md)::

    <output_root>/<scene>/<method>/<YYYY-MM-DD_HHMMSS>[_N]/
        config.yaml              marks the folder as a run
        transform.json
        checkpoints/step-NNNNNNN.pt
        metrics.json, renders/, exports

Every file here is written atomically: to a hidden temp file in the same folder, flushed and
fsync'ed, then renamed over the target, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from nerfkit.errors import NerfkitError

CONFIG_NAME = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_RE = re.compile(r"step-(\d{7,})\.pt")
_RUN_NAME_RE = re.compile(r"(\d{4}-\d{2}-\d{2}_\d{6})(?:_(\d+))?")
_TIMESTAMP_FORMAT = "%Y-%m-%d_%H%M%S"


def new_run_dir(output_root: Path, scene_name: str, method: str,
                now: datetime | None = None) -> Path:
    """Create and return ``output_root/<scene_name>/<method>/<YYYY-MM-DD_HHMMSS>/``.

    When that folder already exists (two runs started in the same second) the name gets ``_1``,
    ``_2``, ... appended; creation is exclusive, so concurrent runs never share a folder.
    ``now`` defaults to the local time.
    """
    for name in (scene_name, method):
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise ValueError(f"scene and method names must be single folder names, got {name!r}")
    parent = Path(output_root) / scene_name / method
    parent.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime(_TIMESTAMP_FORMAT)
    suffix = 0
    while True:
        run_dir = parent / (stamp if suffix == 0 else f"{stamp}_{suffix}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            suffix += 1


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """``run_dir/checkpoints/step-NNNNNNN.pt`` for training step ``step`` (>= 0)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:07d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint file in ``run_dir``, oldest step first.

    Only names of the form ``step-NNNNNNN.pt`` count; temp files of interrupted writes do not.
    Files are not opened, so a listed checkpoint may still be truncated.
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT_RE.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_run(path: Path) -> Path:
    """The run folder that ``path`` names.

    ``path`` may be a run folder (it holds ``config.yaml``; returned as is, checkpoints or not), or
    a method folder ``outputs/<scene>/<method>/``, a scene folder ``outputs/<scene>/`` or the output
    root ``outputs/``, in which
    case the newest run below it that has at least one checkpoint is returned. Newest is by the
    run's folder name (its start time, then the ``_N`` suffix), or by the modification time of its
    ``config.yaml`` when the folder was renamed.
    """
    path = Path(path)
    if not path.exists():
        raise NerfkitError(f"'{path}' does not exist: expected a run folder from nerfkit train")
    if (path / CONFIG_NAME).is_file():
        return path
    candidates = [config.parent for pattern in (f"*/{CONFIG_NAME}", f"*/*/{CONFIG_NAME}", f"*/*/*/{CONFIG_NAME}")
                  for config in path.glob(pattern)]
    candidates = [run for run in candidates if list_checkpoints(run)]
    if not candidates:
        raise NerfkitError(f"'{path}' holds no nerfkit run: expected a folder with config.yaml "
                           f"and checkpoints/ (from nerfkit train)")
    return max(candidates, key=_run_start_key)


def _run_start_key(run_dir: Path) -> tuple[datetime, int]:
    """Sort key giving a run's start: from its folder name, else from its config.yaml mtime."""
    match = _RUN_NAME_RE.fullmatch(run_dir.name)
    if match:
        try:
            return datetime.strptime(match.group(1), _TIMESTAMP_FORMAT), int(match.group(2) or 0)
        except ValueError:
            pass  # digits in the right places but not a real date: treat as renamed
    return datetime.fromtimestamp((run_dir / CONFIG_NAME).stat().st_mtime), 0


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temp path next to ``path`` to write to (by this process or another, e.g. ffmpeg); on
    success the file there replaces ``path``.

    The temp file is ``.<name>.tmp-<pid>-<random><suffix>`` in the same folder (so the rename stays
    on one file system and never matches ``step-NNNNNNN.pt``; ``suffix`` keeps an extension that
    a writer reads the format from). On leaving the block the file is fsync'ed and renamed over
    ``path``; if the block raises, the temp file is removed, ``path`` is untouched and the
    exception propagates. The parent folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"
    try:
        yield temp
        descriptor = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[IO[bytes]]:
    """Open a temp file next to ``path`` for binary writing; on success it replaces ``path``
    (see :func:`atomic_path`: fsync'ed, renamed; removed again if the block raises).

    >>> with atomic_write(Path("metrics.json")) as f:  # doctest: +SKIP
    ...     f.write(b"{}")
    """
    with atomic_path(path) as temp, open(temp, "xb") as file:
        yield file


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable where the platform allows it (best effort)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` (JSON-serialisable: dicts, lists, str, int, float, bool, None) to ``path``."""
    text = json.dumps(data, indent=2) + "\n"
    with atomic_write(path) as file:
        file.write(text.encode("utf-8"))


def write_yaml_atomic(path: Path, data: Any) -> None:
    """Write ``data`` (plain YAML types only) to ``path``, keys in insertion order."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    with atomic_write(path) as file:
        file.write(text.encode("utf-8"))


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping stored in the YAML file ``path``; an empty file gives ``{}``.

    Raises:
        NerfkitError: the file is missing, unreadable, not valid YAML, or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NerfkitError(f"'{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise NerfkitError(f"'{path}' could not be read: {_first_line(error)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise NerfkitError(f"'{path}' is not valid YAML: {_yaml_problem(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NerfkitError(f"'{path}' must hold a YAML mapping (key: value lines), "
                           f"not a {type(data).__name__}")
    return data


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong in a YAML file and where, e.g. "mapping values are not allowed here (line 3)"."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message (errors are printed as one sentence)."""
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(error).__name__

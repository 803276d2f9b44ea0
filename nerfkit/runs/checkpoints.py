"""Training checkpoints: atomic save with keep-N pruning, find the newest good one, load.

A checkpoint is ``run_dir/checkpoints/step-NNNNNNN.pt``, a ``torch.save`` zip holding one dict::

    {
        "step": int,                  # the training step it was taken after (always present)
        "method": dict,               # Method.state_dict(): parameters and buffers
        "optimizer": dict,            # optimizer state_dict(s), e.g. {"adam": opt.state_dict()}
        "trainer": dict,              # trainer extras: schedules, densification state, best PSNR
        "rng": dict,                  # capture_rng_state(): torch / cuda / numpy / python states
        "poses": dict,                # pose_refine=on only: the training cameras' corrections
    }

Only ``step`` is required by this module; the rest is the trainer's layout. The dict may hold
only what ``torch.load(weights_only=True)`` accepts: tensors, dicts, lists, tuples, str, int,
float, bool, None, torch dtypes/sizes/devices. Checkpoints are loaded that way, so a run folder
from elsewhere cannot run code, and every save checks that its file loads back before it replaces
anything.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import atomic_write
from nerfkit.runs.folder import RunFolder

DEFAULT_KEEP = 3


def save_checkpoint(run_dir: Path | RunFolder, step: int, state: dict[str, Any],
                    keep: int = DEFAULT_KEEP) -> Path:
    """Write ``state`` (plus ``"step": step``) as ``run_dir/checkpoints/step-{step:07d}.pt``.

    The file is written to a hidden temp file in the same folder, flushed, fsync'ed, checked to
    load, then renamed into place; afterwards only the ``keep`` newest checkpoints by step (always
    including this one) are kept. If writing fails, the temp file is removed and every earlier
    checkpoint is left as it was.

    Returns:
        The checkpoint's path.

    Raises:
        NerfkitError: the file could not be written (disk full, permissions, ...).
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    path = RunFolder(run_dir).checkpoint(step)
    payload = {**state, "step": int(step)}
    try:
        with atomic_write(path) as file:
            torch.save(payload, file)
            file.flush()
            _check_loads(Path(file.name))
    except (OSError, RuntimeError) as error:
        cause = _os_error_in(error)
        if cause is None:
            raise  # not an I/O failure: a bug, keep the traceback
        raise NerfkitError(f"The checkpoint '{path}' could not be written: "
                           f"{_reason(cause)}") from None
    _prune(run_dir, keep, protect=path)
    return path


def latest_checkpoint(run_dir: Path | RunFolder) -> Path | None:
    """The newest checkpoint in ``run_dir`` (by step) that opens, or None when there is none.

    A newest file that is truncated or corrupt (e.g. copied half-way) is skipped with a warning
    and the next older one is tried. The check opens the file memory-mapped: it reads the zip
    directory and the pickled structure, not the tensor data.
    """
    for step, path in reversed(RunFolder(run_dir).checkpoints()):
        try:
            _check_loads(path)
        except Exception as error:  # noqa: BLE001 - any failure to open means: try an older one
            warnings.warn(f"Skipping unreadable checkpoint '{path}': {_reason(error)}",
                          stacklevel=2)
            continue
        return path
    return None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state dict stored in the checkpoint ``path`` (layout in the module docstring).

    Raises:
        NerfkitError: the file is missing, truncated or not a nerfkit checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise NerfkitError(f"The checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file
        raise NerfkitError(f"The checkpoint '{path}' is corrupt or truncated and cannot be "
                           f"loaded: {_reason(error)}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise NerfkitError(f"'{path}' is not a nerfkit checkpoint: it holds no training step")
    return state


def capture_rng_state() -> dict[str, Any]:
    """The global random states of torch (CPU and every CUDA device), numpy and Python.

    The result contains only checkpoint-safe types; give it to :func:`restore_rng_state`.
    """
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {"key": numpy_state["state"]["key"].tolist(),
                            "pos": int(numpy_state["state"]["pos"])}
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_state,
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the random states saved by :func:`capture_rng_state` (CUDA only where present)."""
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {"key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
                            "pos": int(numpy_state["state"]["pos"])}
    np.random.set_state(numpy_state)
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _check_loads(path: Path) -> None:
    """Raise if ``path`` is not a complete torch zip whose contents load with weights_only."""
    torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _prune(run_dir: Path | RunFolder, keep: int, protect: Path) -> None:
    """Delete all but the ``keep`` newest checkpoints by step, never ``protect``."""
    others = [path for _, path in RunFolder(run_dir).checkpoints() if path != protect]
    for path in others[: max(len(others) - (keep - 1), 0)]:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:
            warnings.warn(f"Could not delete old checkpoint '{path}': {_reason(error)}",
                          stacklevel=3)


def _os_error_in(error: BaseException) -> OSError | None:
    """``error`` or the OSError it was raised from (torch.save wraps write failures in a
    RuntimeError whose context is the OSError), or None when no OSError is involved."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _reason(error: BaseException) -> str:
    """The first line of an exception's message, for one-sentence error messages."""
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(error).__name__

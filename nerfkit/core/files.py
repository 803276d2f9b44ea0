"""Files written so that a crash never leaves a half-written one, and the YAML/JSON they hold.

Every writer here goes through :func:`atomic_path`: the bytes go to a hidden temp file in the
same folder, which is flushed, fsync'ed and then renamed over the target, so a crash leaves either
the old file or the new one. Readers turn a missing, unreadable or malformed file into one
:class:`~nerfkit.core.errors.NerfkitError` sentence naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from nerfkit.core.errors import NerfkitError


def user_cache_dir() -> Path:
    """nerfkit's cache folder for things it computes once per machine (the demo scene, a scene's
    triangulated points), never inside a user's scene: ``$NERFKIT_CACHE``, else
    ``$XDG_CACHE_HOME/nerfkit``, else ``~/.cache/nerfkit``."""
    root = os.environ.get("NERFKIT_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nerfkit"
    return Path(root).expanduser()


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

"""Checks of an export's output path, made before any expensive work, and its missing folders."""

from __future__ import annotations

from pathlib import Path

from nerfkit.core.errors import NerfkitError


def check_output(path: Path, suffixes: tuple[str, ...], what: str) -> None:
    """Refuse an output whose extension is not one of ``suffixes`` or that names a folder.

    Args:
        suffixes: the accepted extensions, e.g. ``(".ply", ".obj")``.
        what: what the export writes, for the message (e.g. "export mesh writes").
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        found = f"the extension '{path.suffix}'" if path.suffix else "no extension"
        raise NerfkitError(f"output '{path}' has {found}: {what} {' or '.join(suffixes)} files, e.g. "
                           f"-o {path.stem or 'out'}{suffixes[0]}")
    if path.is_dir():
        raise NerfkitError(f"output '{path}' is a folder: expected a file path, e.g. "
                           f"-o {path / ('out' + suffixes[0])}")


def make_parent(path: Path) -> None:
    """Create the output's missing folders, or say in one sentence why they cannot be."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists() and not p.is_dir()),
                       path.parent)
        raise NerfkitError(f"the folder for '{path}' cannot be created: '{blocker}' is a file") from None
    except OSError as error:
        raise NerfkitError(f"the folder for '{path}' cannot be created: "
                           f"{error.strerror or error}") from None


def check_output_folder(path: Path, what: str, protected: Path | None = None) -> None:
    """Refuse an output folder that is a file, or that lies inside ``protected`` (a scene folder:
    nerfkit never writes into a user's input).

    Args:
        what: what the export writes into the folder, for the message.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NerfkitError(f"output '{path}' is a file: {what} a folder, e.g. -o {path.with_suffix('')}-model")
    if protected is not None:
        inside = path.resolve()
        root = Path(protected).resolve()
        if inside == root or root in inside.parents:
            raise NerfkitError(f"output '{path}' is inside the scene folder '{protected}', which nerfkit never "
                               f"writes to: expected a folder elsewhere, e.g. the default RUN/exports/cameras")

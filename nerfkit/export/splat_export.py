"""``nerfkit export splat``: a splat run's Gaussians as a standard 3DGS .ply in world coordinates.

The splat method optimises its Gaussians in nerfkit's normalised scene coordinates; the file is
written in the scene's ORIGINAL world coordinates and units (DESIGN.md, "Conventions"), moved there
by the inverse of the run's ``world_to_scene`` (:func:`nerfkit.export.transform.gaussians_to_world`),
so it lands on the input cameras in other splat viewers.

Only the SH bands the run has in use are written (``method.sh_degree_in_use``): a run stopped before
its SH degree reached ``sh_degree`` renders with fewer bands, and the file then renders the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nerfkit.errors import NerfkitError
from nerfkit.export.splat_ply import write_splat_ply
from nerfkit.export.transform import gaussians_to_world

DEFAULT_NAME = Path("exports") / "splat.ply"
"""Where the file goes when no output is given, relative to the run folder."""


@dataclass
class SplatExport:
    """What :func:`export_splat` wrote."""

    path: Path
    count: int          # Gaussians in the file
    sh_degree: int      # SH degree of the file (0..3)
    step: int           # training step of the checkpoint exported
    run_dir: Path


def export_splat(run: Path, output: Path | None = None) -> SplatExport:
    """Write the Gaussians of the splat run at ``run`` to ``output`` (a .ply file).

    Args:
        run: a run folder, or a folder above runs (its newest run with a checkpoint).
        output: the .ply file to (over)write; its missing folders are created. None:
            ``<run folder>/exports/splat.ply``.
    Raises:
        NerfkitError: ``output`` is not a .ply path or is a folder, the run has no checkpoint, or
            it was not trained with the splat method.
    """
    from nerfkit.pipeline import open_run, read_run_config
    from nerfkit.runs import resolve_run

    if output is not None:
        check_output(output)
    run_dir = resolve_run(Path(run))
    trained_with = read_run_config(run_dir).train.method        # cheap: refuse before loading
    if trained_with != "splat":
        raise NerfkitError(f"run '{run_dir}' was trained with {trained_with}, which has no Gaussians; "
                           f"export splat needs a run of --method splat")
    path = Path(output) if output is not None else run_dir / DEFAULT_NAME
    check_output(path)
    _, scene, method, step = open_run(run_dir)
    degree = int(method.sh_degree_in_use)
    with torch.no_grad():
        in_scene = {key: value.detach() for key, value in method.gaussians.items()}
        in_scene["shN"] = in_scene["shN"][:, : (degree + 1) ** 2 - 1]
        in_world = gaussians_to_world(in_scene, scene.world_to_scene)
    _make_parent(path)
    write_splat_ply(path, in_world)
    return SplatExport(path, int(in_world["means"].shape[0]), degree, step, run_dir)


def check_output(path: Path) -> None:
    """Refuse an output that is not a ``.ply`` file name or that names an existing folder."""
    path = Path(path)
    if path.suffix.lower() != ".ply":
        found = f"'{path.suffix}'" if path.suffix else "no extension"
        raise NerfkitError(f"output '{path}' has {found}: export splat writes a 3DGS Gaussian "
                           f".ply file, e.g. -o splat.ply")
    if path.is_dir():
        raise NerfkitError(f"output '{path}' is a folder: expected a .ply file path, e.g. "
                           f"-o {path / 'splat.ply'}")


def _make_parent(path: Path) -> None:
    """Create the output's missing folders, or say in one sentence why they cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists() and not p.is_dir()),
                       path.parent)
        raise NerfkitError(f"the folder for '{path}' cannot be created: '{blocker}' is a file") from None
    except OSError as error:
        raise NerfkitError(f"the folder for '{path}' cannot be created: "
                           f"{error.strerror or error}") from None

"""``nerfkit view RUN`` or ``nerfkit view FILE.ply [--scene SCENE]``: serve a finished run, or a splat
file from any tool, in the web viewer until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

from nerfkit.cli.common import add_viewer_address, viewer_token

SPLAT_FILE_SUFFIXES = (".ply", ".splat", ".spz")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("view", help="browse a run, or a splat file (.ply .splat .spz), in the web "
                                 "viewer (until Ctrl-C)")
    parser.add_argument("run", metavar="RUN|FILE",
                        help="run folder (or a parent: its newest run), or a Gaussian splat file: a 3DGS .ply "
                             "(Inria, gsplat, nerfstudio, SuperSplat, nerfkit), .splat or .spz")
    parser.add_argument("--scene", default=None,
                        help="for a splat file: the scene folder it was trained on (its cameras are shown, "
                             "the file is in that scene's world coordinates)")
    parser.add_argument("--downscale", type=float, default=1.0, help="with --scene: divide its image sizes by this")
    parser.add_argument("--resolution", type=int, default=None,
                        help="longer side of a fully refined frame in pixels (default 1024 on a GPU, 256 on "
                             "the CPU; the panel's slider changes it too)")
    add_viewer_address(parser)
    parser.set_defaults(handler=run)


def is_splat_file(path: Path) -> bool:
    """Whether the command was given a splat file rather than a run folder."""
    return path.suffix.lower() in SPLAT_FILE_SUFFIXES and not path.is_dir()


def run(args: argparse.Namespace) -> int:
    from nerfkit.app.serve import check_address, serve_until_interrupted, start_viewer
    from nerfkit.core.errors import NerfkitError
    from nerfkit.runs.folder import RunFolder
    from nerfkit.runs.session import open_run
    from nerfkit.runs.trainer import TrainStats

    check_address(args.host, args.port)
    token = viewer_token(args)
    if args.resolution is not None and not 32 <= args.resolution <= 2048:
        raise NerfkitError(f"--resolution must be 32 to 2048 pixels, got {args.resolution}")
    target = Path(args.run)
    if is_splat_file(target):
        return _view_file(args, target, token)
    if args.scene is not None:
        raise NerfkitError("--scene is for a splat file; a run folder knows its scene")
    folder = RunFolder.find(target)
    _, scene, method, step = open_run(folder)
    server = start_viewer(method, scene, folder, args.host, args.port, TrainStats(step=step), token=token,
                          resolution=args.resolution)
    print(f"viewing {folder.path} (step {step}) at {server.url}  (Ctrl-C to stop)", flush=True)
    serve_until_interrupted(server)
    return 0


def _view_file(args: argparse.Namespace, path: Path, token: str | None) -> int:
    from types import SimpleNamespace

    from nerfkit.app.serve import serve_until_interrupted, start_splat_viewer, start_viewer
    from nerfkit.data.load import load_scene
    from nerfkit.export.splat_scene import load_splat_scene
    from nerfkit.runs.config import resolve_device

    scene = load_scene(Path(args.scene), args.downscale) if args.scene is not None else None
    method, _, frame = load_splat_scene(path, scene, resolve_device("auto"))
    stats = SimpleNamespace(step=0, loss=float("nan"), psnr=float("nan"), rays_per_second=float("nan"),
                            extra={"gaussians": method.n_gaussians})
    folder = path.resolve().parent
    if scene is not None:
        server = start_viewer(method, scene, folder, args.host, args.port, stats, token=token,
                              resolution=args.resolution)
    else:
        server = start_splat_viewer(method, frame, folder, args.host, args.port, stats, token=token,
                                    resolution=args.resolution)
    where = f" with the cameras of {scene.root}" if scene is not None else ""
    print(f"viewing {path} ({method.n_gaussians:,} Gaussians, SH degree {method.sh_degree_in_use}){where} at "
          f"{server.url}  (Ctrl-C to stop)", flush=True)
    serve_until_interrupted(server)
    return 0

"""``nerfkit export splat|mesh|pointcloud RUN [-o FILE]``: a run's result as a file other tools open,
in the scene's original world coordinates."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nerfkit.cli.common import add_run_argument

MESH_SUFFIXES = (".ply", ".obj")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("export", help="write a run's result to a file other tools open")
    kinds = parser.add_subparsers(required=True)       # each kind sets its own handler
    splat = _kind(kinds, "splat", "a splat run's Gaussians as a 3DGS .ply (world coordinates)", ".ply file",
                  "splat.ply")
    splat.set_defaults(handler=run_splat)
    mesh = _kind(kinds, "mesh", "any run's surface as a coloured .ply/.obj mesh (marching cubes on the SDF for "
                 "neus, TSDF of rendered depth otherwise; world coordinates)", ".ply or .obj file", "mesh.ply")
    mesh.add_argument("--resolution", type=int, default=256,
                      help="TSDF voxels (SDF samples) along the box's longest side")
    mesh.add_argument("--views", default="train", help="train | all: the cameras fused (default train)")
    mesh.add_argument("--min-component", type=float, default=0.05,
                      help="drop pieces with fewer than this fraction of the faces (default 0.05)")
    mesh.add_argument("--max-views", type=int, default=0,
                      help="fuse at most this many views, evenly spread (default 0: all)")
    mesh.add_argument("--crop", type=float, nargs=6, default=None,
                      metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                      help="box to mesh, in the scene's original world coordinates (default: the scene box)")
    mesh.add_argument("--faces", type=int, default=0, help="decimate to about this many faces (default 0: keep all)")
    mesh.add_argument("--texture", action="store_true",
                      help="write an .obj with a UV atlas (xatlas), a baked texture .png and an .mtl")
    mesh.add_argument("--texture-size", type=int, default=2048, help="texture width and height (default 2048)")
    mesh.add_argument("--fill-holes", action=argparse.BooleanOptionalAction, default=None,
                      help="cap the holes where no view saw the surface, for a closed mesh (default: on "
                           "for bounded scenes, off for unbounded ones)")
    mesh.add_argument("--visible-only", action=argparse.BooleanOptionalAction, default=True,
                      help="SDF meshes: keep only the faces a training view sees (default: on)")
    mesh.set_defaults(handler=run_mesh)
    cloud = _kind(kinds, "pointcloud", "points on the rendered depth of the training views as a coloured .ply "
                  "(world coordinates)", ".ply file", "pointcloud.ply")
    cloud.add_argument("--max-points", type=int, default=1_000_000, help="keep at most this many points")
    cloud.set_defaults(handler=run_pointcloud)


def _kind(kinds: argparse._SubParsersAction, kind: str, help_text: str, output_text: str,
          default_name: str) -> argparse.ArgumentParser:
    """One ``nerfkit export KIND RUN [-o FILE]`` sub-command."""
    parser = kinds.add_parser(kind, help=help_text)
    add_run_argument(parser)
    parser.add_argument("-o", "--output", default=None, help=f"{output_text} (default: RUN/exports/{default_name})")
    return parser


def _output(args: argparse.Namespace, default_name: str, suffixes: tuple[str, ...], what: str):
    """(run folder, output path): the output checked before the run is opened."""
    from nerfkit.export.outputs import check_output
    from nerfkit.runs.folder import RunFolder

    if args.output is not None:
        check_output(Path(args.output), suffixes, what)
    folder = RunFolder.find(Path(args.run))
    path = Path(args.output) if args.output is not None else folder.export(default_name)
    check_output(path, suffixes, what)
    return folder, path


def run_splat(args: argparse.Namespace) -> int:
    from nerfkit.core.errors import NerfkitError
    from nerfkit.export.gaussians import export_splat
    from nerfkit.export.outputs import make_parent
    from nerfkit.runs.session import open_run, read_run_config

    folder, path = _output(args, "splat.ply", (".ply",), "export splat writes 3DGS Gaussian")
    trained_with = read_run_config(folder).train.method          # cheap: refuse before loading
    if trained_with != "splat":
        raise NerfkitError(f"run '{folder.path}' was trained with {trained_with}, which has no Gaussians; "
                           f"export splat needs a run of --method splat")
    _, scene, method, step = open_run(folder)
    result = export_splat(method, scene)
    make_parent(path)
    result.write(path)
    print(f"wrote {result.count} Gaussians (SH degree {result.sh_degree}, step {step}) "
          f"in world coordinates to {path}")
    return 0


def run_mesh(args: argparse.Namespace) -> int:
    from nerfkit.core.errors import NerfkitError
    from nerfkit.export.mesh import MeshOptions, export_mesh
    from nerfkit.export.outputs import make_parent
    from nerfkit.runs.session import open_run

    start = time.perf_counter()
    options = MeshOptions(resolution=args.resolution, views=args.views, max_views=args.max_views,
                          min_component=args.min_component, crop=args.crop, faces=args.faces,
                          texture=args.texture, texture_size=args.texture_size, fill_holes=args.fill_holes,
                          visible_only=args.visible_only)
    folder, path = _output(args, "mesh.obj" if options.texture else "mesh.ply", MESH_SUFFIXES,
                           "export mesh writes")
    if options.texture and path.suffix.lower() != ".obj":
        raise NerfkitError(f"--texture writes a UV atlas and a .png that only an .obj keeps: expected "
                           f"an .obj output, got '{path}'")
    _, scene, method, step = open_run(folder)
    mesh = export_mesh(method, scene, options, progress=sys.stderr.isatty())
    clock = time.perf_counter()
    make_parent(path)
    paths = mesh.write(path)
    mesh.timings["write"] = time.perf_counter() - clock
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in mesh.timings.items())
    print(f"wrote {', '.join(str(p) for p in paths)}: {len(mesh.vertices)} vertices, {len(mesh.faces)} "
          f"faces (step {step}, {mesh.views} views) in world coordinates in "
          f"{time.perf_counter() - start:.1f} s ({stages})")
    return 0


def run_pointcloud(args: argparse.Namespace) -> int:
    from nerfkit.export.outputs import make_parent
    from nerfkit.export.pointcloud import export_pointcloud
    from nerfkit.runs.session import open_run

    start = time.perf_counter()
    folder, path = _output(args, "pointcloud.ply", (".ply",), "export pointcloud writes")
    _, scene, method, step = open_run(folder)
    cloud = export_pointcloud(method, scene, max_points=args.max_points)
    make_parent(path)
    cloud.write(path)
    print(f"wrote {path}: {len(cloud.points)} points (step {step}, {cloud.views} views) "
          f"in world coordinates in {time.perf_counter() - start:.1f} s")
    return 0

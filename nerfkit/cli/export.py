"""``nerfkit export splat|mesh|pointcloud RUN [-o FILE]`` and ``nerfkit export cameras RUN [-o DIR]``: a
run's result as files other tools open, in the scene's original world coordinates."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nerfkit.cli.common import add_run_argument, check_choice

MESH_SUFFIXES = (".ply", ".obj")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("export", help="write a run's result to a file other tools open")
    kinds = parser.add_subparsers(required=True)       # each kind sets its own handler
    splat = _kind(kinds, "splat", "a splat run's Gaussians as a 3DGS .ply (standard or SuperSplat's compressed), "
                  ".splat or .spz (world coordinates)", ".ply, .splat or .spz file",
                  "splat.ply; splat.compressed.ply with --format compressed")
    splat.add_argument("--format", default=None, help="standard | compressed: the .ply layout (default "
                       "standard; compressed = SuperSplat's chunked, quantised .ply)")
    splat.add_argument("--min-opacity", type=float, default=0.0,
                       help="drop Gaussians less opaque than this, 0..1 (floaters; default 0: keep all)")
    splat.add_argument("--crop", type=float, nargs=6, default=None,
                       metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                       help="keep only the Gaussians whose centre is in this box, in the scene's original "
                            "world coordinates")
    splat.add_argument("--sh-degree", type=int, default=None,
                       help="keep SH bands up to this degree (0: base colour only; default: all the run has)")
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
    mesh.add_argument("--scene", default=None,
                      help="when RUN is a Gaussian splat file (.ply .splat .spz from any tool): the scene folder "
                           "whose cameras render it (the file is in that scene's world coordinates)")
    mesh.add_argument("--downscale", type=float, default=1.0, help="with --scene: divide its image sizes by this")
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
    cameras = kinds.add_parser("cameras", help="the training cameras (refined with --set pose_refine=on) as a "
                               "COLMAP text model: cameras.txt, images.txt, empty points3D.txt (world coordinates)")
    add_run_argument(cameras)
    cameras.add_argument("-o", "--output", default=None,
                         help="folder for the model (default: RUN/exports/cameras); never inside the scene folder")
    cameras.set_defaults(handler=run_cameras)


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
    from nerfkit.export.splat_files import PLY_FORMATS, SPLAT_SUFFIXES
    from nerfkit.runs.session import open_run, read_run_config

    ply_format = args.format or "standard"
    check_choice("--format", ply_format, PLY_FORMATS)
    default = "splat.compressed.ply" if ply_format == "compressed" else "splat.ply"
    folder, path = _output(args, default, SPLAT_SUFFIXES, "export splat writes Gaussian")
    if args.format is not None and path.suffix.lower() != ".ply":
        raise NerfkitError(f"--format {args.format} chooses a .ply layout; '{path}' is a {path.suffix} file, "
                           f"which has one layout of its own: drop --format or write a .ply")
    if path.suffix.lower() == ".splat" and args.sh_degree not in (None, 0):
        raise NerfkitError(f"--sh-degree {args.sh_degree}: a .splat file holds base colours only; expected "
                           f"--sh-degree 0 or a .ply / .spz output")
    trained_with = read_run_config(folder).train.method          # cheap: refuse before loading
    if trained_with != "splat":
        raise NerfkitError(f"run '{folder.path}' was trained with {trained_with}, which has no Gaussians; "
                           f"export splat needs a run of --method splat")
    _, scene, method, step = open_run(folder)
    exported = export_splat(method, scene)
    result = exported.cleaned(args.min_opacity, args.crop, args.sh_degree)
    if path.suffix.lower() == ".splat":
        result = result.cleaned(sh_degree=0)
    make_parent(path)
    result.write(path, ply_format)
    dropped = exported.count - result.count
    kind = {".splat": ".splat", ".spz": "spz"}.get(path.suffix.lower(), f"{ply_format} .ply")
    print(f"wrote {result.count} Gaussians ({kind}, SH degree {result.sh_degree}, step {step}"
          f"{f', {dropped} dropped by --min-opacity/--crop' if dropped else ''}) in world coordinates to "
          f"{path} ({path.stat().st_size / 2**20:.2f} MiB)")
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
    from_file = _is_splat_file(Path(args.run))
    if from_file:
        path = _splat_mesh_output(args, options)
    else:
        if args.scene is not None:
            raise NerfkitError("--scene is for a splat file; a run folder knows its scene")
        folder, path = _output(args, "mesh.obj" if options.texture else "mesh.ply", MESH_SUFFIXES,
                               "export mesh writes")
    if options.texture and path.suffix.lower() != ".obj":
        raise NerfkitError(f"--texture writes a UV atlas and a .png that only an .obj keeps: expected "
                           f"an .obj output, got '{path}'")
    if from_file:
        scene, method, step = _splat_file_in_scene(args)
    else:
        _, scene, method, step = open_run(folder)
    mesh = export_mesh(method, scene, options, progress=sys.stderr.isatty())
    clock = time.perf_counter()
    make_parent(path)
    paths = mesh.write(path)
    mesh.timings["write"] = time.perf_counter() - clock
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in mesh.timings.items())
    source = f"step {step}" if step is not None else f"{method.n_gaussians:,} Gaussians"
    print(f"wrote {', '.join(str(p) for p in paths)}: {len(mesh.vertices)} vertices, {len(mesh.faces)} "
          f"faces ({source}, {mesh.views} views) in world coordinates in "
          f"{time.perf_counter() - start:.1f} s ({stages})")
    return 0


def _is_splat_file(path: Path) -> bool:
    from nerfkit.export.splat_files import SPLAT_SUFFIXES

    return path.suffix.lower() in SPLAT_SUFFIXES and not path.is_dir()


def _splat_mesh_output(args: argparse.Namespace, options) -> Path:
    """The output of ``export mesh FILE --scene SCENE`` (default: ``FILE-mesh.ply`` beside the file)."""
    from nerfkit.core.errors import NerfkitError
    from nerfkit.export.outputs import check_output

    source = Path(args.run)
    if args.scene is None:
        raise NerfkitError(f"'{source}' is a splat file: give --scene SCENE, the scene folder whose cameras "
                           f"render it (the file is in that scene's world coordinates)")
    default = source.with_name(f"{source.stem}-mesh{'.obj' if options.texture else '.ply'}")
    path = Path(args.output) if args.output is not None else default
    check_output(path, MESH_SUFFIXES, "export mesh writes")
    return path


def _splat_file_in_scene(args: argparse.Namespace):
    """(scene, the file's Gaussians placed in it, None: no training step)."""
    from nerfkit.data.load import load_scene
    from nerfkit.export.splat_scene import load_splat_scene
    from nerfkit.runs.config import resolve_device

    scene = load_scene(Path(args.scene), args.downscale)
    method, _, _ = load_splat_scene(Path(args.run), scene, resolve_device("auto"))
    return scene, method, None


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


def run_cameras(args: argparse.Namespace) -> int:
    from nerfkit.export.cameras import export_cameras
    from nerfkit.export.outputs import check_output_folder
    from nerfkit.runs.folder import RunFolder
    from nerfkit.runs.session import open_run_scene

    folder = RunFolder.find(Path(args.run))
    path = Path(args.output) if args.output is not None else folder.export("cameras")
    check_output_folder(path, "export cameras writes a COLMAP model (cameras.txt, images.txt, points3D.txt) into")
    _, scene, step = open_run_scene(folder)
    check_output_folder(path, "export cameras writes a COLMAP model into", protected=scene.root)
    cameras = export_cameras(scene)
    cameras.write(path)
    what = (f"wrote the {len(cameras)} refined training cameras (step {step})" if cameras.refined else
            f"pose_refine was off for this run: wrote its {len(cameras)} training cameras unrefined, as the scene "
            f"gives them,")
    print(f"{what} as a COLMAP text model in world coordinates to {path} (cameras.txt, images.txt, points3D.txt)")
    return 0

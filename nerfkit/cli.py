"""The ``nerfkit`` command: parse, call, print. User mistakes end in one sentence and exit code 2."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from nerfkit.errors import NerfkitError

DEMO_SECONDS = 120.0   # default training time on the built-in demo scene

TRAIN_FLAGS = {  # flag -> (TrainConfig field, type, help)
    "--method": ("method", str, "ngp (hash-grid NeRF), mipnerf (anti-aliased cones; Mip-NeRF 360 for "
                 "unbounded scenes) or splat (3D Gaussians)"),
    "--max-steps": ("max_steps", int, "stop after this many steps"),
    "--max-time": ("max_time", float, "stop after this many seconds of training"),
    "--output-dir": ("output_dir", str, "root of the run folders (default: outputs)"),
    "--downscale": ("downscale", float, "divide image sizes by this on load (2 = half)"),
    "--split-every": ("split_every", int, "every Nth image is a test image when the scene has no splits"),
    "--scene-kind": ("scene_kind", str, "auto | object | unbounded"),
    "--eval-every": ("eval_every", int, "steps between quick one-image evals (0 = off)"),
    "--checkpoint-every": ("checkpoint_every", int, "steps between checkpoints"),
    "--seed": ("seed", int, "random seed"),
    "--threads": ("threads", int, "CPU threads for torch (0 = all cores)"),
    "--device": ("device", str, "auto (CUDA when available) | cpu | cuda"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nerfkit", description="Photos in, a 3D model out.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="train a method on a scene (default: the demo scene)")
    train.add_argument("scene", nargs="?", default=None,
                       help="scene folder: COLMAP, NeRF-synthetic or transforms.json (none = demo)")
    for flag, (_, kind, text) in TRAIN_FLAGS.items():
        train.add_argument(flag, type=kind, default=None, help=text)
    train.add_argument("--config", default=None, help="preset name from configs/ or a YAML path")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a method or train setting, e.g. --set log2_table_size=19")
    train.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                       help="continue a run from its newest checkpoint (default: the newest run "
                            "of this scene and method)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--viewer", action=argparse.BooleanOptionalAction, default=True,
                       help="serve the live web viewer while training (default: on)")
    _viewer_address(train)

    view = commands.add_parser("view", help="browse a run in the web viewer (until Ctrl-C)")
    view.add_argument("run", help="run folder (or a parent: its newest run)")
    _viewer_address(view)

    evaluate = commands.add_parser("eval", help="PSNR / SSIM of a run on held-out images")
    evaluate.add_argument("run", help="run folder (or a parent: its newest run)")
    evaluate.add_argument("--split", default="test", help="test | val | train")
    evaluate.add_argument("--background", default="white", help="white | black (RGBA scenes)")
    evaluate.add_argument("-o", "--output", default=None, help="JSON file (default: RUN/eval-SPLIT.json; "
                          "RUN/eval-SPLIT-multiscale.json for --scales other than 1)")
    evaluate.add_argument("--scales", default="1", metavar="F,F,..",
                          help="also score at 1/F resolution with F times wider pixels against area-"
                               "downsampled ground truth, e.g. 1,2,4 (Mip-NeRF multiscale; default 1)")

    render = commands.add_parser("render", help="render a run's cameras to images (+ depth), or a camera "
                                 "path to an .mp4 video")
    render.add_argument("run", help="run folder (or a parent: its newest run)")
    render.add_argument("--split", default="test", help="test | val | train")
    render.add_argument("--background", default="white", help="white | black (RGBA scenes)")
    render.add_argument("-o", "--output", required=True, help="folder for the images, or a .mp4 video")
    from nerfkit.render_video import add_video_arguments
    add_video_arguments(render)

    proc = commands.add_parser("process", help="photos (a folder) or a video -> a posed COLMAP scene")
    proc.add_argument("input", help="folder of images or a video file (never modified)")
    proc.add_argument("output", help="scene folder to write (images/, sparse/0/, process.json)")
    proc.add_argument("--matcher", default="auto", help="auto | exhaustive | sequential (auto: exhaustive for "
                      "photos up to 200, sequential for video)")
    proc.add_argument("--camera-model", default="SIMPLE_RADIAL",
                      help="SIMPLE_PINHOLE | PINHOLE | SIMPLE_RADIAL | RADIAL | OPENCV")
    proc.add_argument("--per-image-camera", action="store_true", help="intrinsics per image (default: shared)")
    proc.add_argument("--undistort", action="store_true", help="write undistorted PINHOLE images and model")
    proc.add_argument("--downscale", type=int, action="append", default=[], metavar="F",
                      help="also write images_F/ downscaled by F (repeatable)")
    proc.add_argument("--video-frames", type=int, default=150, help="frames kept from a video (default 150)")
    proc.add_argument("--min-registered", type=float, default=0.5,
                      help="fail when fewer than this fraction of images register (default 0.5)")
    proc.add_argument("--overwrite", action="store_true", help="replace an earlier result in OUTPUT")

    export = commands.add_parser("export", help="write a run's result to a file other tools open")
    exports = export.add_subparsers(required=True)       # each kind sets its own `exporter`
    splat = _export_kind(exports, "splat", "a splat run's Gaussians as a 3DGS .ply (world coordinates)",
                         ".ply file", "splat.ply")
    splat.set_defaults(exporter=_export_splat)
    mesh = _export_kind(exports, "mesh", "any run's surface as a coloured .ply/.obj mesh (TSDF of rendered "
                        "depth, world coordinates)", ".ply or .obj file", "mesh.ply")
    mesh.add_argument("--resolution", type=int, default=256, help="TSDF voxels along the box's longest side")
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
    mesh.set_defaults(exporter=_export_mesh)
    cloud = _export_kind(exports, "pointcloud", "points on the rendered depth of the training views as a "
                         "coloured .ply (world coordinates)", ".ply file", "pointcloud.ply")
    cloud.add_argument("--max-points", type=int, default=1_000_000, help="keep at most this many points")
    cloud.set_defaults(exporter=_export_pointcloud)
    return parser


def _viewer_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8080, help="viewer port (default 8080; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="viewer address to listen on (default 127.0.0.1; 0.0.0.0: all networks)")


def _export_kind(exports: Any, kind: str, help_text: str, output_text: str, default_name: str
                 ) -> argparse.ArgumentParser:
    """One ``nerfkit export KIND RUN [-o FILE]`` sub-command."""
    parser = exports.add_parser(kind, help=help_text)
    parser.add_argument("run", help="run folder (or a parent: its newest run)")
    parser.add_argument("-o", "--output", default=None, help=f"{output_text} (default: RUN/exports/{default_name})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    commands = {"train": _train, "eval": _eval, "render": _render, "export": _export, "process": _process,
                "view": _view}
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return commands[args.command](args)
        except NerfkitError as error:
            print(f"nerfkit: error: {_one_line(error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        except RuntimeError as error:                   # torch.OutOfMemoryError included
            from nerfkit.train_guard import is_out_of_memory

            if not is_out_of_memory(error):
                raise
            print(f"nerfkit: error: 'nerfkit {args.command}' ran out of memory ({_one_line(error)[:120]}): "
                  f"close other programs, or ask for less (a smaller --resolution or --max-views for "
                  f"export mesh, --downscale for the scene)", file=sys.stderr)
            return 2


def _one_line(error: BaseException | Warning | str) -> str:
    return str(error).replace("\r", "\\r").replace("\n", "\\n")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``nerfkit: warning:`` line each (no source line, no file name)."""
    print(f"nerfkit: warning: {_one_line(message)}", file=sys.stderr)


def _settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Preset, then flags, then --set, as ``{train: {...}, method: {...}}``."""
    from nerfkit.config import TrainConfig, load_preset, method_config_class

    values = load_preset(args.config) if args.config else {"train": {}, "method": {}}
    for flag, (name, _, _) in TRAIN_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            values["train"][name] = value
    if args.scene is not None:
        values["train"]["scene"] = args.scene
    elif "max_time" not in values["train"] and "max_steps" not in values["train"]:
        values["train"]["max_time"] = DEMO_SECONDS          # the demo finishes in a few minutes
    train_fields = set(TrainConfig.__dataclass_fields__)
    method_name = values["train"].get("method", TrainConfig.method)
    method_fields = set(method_config_class(method_name).__dataclass_fields__)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise NerfkitError(f"--set expects KEY=VALUE, got '{item}'")
        if key in method_fields:
            values["method"][key] = value
        elif key in train_fields:
            values["train"][key] = value
        else:
            raise NerfkitError(f"--set: unknown setting '{key}'; see 'nerfkit train --help' and "
                               f"the fields of the method's config")
    return values


def _validate(config: Any) -> None:
    train = config.train
    checks = [
        (train.max_steps >= 1, f"--max-steps must be at least 1, got {train.max_steps}"),
        (train.max_time >= 0, f"--max-time must be >= 0 seconds, got {train.max_time}"),
        (train.checkpoint_every >= 1, f"--checkpoint-every must be at least 1, got {train.checkpoint_every}"),
        (train.eval_every >= 0, f"--eval-every must be >= 0, got {train.eval_every}"),
        (train.threads >= 0, f"--threads must be >= 0, got {train.threads}"),
        (train.eval_background in ("white", "black"),
         f"eval background must be white or black, got '{train.eval_background}'"),
    ]
    for ok, message in checks:
        if not ok:
            raise NerfkitError(message)


def _train(args: argparse.Namespace) -> int:
    from nerfkit.config import RunConfig
    from nerfkit.pipeline import resume_run, scene_path, start_run
    from nerfkit.serve import check_address, training_viewer

    started = time.perf_counter()
    if args.viewer:
        check_address(args.host, args.port)
    if args.resume is not None:
        if args.resume:
            target = Path(args.resume)
        else:
            config = RunConfig.from_dict(_settings(args), "command line")
            scene = scene_path(config)          # the demo scene when none is given
            target = Path(config.train.output_dir) / scene.resolve().name / config.train.method
        trainer = resume_run(target)
        for flag in ("max_steps", "max_time"):     # a resumed run may be given a new limit
            if getattr(args, flag) is not None:
                setattr(trainer.config.train, flag, getattr(args, flag))
    else:
        config = RunConfig.from_dict(_settings(args), "command line")
        _validate(config)
        trainer = start_run(config)
    try:
        with training_viewer(trainer, args.viewer, args.host, args.port):
            metrics = trainer.train(progress_bar=not args.no_progress)
    except KeyboardInterrupt:
        print(f"nerfkit: interrupted; resume with: nerfkit train --resume {trainer.run_dir}", file=sys.stderr)
        return 130
    gaussians = f", {metrics['gaussians']:,} Gaussians" if "gaussians" in metrics else ""
    print(f"trained {metrics['steps']} steps in {metrics['train_seconds']:.0f} s "
          f"({metrics['rays_per_second']:,.0f} rays/s{gaussians}); test PSNR {metrics['psnr']:.2f} dB, "
          f"SSIM {metrics['ssim']:.4f} on {metrics['test_images']} images "
          f"({time.perf_counter() - started:.0f} s in all)")
    print(f"results: {trainer.run_dir} (metrics.json, renders/test/, checkpoints/)")
    print(f"view it: nerfkit view {trainer.run_dir}")
    return 0


def _view(args: argparse.Namespace) -> int:
    from nerfkit.serve import view_run

    return view_run(Path(args.run), args.host, args.port)


def _eval(args: argparse.Namespace) -> int:
    from nerfkit.evaluate import evaluate_split
    from nerfkit.pipeline import open_run
    from nerfkit.runs import resolve_run, write_json_atomic

    _check_choice("--background", args.background, ("white", "black"))
    _check_choice("--split", args.split, ("test", "val", "train"))
    scales = _parse_scales(args.scales)
    run_dir = resolve_run(Path(args.run))
    config, scene, method, step = open_run(run_dir)
    if scales != [1]:
        return _eval_multiscale(args, run_dir, scene, method, step, scales)
    result = evaluate_split(method, scene, args.split, args.background)
    result.pop("scale")                      # the single-scale JSON keeps its original keys
    result.update(step=step, run=str(run_dir))
    output = Path(args.output) if args.output else run_dir / f"eval-{args.split}.json"
    write_json_atomic(output, result)
    print(f"{args.split}: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} over "
          f"{len(result['images'])} images at step {step} -> {output}")
    return 0


def _parse_scales(text: str) -> list[int]:
    """``--scales`` ("1,2,4") -> [1, 2, 4]: positive integers, duplicates dropped keeping order."""
    items = [item.strip() for item in text.split(",")]
    if not all(item.isascii() and item.isdigit() and int(item) > 0 for item in items):   # "", "a", "-2", "3.5", "0"
        raise NerfkitError(f"--scales expects a comma-separated list of positive integers such as "
                           f"1,2,4, got '{text}'")
    return list(dict.fromkeys(int(item) for item in items))


def _check_scales_fit(scales: list[int], sizes: Any, split: str) -> None:
    """Each scale must leave the split's smallest image (``sizes`` (N, 2) width, height) at least
    one pixel, and as large as the SSIM window."""
    from nerfkit.metrics import SSIM_WINDOW

    if len(sizes) == 0:
        return
    smallest = int(sizes.min())
    for scale in scales:
        if scale > smallest:
            raise NerfkitError(f"--scales {scale} is larger than the smallest {split} image dimension "
                               f"({smallest} px): expected at most {smallest}")
        if smallest // scale < SSIM_WINDOW:
            raise NerfkitError(f"--scales {scale} shrinks the smallest {split} image dimension to "
                               f"{smallest // scale} px, below the {SSIM_WINDOW} px SSIM window: expected "
                               f"at most {smallest // SSIM_WINDOW}")


def _eval_multiscale(args: argparse.Namespace, run_dir: Path, scene: Any, method: Any, step: int,
                     scales: list[int]) -> int:
    """``nerfkit eval --scales F,..``: one evaluation per scale, one JSON, one printed line each."""
    from nerfkit.evaluate import evaluate_split
    from nerfkit.runs import write_json_atomic

    sizes = scene.cameras.sizes[scene.split(args.split)]
    _check_scales_fit(scales, sizes, args.split)
    results = {str(f): evaluate_split(method, scene, args.split, args.background, scale=f) for f in scales}
    summary = {"run": str(run_dir), "step": step, "split": args.split, "background": args.background,
               "scales": results, "psnr": {f: r["psnr"] for f, r in results.items()},
               "ssim": {f: r["ssim"] for f, r in results.items()}}
    output = Path(args.output) if args.output else run_dir / f"eval-{args.split}-multiscale.json"
    write_json_atomic(output, summary)
    for f, result in results.items():
        width, height = (int(v) for v in sizes.max(0).values // int(f))
        size = f"{width}x{height}" if len(sizes.unique(dim=0)) == 1 else f"up to {width}x{height}"
        print(f"{args.split} x{f}: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} "
              f"({size}, {len(result['images'])} images)")
    print(output)
    return 0


def _render(args: argparse.Namespace) -> int:
    from nerfkit.evaluate import evaluate_split
    from nerfkit.pipeline import open_run
    from nerfkit.render_video import render_video_command, wants_video

    _check_choice("--background", args.background, ("white", "black"))
    if wants_video(args):
        return render_video_command(args)
    _check_choice("--split", args.split, ("test", "val", "train"))
    config, scene, method, step = open_run(Path(args.run))
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise NerfkitError(f"-o '{output}' is a file: expected a folder for the images")
    result = evaluate_split(method, scene, args.split, args.background, out_dir=output)
    print(f"rendered {len(result['images'])} {args.split} images (rgb, colour-mapped depth, ground "
          f"truth) to {output}; PSNR {result['psnr']:.2f} dB")
    return 0


def _process(args: argparse.Namespace) -> int:
    from nerfkit.process import ProcessOptions, process

    options = ProcessOptions(matcher=args.matcher, camera_model=args.camera_model,
                             single_camera=not args.per_image_camera, undistort=args.undistort,
                             downscales=tuple(args.downscale), video_frames=args.video_frames,
                             min_registered=args.min_registered, overwrite=args.overwrite)
    process(Path(args.input), Path(args.output), options)
    print(f"scene ready: nerfkit train {args.output}")
    return 0


def _export(args: argparse.Namespace) -> int:
    return args.exporter(args)


def _export_splat(args: argparse.Namespace) -> int:
    from nerfkit.export.splat_export import export_splat

    result = export_splat(Path(args.run), Path(args.output) if args.output else None)
    print(f"wrote {result.count} Gaussians (SH degree {result.sh_degree}, step {result.step}) "
          f"in world coordinates to {result.path}")
    return 0


def _export_mesh(args: argparse.Namespace) -> int:
    from nerfkit.export.mesh_export import MeshOptions, export_mesh

    options = MeshOptions(resolution=args.resolution, views=args.views, max_views=args.max_views,
                          min_component=args.min_component, crop=args.crop, faces=args.faces,
                          texture=args.texture, texture_size=args.texture_size,
                          fill_holes=args.fill_holes)
    result = export_mesh(Path(args.run), Path(args.output) if args.output else None, options,
                         progress=sys.stderr.isatty())
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.timings.items())
    print(f"wrote {', '.join(str(p) for p in result.paths)}: {result.vertices} vertices, {result.faces} "
          f"faces (step {result.step}, {result.views} views) in world coordinates in "
          f"{result.seconds:.1f} s ({stages})")
    return 0


def _export_pointcloud(args: argparse.Namespace) -> int:
    from nerfkit.export.mesh_export import export_pointcloud

    result = export_pointcloud(Path(args.run), Path(args.output) if args.output else None,
                               max_points=args.max_points)
    print(f"wrote {result.path}: {result.vertices} points (step {result.step}, {result.views} views) "
          f"in world coordinates in {result.seconds:.1f} s")
    return 0


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise NerfkitError(f"{flag} must be one of {', '.join(choices)}, got '{value}'")


if __name__ == "__main__":
    sys.exit(main())

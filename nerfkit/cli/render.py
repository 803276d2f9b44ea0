"""``nerfkit render RUN -o DIR``: a split's renders as PNGs; ``nerfkit render RUN -o video.mp4
[--path PATH.json|orbit]``: a camera path (the built-in orbit by default) as an H.264 video."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from nerfkit.cli.common import add_run_argument, check_choice
from nerfkit.core.errors import NerfkitError
from nerfkit.video import ORBIT_FPS, ORBIT_FRAMES
from nerfkit.video.writer import VIDEO_SUFFIX

if TYPE_CHECKING:
    from nerfkit.data.scene import Scene
    from nerfkit.video.camera_path import CameraPath

ORBIT = "orbit"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("render", help="render a run's cameras to images (+ depth), or a camera "
                                 "path to an .mp4 video")
    add_run_argument(parser)
    parser.add_argument("--split", default="test", help="test | val | train")
    parser.add_argument("--background", default="white", help="white | black (RGBA scenes)")
    parser.add_argument("-o", "--output", required=True, help="folder for the images, or a .mp4 video")
    _add_video_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nerfkit.runs.evaluate import evaluate_split
    from nerfkit.runs.session import open_run

    check_choice("--background", args.background, ("white", "black"))
    if _wants_video(args):
        return _render_video(args)
    check_choice("--split", args.split, ("test", "val", "train"))
    _, scene, method, step = open_run(Path(args.run))
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise NerfkitError(f"-o '{output}' is a file: expected a folder for the images")
    result = evaluate_split(method, scene, args.split, args.background, out_dir=output)
    print(f"rendered {len(result['images'])} {args.split} images (rgb, colour-mapped depth, ground "
          f"truth) to {output}; PSNR {result['psnr']:.2f} dB")
    return 0


def _add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The video flags of ``nerfkit render`` (``-o`` and ``--background`` are shared)."""
    parser.add_argument("--path", default=None, metavar="PATH.json|orbit",
                        help="camera path file to render as a video, or 'orbit' (the default when "
                             "-o ends in .mp4)")
    parser.add_argument("--fps", type=int, default=None, help="video frames per second (default: the "
                        f"path's; orbit {ORBIT_FPS})")
    parser.add_argument("--seconds", type=float, default=None,
                        help="video length (default: the path's; orbit: frames / fps)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames of one orbit turn (default {ORBIT_FRAMES}; orbit only)")
    parser.add_argument("--width", type=int, default=None, help="video width in pixels (default: the "
                        "path's; orbit: the training cameras'; only one of width/height keeps the aspect)")
    parser.add_argument("--height", type=int, default=None, help="video height in pixels")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _wants_video(args: argparse.Namespace) -> bool:
    """``nerfkit render`` writes a video when ``--path`` is given or ``-o`` ends in .mp4."""
    return args.path is not None or Path(args.output).suffix.lower() == VIDEO_SUFFIX


def _render_video(args: argparse.Namespace) -> int:
    """``nerfkit render RUN [--path PATH.json|orbit] -o VIDEO.mp4 [...]``: check, render, print."""
    from nerfkit.runs.session import open_run
    from nerfkit.video.camera_path import MAX_FRAMES, load_camera_path
    from nerfkit.video.writer import even_size, render_path_video

    output = Path(args.output)
    if output.suffix.lower() != VIDEO_SUFFIX:
        raise NerfkitError(f"-o '{output}' must be an {VIDEO_SUFFIX} file when --path is given")
    if output.is_dir():
        raise NerfkitError(f"-o '{output}' is a folder: expected an {VIDEO_SUFFIX} file to write")
    _check_numbers(args)
    spec = args.path if args.path is not None else ORBIT
    loaded = None
    if spec != ORBIT:                             # fail on a bad file before loading the run
        if args.frames is not None:
            raise NerfkitError("--frames applies to the orbit only: use --fps and --seconds with a "
                               "camera path file")
        loaded = load_camera_path(Path(spec))
    if spec == ORBIT and args.frames is not None and args.seconds is not None:
        raise NerfkitError("give --frames or --seconds for an orbit, not both")
    _, scene, method, step = open_run(Path(args.run))
    camera_path = _orbit(scene, args) if loaded is None else _overridden(loaded, args)
    if camera_path.frame_count > MAX_FRAMES:
        raise NerfkitError(f"--fps x --seconds asks for {camera_path.frame_count} frames, expected at "
                           f"most {MAX_FRAMES}")
    render_path_video(method, scene, camera_path, output, args.background, not args.no_progress)
    width, height = even_size(camera_path.width, camera_path.height)
    source = "orbit" if loaded is None else f"'{spec}'"
    print(f"rendered {camera_path.frame_count} frames ({width}x{height}, {camera_path.fps} fps, "
          f"{camera_path.frame_count / camera_path.fps:.1f} s) of the {source} path at step {step} "
          f"to {output}")
    return 0


def _check_numbers(args: argparse.Namespace) -> None:
    checks = [("--fps", args.fps, lambda v: 1 <= v <= 240, "an integer from 1 to 240"),
              ("--seconds", args.seconds, lambda v: v > 0 and math.isfinite(v), "a positive number"),
              ("--frames", args.frames, lambda v: v >= 1, "at least 1"),
              ("--width", args.width, lambda v: 2 <= v <= 16384, "from 2 to 16384 pixels"),
              ("--height", args.height, lambda v: 2 <= v <= 16384, "from 2 to 16384 pixels")]
    for flag, value, ok, expected in checks:
        if value is not None and not ok(value):
            raise NerfkitError(f"{flag} must be {expected}, got {value}")


def _orbit(scene: Scene, args: argparse.Namespace) -> CameraPath:
    from nerfkit.video.camera_path import orbit_path

    fps = args.fps or ORBIT_FPS
    frames = args.frames
    if frames is None:
        frames = max(round(fps * args.seconds), 1) if args.seconds is not None else ORBIT_FRAMES
    return orbit_path(scene, frames=frames, fps=fps, width=args.width, height=args.height)


def _overridden(camera_path: CameraPath, args: argparse.Namespace) -> CameraPath:
    """The path with the --fps / --seconds / --width / --height overrides applied."""
    from nerfkit.video.camera_path import CameraPath

    width, height = camera_path.width, camera_path.height
    if args.width is not None and args.height is None:
        height = max(round(args.width * height / width), 1)
    elif args.height is not None and args.width is None:
        width = max(round(args.height * width / height), 1)
    return CameraPath(camera_path.keyframes, args.width or width, args.height or height,
                      args.fps or camera_path.fps,
                      args.seconds if args.seconds is not None else camera_path.seconds,
                      camera_path.loop)

"""Rendering a camera path to an H.264 .mp4, and the video half of ``nerfkit render``.

``nerfkit render RUN -o video.mp4`` renders the built-in orbit; ``--path path.json`` a saved
:class:`~nerfkit.camera_path.CameraPath` (format in :mod:`nerfkit.camera_path`). The video is
H.264 in yuv420p, so its width and height are even: an odd size from a path is rounded up by one
pixel (same vertical field of view).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from nerfkit.errors import NerfkitError
from nerfkit.runs import atomic_path

if TYPE_CHECKING:         # torch, scipy and the methods load on use: `nerfkit --help` stays quick
    from torch import Tensor

    from nerfkit.camera_path import CameraPath
    from nerfkit.data.scene import Scene
    from nerfkit.methods.base import Method

VIDEO_SUFFIX = ".mp4"
ORBIT_FRAMES = 120        # nerfkit.camera_path.ORBIT_FRAMES (a test keeps them equal)
ORBIT = "orbit"
DEFAULT_FPS = 30
MAX_FRAMES = 100_000
CRF = "18"                   # x264 constant rate factor: visually lossless for renders


def even_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` rounded up to even numbers (yuv420p halves both for colour)."""
    return width + width % 2, height + height % 2


def render_path_video(method: Method, scene: Scene, camera_path: CameraPath, output: Path,
                      background: str | Tensor = "white", progress: bool = True) -> Path:
    """Render every frame of ``camera_path`` and write them as an H.264 .mp4.

    Args:
        method: a trained method; ``method.render(camera, background)["rgb"]`` is (H, W, 3) in [0, 1].
        scene: its scene (``world_to_scene`` moves the world path into the method's coordinates).
        camera_path: the path, in world coordinates.
        output: the .mp4 to write; written to a temp file in the same folder, then renamed, so an
            interrupted render never leaves a broken file under this name.
        background: ``"white"`` | ``"black"`` or a (3,) colour in [0, 1] behind transparent content.
        progress: show a progress bar on stderr.
    Returns:
        ``output``. The video has ``camera_path.frame_count`` frames of :func:`even_size` pixels at
        ``camera_path.fps``.
    """
    import imageio_ffmpeg
    from tqdm import tqdm

    from nerfkit.camera_path import interpolate_path, path_cameras
    from nerfkit.methods.base import inference

    output = Path(output)
    if output.suffix.lower() != VIDEO_SUFFIX:
        raise NerfkitError(f"video output '{output}' must end in {VIDEO_SUFFIX}")
    colour = _background(background)
    width, height = even_size(camera_path.width, camera_path.height)
    frames = interpolate_path(camera_path)
    cameras = path_cameras(frames, scene.world_to_scene, width, height)
    with atomic_path(output, suffix=VIDEO_SUFFIX) as temp:
        writer = imageio_ffmpeg.write_frames(
            str(temp), (width, height), fps=camera_path.fps, codec="libx264", pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p", quality=None, macro_block_size=2, ffmpeg_log_level="error",
            output_params=["-crf", CRF, "-movflags", "+faststart"])
        try:
            writer.send(None)                                # starts ffmpeg
            with inference(method):
                for index in tqdm(range(len(cameras)), desc="render", unit="frame", disable=not progress):
                    rgb = method.render(cameras[index], colour)["rgb"]
                    writer.send(_to_bytes(rgb, width, height))
        finally:
            writer.close()
    return output


def _background(background: str | Tensor) -> Tensor:
    import torch

    if isinstance(background, str):
        from nerfkit.data.sampler import background_color

        if background not in ("white", "black"):
            raise NerfkitError(f"--background must be one of white, black, got '{background}'")
        return background_color(background, 1)[0]
    return torch.as_tensor(background, dtype=torch.float32).reshape(3)


def _to_bytes(rgb: Tensor, width: int, height: int) -> bytes:
    """(H, W, 3) float in [0, 1] -> contiguous rgb24 bytes of exactly (height, width)."""
    import numpy as np
    import torch

    image = (rgb.detach().float().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    if image.shape != (height, width, 3):
        raise RuntimeError(f"the method rendered {image.shape}, expected {(height, width, 3)}")
    return np.ascontiguousarray(image).tobytes()


# ----------------------------------------------------------------------------------- the CLI


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The video flags of ``nerfkit render`` (``-o`` and ``--background`` are shared)."""
    parser.add_argument("--path", default=None, metavar="PATH.json|orbit",
                        help="camera path file to render as a video, or 'orbit' (the default when "
                             "-o ends in .mp4)")
    parser.add_argument("--fps", type=int, default=None, help="video frames per second (default: the "
                        f"path's; orbit {DEFAULT_FPS})")
    parser.add_argument("--seconds", type=float, default=None,
                        help="video length (default: the path's; orbit: frames / fps)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames of one orbit turn (default {ORBIT_FRAMES}; orbit only)")
    parser.add_argument("--width", type=int, default=None, help="video width in pixels (default: the "
                        "path's; orbit: the training cameras'; only one of width/height keeps the aspect)")
    parser.add_argument("--height", type=int, default=None, help="video height in pixels")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def wants_video(args: argparse.Namespace) -> bool:
    """``nerfkit render`` writes a video when ``--path`` is given or ``-o`` ends in .mp4."""
    return args.path is not None or Path(args.output).suffix.lower() == VIDEO_SUFFIX


def render_video_command(args: argparse.Namespace) -> int:
    """``nerfkit render RUN [--path PATH.json|orbit] -o VIDEO.mp4 [...]``: check, render, print."""
    from nerfkit.camera_path import load_camera_path
    from nerfkit.pipeline import open_run

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
    from nerfkit.camera_path import orbit_path

    fps = args.fps or DEFAULT_FPS
    frames = args.frames
    if frames is None:
        frames = max(round(fps * args.seconds), 1) if args.seconds is not None else ORBIT_FRAMES
    return orbit_path(scene, frames=frames, fps=fps, width=args.width, height=args.height)


def _overridden(camera_path: CameraPath, args: argparse.Namespace) -> CameraPath:
    """The path with the --fps / --seconds / --width / --height overrides applied."""
    from nerfkit.camera_path import CameraPath

    width, height = camera_path.width, camera_path.height
    if args.width is not None and args.height is None:
        height = max(round(args.width * height / width), 1)
    elif args.height is not None and args.width is None:
        width = max(round(args.height * width / height), 1)
    return CameraPath(camera_path.keyframes, args.width or width, args.height or height,
                      args.fps or camera_path.fps,
                      args.seconds if args.seconds is not None else camera_path.seconds,
                      camera_path.loop)

"""``nerfkit process INPUT OUT``: photos (a folder) or a video -> a posed COLMAP scene."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("process", help="photos (a folder) or a video -> a posed COLMAP scene")
    parser.add_argument("input", help="folder of images or a video file (never modified)")
    parser.add_argument("output", help="scene folder to write (images/, sparse/0/, process.json)")
    parser.add_argument("--matcher", default="auto", help="auto | exhaustive | sequential (auto: exhaustive "
                        "for photos up to 200, sequential for video)")
    parser.add_argument("--camera-model", default="SIMPLE_RADIAL",
                        help="SIMPLE_PINHOLE | PINHOLE | SIMPLE_RADIAL | RADIAL | OPENCV")
    parser.add_argument("--per-image-camera", action="store_true", help="intrinsics per image (default: shared)")
    parser.add_argument("--undistort", action="store_true", help="write undistorted PINHOLE images and model")
    parser.add_argument("--downscale", type=int, action="append", default=[], metavar="F",
                        help="also write images_F/ downscaled by F (repeatable)")
    parser.add_argument("--video-frames", type=int, default=150, help="frames kept from a video (default 150)")
    parser.add_argument("--min-registered", type=float, default=0.5,
                        help="fail when fewer than this fraction of images register (default 0.5)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for COLMAP (default 0: all cores; 1: slower, the same result every run)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier result in OUTPUT")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nerfkit.ingest.process import ProcessOptions, process

    options = ProcessOptions(matcher=args.matcher, camera_model=args.camera_model,
                             single_camera=not args.per_image_camera, undistort=args.undistort,
                             downscales=tuple(args.downscale), video_frames=args.video_frames,
                             min_registered=args.min_registered, threads=args.threads,
                             overwrite=args.overwrite)
    process(Path(args.input), Path(args.output), options, log=print)
    print(f"scene ready: nerfkit train {args.output}")
    return 0

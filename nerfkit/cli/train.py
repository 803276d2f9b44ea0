"""``nerfkit train [SCENE]``: train a method on a scene (the built-in demo without one)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nerfkit.cli.common import add_viewer_address, viewer_token

TRAIN_FLAGS = {  # flag -> (TrainConfig setting, type, help)
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
    "--logger": ("logger", str, "training logs in RUN/logs/: tensorboard | jsonl | none (default: "
                 "tensorboard when installed, else jsonl)"),
}


def add_parser(commands: argparse._SubParsersAction) -> None:
    from nerfkit.methods.registry import methods_help

    parser = commands.add_parser("train", help="train a method on a scene (default: the demo scene)")
    parser.add_argument("scene", nargs="?", default=None,
                        help="scene folder: COLMAP, NeRF-synthetic or transforms.json (none = demo)")
    parser.add_argument("--method", default=None, help=methods_help())
    for flag, (_, kind, text) in TRAIN_FLAGS.items():
        parser.add_argument(flag, type=kind, default=None, help=text)
    parser.add_argument("--config", default=None, help="preset name from configs/ or a YAML path")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a method or train setting, e.g. --set log2_table_size=19")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                        help="continue a run from its newest checkpoint (default: the newest run "
                             "of this scene and method)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--viewer", action=argparse.BooleanOptionalAction, default=True,
                        help="serve the live web viewer while training (default: on)")
    add_viewer_address(parser)
    parser.set_defaults(handler=run)


def _flag_values(args: argparse.Namespace) -> dict:
    """The trainer settings given as flags (and the scene)."""
    values = {name: getattr(args, flag[2:].replace("-", "_")) for flag, (name, _, _) in TRAIN_FLAGS.items()}
    values = {name: value for name, value in values.items() if value is not None}
    if args.method is not None:
        values["method"] = args.method
    if args.scene is not None:
        values["scene"] = args.scene
    return values


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nerfkit.app.serve import check_address, training_viewer
    from nerfkit.runs.config import merge_settings
    from nerfkit.runs.session import resume_run, scene_path, start_run

    started = time.perf_counter()
    log = tqdm.write                                 # prints above a running progress bar
    token = None
    if args.viewer:
        check_address(args.host, args.port)
        token = viewer_token(args)
    if args.resume is not None:
        if args.resume:
            target = Path(args.resume)
        else:
            config = merge_settings(args.config, _flag_values(args), args.set)
            scene = scene_path(config, log)          # the demo scene when none is given
            target = Path(config.train.output_dir) / scene.resolve().name / config.train.method
        trainer = resume_run(target, log)
        for flag in ("max_steps", "max_time"):     # a resumed run may be given a new limit
            if getattr(args, flag) is not None:
                setattr(trainer.config.train, flag, getattr(args, flag))
    else:
        trainer = start_run(merge_settings(args.config, _flag_values(args), args.set), log)
    try:
        with training_viewer(trainer, args.viewer, args.host, args.port, token) as server:
            if server is not None:
                print(f"viewer: {server.url} (training goes on whether or not a browser is open)", flush=True)
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

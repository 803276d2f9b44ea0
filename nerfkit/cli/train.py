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
    "--masks": ("masks", str, "the scene's masks/ (0 = this pixel does not count): auto (default: ignore when "
                "the scene has masks) | ignore (never trained on nor scored) | alpha (they become the images' "
                "alpha channel: an object on a transparent background) | off"),
    "--triangulate": ("triangulate", str, "a scene with poses but no sparse points gets points triangulated "
                      "from its photos (once, cached outside the scene), splat's start: auto (default) | off"),
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
    parser.add_argument("--nproc", type=int, default=None, metavar="N",
                        help="train with N processes (one per GPU, or CPU processes sharing the cores) "
                             "through torch.distributed; torchrun --nproc-per-node N -m nerfkit train "
                             "... starts them the same way, also across machines")
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
    from nerfkit.core.errors import NerfkitError
    from nerfkit.runs.distributed import process_place

    place = process_place()                          # set by torchrun or by --nproc's launcher
    if args.nproc is not None and args.nproc < 1:
        raise NerfkitError(f"--nproc must be at least 1, got {args.nproc}")
    if place is not None and args.nproc is not None:
        raise NerfkitError("--nproc starts the processes itself; this process was started by a launcher "
                           f"(torchrun) as {place.rank} of {place.world_size}: leave --nproc out "
                           "(torchrun --nproc-per-node sets the count)")
    if place is not None and place.world_size > 1:
        return _run_as_process(args, place)
    if args.nproc is not None and args.nproc > 1:
        return _launch(args, args.nproc)
    return _run_alone(args)


def _open_trainer(args: argparse.Namespace, log, processes=None):
    """Start the run the flags describe, or resume the one ``--resume`` names."""
    from nerfkit.runs.session import resume_run, start_run

    if args.resume is None:
        return start_run(_config(args), log, processes)
    trainer = resume_run(_resume_target(args, log), log, processes)
    for flag in ("max_steps", "max_time"):         # a resumed run may be given a new limit
        if getattr(args, flag) is not None:
            setattr(trainer.config.train, flag, getattr(args, flag))
    return trainer


def _config(args: argparse.Namespace):
    from nerfkit.runs.config import merge_settings

    return merge_settings(args.config, _flag_values(args), args.set)


def _resume_target(args: argparse.Namespace, log) -> Path:
    """The run ``--resume`` names: its value, or the newest run of this scene and method."""
    from nerfkit.runs.session import scene_path

    if args.resume:
        return Path(args.resume)
    config = _config(args)
    scene = scene_path(config, log)                  # the demo scene when none is given
    return Path(config.train.output_dir) / scene.resolve().name / config.train.method


def _run_alone(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nerfkit.app.serve import check_address

    started = time.perf_counter()
    log = tqdm.write                                 # prints above a running progress bar
    token = None
    if args.viewer:
        check_address(args.host, args.port)
        token = viewer_token(args)
    trainer = _open_trainer(args, log)
    return _train(trainer, args, started, resume_flags="", token=token)


def _train(trainer, args: argparse.Namespace, started: float, resume_flags: str, token: str | None = None) -> int:
    """Train with the live viewer (when asked, behind ``token``), then print the results (the main process)."""
    from nerfkit.app.serve import training_viewer

    try:
        with training_viewer(trainer, args.viewer, args.host, args.port, token) as server:
            if server is not None:
                print(f"viewer: {server.url} (training goes on whether or not a browser is open)", flush=True)
            metrics = trainer.train(progress_bar=not args.no_progress)
    except KeyboardInterrupt:
        print(f"nerfkit: interrupted; resume with: nerfkit train --resume {trainer.run_dir}{resume_flags}",
              file=sys.stderr)
        return 130
    gaussians = f", {metrics['gaussians']:,} Gaussians" if "gaussians" in metrics else ""
    processes = f" on {metrics['processes']} processes" if "processes" in metrics else ""
    print(f"trained {metrics['steps']} steps in {metrics['train_seconds']:.0f} s{processes} "
          f"({metrics['rays_per_second']:,.0f} rays/s{gaussians}); test PSNR {metrics['psnr']:.2f} dB, "
          f"SSIM {metrics['ssim']:.4f} on {metrics['test_images']} images "
          f"({time.perf_counter() - started:.0f} s in all)")
    print(f"results: {trainer.run_dir} (metrics.json, renders/test/, checkpoints/)")
    print(f"view it: nerfkit view {trainer.run_dir}")
    return 0


def _run_as_process(args: argparse.Namespace, place) -> int:
    """One of the processes of a multi-process run: the main one (rank 0) prints, writes and serves
    the viewer; the others train quietly and leave the reporting of a shared stop to it."""
    from tqdm import tqdm

    from nerfkit.app.serve import check_address
    from nerfkit.core.errors import NerfkitError
    from nerfkit.runs.distributed import connect, disconnect, open_trainer
    from nerfkit.runs.parallel import StoppedTogether

    started = time.perf_counter()
    main = place.rank == 0
    token = None
    if main and args.viewer:
        check_address(args.host, args.port)
        token = viewer_token(args)
    processes = connect(place, args.device or "auto")
    try:
        log = tqdm.write if main else None
        trainer = open_trainer(processes, lambda: _open_trainer(args, log, processes))
        if main:
            return _train(trainer, args, started, resume_flags=f" --nproc {place.world_size}", token=token)
        try:
            trainer.train(progress_bar=False)
        except KeyboardInterrupt:
            return 130
        return 0
    except StoppedTogether:
        if main:
            raise
        return 2                                     # the main process reports why
    except NerfkitError as error:
        if main:
            raise
        raise NerfkitError(f"process {place.rank} of {place.world_size}: {error}") from None
    finally:
        disconnect()


def _launch(args: argparse.Namespace, nproc: int) -> int:
    """``--nproc N``: check what can be checked here, then run N processes of this command."""
    from nerfkit.app.serve import check_address
    from nerfkit.runs.config import resolve_device
    from nerfkit.runs.distributed import check_process_count
    from nerfkit.runs.folder import RunFolder
    from nerfkit.runs.launch import run_processes
    from nerfkit.runs.session import read_run_config

    if args.viewer:
        check_address(args.host, args.port)
        viewer_token(args)                            # a bad --token: one sentence before any start
    if args.resume is None:
        config = _config(args)                        # bad settings: one sentence before any start
        hint = " ".join(["nerfkit train", *([args.scene] if args.scene else []), "--method", config.train.method,
                         *(["--output-dir", args.output_dir] if args.output_dir else []), "--resume"])
    else:
        run = RunFolder.find(_resume_target(args, None))
        config = read_run_config(run)
        hint = f"nerfkit train --resume {run.path}"
    device = resolve_device(args.device or config.train.device)
    check_process_count(nproc, device)
    return run_processes(_process_arguments(args, device.type), nproc, f"{hint} --nproc {nproc}")


def _process_arguments(args: argparse.Namespace, device: str) -> list[str]:
    """This command's arguments for each process: the same flags, without --nproc, on ``device``."""
    out = ["train", *([args.scene] if args.scene is not None else [])]
    if args.method is not None:
        out += ["--method", args.method]
    for flag in TRAIN_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and flag != "--device":
            out += [flag, str(value)]
    out += ["--device", device]
    if args.config is not None:
        out += ["--config", args.config]
    for item in args.set:
        out += ["--set", item]
    if args.resume is not None:
        out += ["--resume", args.resume] if args.resume else ["--resume"]
    if args.no_progress:
        out.append("--no-progress")
    out += ["--viewer" if args.viewer else "--no-viewer", "--host", args.host, "--port", str(args.port)]
    if args.token is not None:
        out += ["--token", args.token]
    return out

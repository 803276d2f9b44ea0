"""``nerfkit eval RUN``: PSNR and SSIM of a run on held-out images (optionally at several scales)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nerfkit.cli.common import add_run_argument, check_choice


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("eval", help="PSNR / SSIM of a run on held-out images")
    add_run_argument(parser)
    parser.add_argument("--split", default="test", help="test | val | train")
    parser.add_argument("--background", default="white", help="white | black (RGBA scenes)")
    parser.add_argument("-o", "--output", default=None, help="JSON file (default: RUN/eval-SPLIT.json; "
                        "RUN/eval-SPLIT-multiscale.json for --scales other than 1)")
    parser.add_argument("--scales", default="1", metavar="F,F,..",
                        help="also score at 1/F resolution with F times wider pixels against area-"
                             "downsampled ground truth, e.g. 1,2,4 (Mip-NeRF multiscale; default 1)")
    parser.set_defaults(handler=run)


def parse_scales(text: str) -> list[int]:
    """``--scales`` ("1,2,4") -> [1, 2, 4]: positive integers, duplicates dropped keeping order."""
    from nerfkit.core.errors import NerfkitError

    items = [item.strip() for item in text.split(",")]
    if not all(item.isascii() and item.isdigit() and int(item) > 0 for item in items):   # "", "a", "-2", "3.5", "0"
        raise NerfkitError(f"--scales expects a comma-separated list of positive integers such as "
                           f"1,2,4, got '{text}'")
    return list(dict.fromkeys(int(item) for item in items))


def run(args: argparse.Namespace) -> int:
    from nerfkit.core.files import write_json_atomic
    from nerfkit.runs.evaluate import evaluate_scales, evaluate_split
    from nerfkit.runs.folder import RunFolder
    from nerfkit.runs.session import open_run

    check_choice("--background", args.background, ("white", "black"))
    check_choice("--split", args.split, ("test", "val", "train"))
    scales = parse_scales(args.scales)
    folder = RunFolder.find(Path(args.run))
    _, scene, method, step = open_run(folder)
    if scales != [1]:
        summary = evaluate_scales(method, scene, args.split, args.background, scales)
        output = Path(args.output) if args.output else folder.eval_file(args.split, multiscale=True)
        write_json_atomic(output, {"run": str(folder.path), "step": step, **summary})
        sizes = scene.cameras.sizes[scene.split(args.split)]
        for f, result in summary["scales"].items():
            width, height = (int(v) for v in sizes.max(0).values // int(f))
            size = f"{width}x{height}" if len(sizes.unique(dim=0)) == 1 else f"up to {width}x{height}"
            print(f"{args.split} x{f}: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} "
                  f"({size}, {len(result['images'])} images)")
        print(output)
        return 0
    result = evaluate_split(method, scene, args.split, args.background)
    result.pop("scale")                      # the single-scale JSON keeps its original keys
    result.update(step=step, run=str(folder.path))
    output = Path(args.output) if args.output else folder.eval_file(args.split)
    write_json_atomic(output, result)
    print(f"{args.split}: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} over "
          f"{len(result['images'])} images at step {step} -> {output}")
    return 0

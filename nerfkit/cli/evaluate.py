"""``nerfkit eval RUN``: PSNR, SSIM and LPIPS (when its weights are on the machine) of a run on
held-out images (optionally at several scales)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nerfkit.cli.common import add_run_argument, check_choice


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("eval", help="PSNR / SSIM / LPIPS of a run on held-out images")
    add_run_argument(parser)
    parser.add_argument("--split", default="test", help="test | val | train")
    parser.add_argument("--background", default="white", help="white | black (RGBA scenes)")
    parser.add_argument("-o", "--output", default=None, help="JSON file (default: RUN/eval-SPLIT.json; "
                        "RUN/eval-SPLIT-multiscale.json for --scales other than 1)")
    parser.add_argument("--scales", default="1", metavar="F,F,..",
                        help="also score at 1/F resolution with F times wider pixels against area-"
                             "downsampled ground truth, e.g. 1,2,4 (Mip-NeRF multiscale; default 1)")
    parser.add_argument("--lpips-net", default="alex", help="alex (default, as papers report it) | vgg")
    parser.add_argument("--lpips-weights", default=None, metavar="DIR",
                        help="folder with the LPIPS weights (torchvision's alexnet-*.pth / vgg16-*.pth and "
                             "the lpips package's alex.pth / vgg.pth; default: torch's hub cache and an "
                             "installed lpips package; never downloaded)")
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
    from nerfkit.core.errors import NerfkitError
    from nerfkit.core.files import write_json_atomic
    from nerfkit.image.lpips import load_lpips
    from nerfkit.methods.base import method_device
    from nerfkit.runs.evaluate import evaluate_scales, evaluate_split
    from nerfkit.runs.folder import RunFolder
    from nerfkit.runs.session import open_run

    check_choice("--background", args.background, ("white", "black"))
    check_choice("--split", args.split, ("test", "val", "train"))
    check_choice("--lpips-net", args.lpips_net, ("alex", "vgg"))
    scales = parse_scales(args.scales)
    weights = Path(args.lpips_weights) if args.lpips_weights is not None else None
    if weights is not None and not weights.is_dir():
        raise NerfkitError(f"--lpips-weights '{weights}' is not a folder: expected one holding the LPIPS "
                           f"weight files")
    folder = RunFolder.find(Path(args.run))
    _, scene, method, step = open_run(folder)
    lpips = load_lpips(args.lpips_net, weights, method_device(method))
    if scales != [1]:
        summary = evaluate_scales(method, scene, args.split, args.background, scales, lpips)
        output = Path(args.output) if args.output else folder.eval_file(args.split, multiscale=True)
        write_json_atomic(output, {"run": str(folder.path), "step": step, **summary})
        sizes = scene.cameras.sizes[scene.split(args.split)]
        for f, result in summary["scales"].items():
            width, height = (int(v) for v in sizes.max(0).values // int(f))
            size = f"{width}x{height}" if len(sizes.unique(dim=0)) == 1 else f"up to {width}x{height}"
            print(f"{args.split} x{f}: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}, "
                  f"{_lpips_text(result)} ({size}, {len(result['images'])} images)")
        print(output)
        return 0
    result = evaluate_split(method, scene, args.split, args.background, lpips=lpips)
    result.pop("scale")                      # the single-scale JSON keeps its original keys
    result.update(step=step, run=str(folder.path))
    output = Path(args.output) if args.output else folder.eval_file(args.split)
    write_json_atomic(output, result)
    print(f"{args.split}: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}, {_lpips_text(result)} over "
          f"{len(result['images'])} images at step {step} -> {output}")
    if result.get("lpips_note"):
        print(f"LPIPS not computed: {result['lpips_note']}")
    return 0


def _lpips_text(result: dict) -> str:
    value = result.get("lpips")
    return f"LPIPS ({result['lpips_net']}) {value:.4f}" if value is not None else "LPIPS -"

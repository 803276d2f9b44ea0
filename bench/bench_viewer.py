"""Viewer benchmark: frames per second of the web viewer's render path, and training speed while a
browser keeps moving the camera.

The frame path is exactly what the viewer does per frame: the method renders the browser's camera
(``nerfkit.app.viewer_adapter.MethodRenderer``: eval mode, no grad, depth, normals), the picture is made
(``nerfkit.viewer.display.to_display``) and JPEG-encoded for the browser. Cameras orbit the scene
through the test views. Each progressive level (1/4, 1/2, full of ``--resolution`` px) is timed.
Then training runs ``--train-check`` seconds alone and as long again with the viewer's training
hook serving a browser whose camera never stops moving (every step may owe it a frame).

    python bench/bench_viewer.py ../shared/scenes/object-a                # trains 180 s first
    python bench/bench_viewer.py --run outputs/object-a/ngp/<ts>/         # a finished run (read only)
"""

from __future__ import annotations

import argparse
import io
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nerfkit.app.serve import RENDER_FRACTION, TrainingViewer
from nerfkit.app.viewer_adapter import MethodRenderer
from nerfkit.methods.registry import method_spec
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.runs.session import resume_run, start_run
from nerfkit.viewer.camera_math import image_size
from nerfkit.viewer.display import to_display
from nerfkit.viewer.schedule import DEFAULT_LEVELS, affordable_long_side
from nerfkit.viewer.server import ViewerOptions
from nerfkit.viewer.types import TrainingControl, ViewRequest


def orbit_requests(scene, resolution: int, count: int) -> list[ViewRequest]:
    """``count`` views at the test cameras (cycled), ``resolution`` px on the longer side."""
    ids = scene.split("test")
    requests = []
    for k in range(count):
        camera = scene.cameras[ids[k % len(ids)]]
        width, height = (int(v) for v in camera.sizes[0])
        fov = 2 * math.atan(0.5 * height / float(camera.intrinsics[0, 1]))
        w, h = image_size(width / height, resolution)
        requests.append(ViewRequest(camera.c2w[0].double().numpy(), fov, w, h))
    return requests


def frame(render: MethodRenderer, request: ViewRequest) -> bytes:
    """One viewer frame: render, picture, JPEG (as sent to the browser)."""
    picture = to_display(render(request), "rgb")
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def time_frames(render: MethodRenderer, requests: list[ViewRequest]) -> float:
    """Mean seconds per frame over ``requests`` (after one warm-up frame)."""
    frame(render, requests[0])
    started = time.perf_counter()
    for request in requests:
        frame(render, request)
    return (time.perf_counter() - started) / len(requests)


def time_levels(render: MethodRenderer, scene, resolution: int, frames: int) -> tuple[list[dict], float]:
    """Rows per progressive level (and the moving-camera level the viewer picks on this machine),
    plus the measured seconds per pixel."""
    rows, per_pixel = [], []
    for level in DEFAULT_LEVELS:
        requests = orbit_requests(scene, max(8, int(round(resolution * level))), frames)
        seconds = time_frames(render, requests)
        per_pixel.append(seconds / (requests[0].width * requests[0].height))
        rows.append({"level": f"{level:g}", "size": f"{requests[0].width}x{requests[0].height}",
                     "ms": seconds * 1000, "fps": 1.0 / seconds})
    seconds_per_pixel = float(np.median(per_pixel))
    first = orbit_requests(scene, max(8, int(round(resolution * DEFAULT_LEVELS[0]))), 1)[0]
    side = affordable_long_side(max(first.width, first.height), first.width / first.height, seconds_per_pixel,
                                ViewerOptions.moving_frame_seconds)
    requests = orbit_requests(scene, side, frames)
    seconds = time_frames(render, requests)
    rows.append({"level": "moving (adaptive)", "size": f"{requests[0].width}x{requests[0].height}",
                 "ms": seconds * 1000, "fps": 1.0 / seconds})
    return rows, seconds_per_pixel


class MovingBrowser:
    """Stands in for the viewer server with one browser whose camera moves all the time: every
    ``render_once`` draws a first-level frame (sized as the viewer sizes it) of the next view."""

    def __init__(self, render: MethodRenderer, requests: list[ViewRequest]) -> None:
        self.render, self.requests, self.frames = render, requests, 0

    def render_once(self) -> float:
        started = time.perf_counter()
        frame(self.render, self.requests[self.frames % len(self.requests)])
        self.frames += 1
        return time.perf_counter() - started


def steps_per_second(trainer, seconds: float, hook=None) -> tuple[float, float]:
    """(steps/s of wall time, train seconds / wall seconds) over ``seconds`` of wall time."""
    steps, trained = trainer.stats.step, trainer.stats.train_seconds
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        trainer.step()
        if hook is not None:
            hook()
    wall = time.perf_counter() - started
    return (trainer.stats.step - steps) / wall, (trainer.stats.train_seconds - trained) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", nargs="?", default="../shared/scenes/object-a")
    parser.add_argument("--run", default=None, help="a finished run folder (skips the quick training)")
    parser.add_argument("--method", default="ngp")
    parser.add_argument("--train-seconds", type=float, default=180.0,
                        help="quick run length without --run (ngp renders slowly until its occupancy grid "
                             "has pruned empty space: a minute is not enough on a 2-core CPU)")
    parser.add_argument("--resolution", type=int, default=200, help="longer image side at full refinement")
    parser.add_argument("--frames", type=int, default=3, help="frames timed per level")
    parser.add_argument("--train-check", type=float, default=30.0,
                        help="seconds of training timed alone and with a moving browser (0: skip)")
    parser.add_argument("--output-dir", default="/tmp/nerfkit-bench")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    args = parser.parse_args()

    if args.run:       # its newest checkpoint; nothing is written into the run folder
        trainer = resume_run(Path(args.run), log=lambda line: None)
        if args.threads > 0:
            torch.set_num_threads(args.threads)
    else:
        train = TrainConfig(scene=args.scene, method=args.method, output_dir=args.output_dir,
                            max_time=args.train_seconds, checkpoint_seconds=1e9, checkpoint_every=10 ** 9,
                            threads=args.threads)
        trainer = start_run(RunConfig(train, method_spec(args.method).config()), log=lambda line: None)
        while not trainer.done():
            trainer.step()
        trainer.save()
    scene, method, step = trainer.scene, trainer.method, trainer.stats.step
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(f"scene {scene.name}, {getattr(method, 'name', '?')} at step {step}; {torch.get_num_threads()} "
          f"threads, {device}")
    render = MethodRenderer(method)

    print(f"\nviewer frame (render + picture + JPEG), {args.frames} orbit views per level\n")
    print("| level | image | ms / frame | frames / s |")
    print("|---|---|---|---|")
    rows, seconds_per_pixel = time_levels(render, scene, args.resolution, args.frames)
    for row in rows:
        print(f"| {row['level']} | {row['size']} | {row['ms']:.0f} | {row['fps']:.2f} |")

    if args.train_check > 0:
        alone, _ = steps_per_second(trainer, args.train_check)
        first = orbit_requests(scene, max(8, round(args.resolution * DEFAULT_LEVELS[0])), 1)[0]
        side = affordable_long_side(max(first.width, first.height), first.width / first.height,
                                    seconds_per_pixel, ViewerOptions.moving_frame_seconds)
        browser = MovingBrowser(render, orbit_requests(scene, side, 16))
        hook = TrainingViewer(browser, TrainingControl(), trainer.stats)   # type: ignore[arg-type]
        watched, trained_share = steps_per_second(trainer, args.train_check, hook.after_step)
        print(f"\ntraining with a browser moving its camera the whole time (render fraction {RENDER_FRACTION})\n")
        print("| training | steps / s | viewer frames / s |")
        print("|---|---|---|")
        print(f"| alone | {alone:.2f} | - |")
        print(f"| browser connected | {watched:.2f} ({watched / alone:.0%}) | "
              f"{browser.frames / args.train_check:.2f} |")
        print(f"\nshare of wall time spent training while watched: {trained_share:.0%}")


if __name__ == "__main__":
    main()

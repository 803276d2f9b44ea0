"""Multi-client viewer benchmark: training speed while several browsers move their cameras at once.

The real viewer (viser behind the access gate, as on a shared ``--host``) serves a training run;
N browser stand-ins, each its own process (as browsers are), connect over websockets with the
token cookie and send a new camera pose every 1/30 s along an orbit through the test views,
reading every frame the viewer sends back. Training runs ``--seconds`` with nobody watching, then
as long with each client count, through the same training hook as ``nerfkit train`` (frames drawn
between steps within the 10 % render budget). The table gives steps per second and their share of
the unwatched speed (the target: >= 80 % with 8 clients).

    python bench/bench_viewer_clients.py --run outputs/object-a/splat/<ts>/ --clients 1,8
    python bench/bench_viewer_clients.py ../shared/scenes/object-a --method splat --train-seconds 120
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import platform
import time
from pathlib import Path

import torch

from nerfkit.app.serve import TrainingViewer, start_viewer
from nerfkit.methods.registry import method_spec
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.runs.session import resume_run, start_run
from nerfkit.viewer.access import cookie_name
from nerfkit.viewer.camera_math import matrix_to_pose
from nerfkit.viewer.types import TrainingControl

TOKEN = "bench-token"
CAMERA_RATE = 30.0          # camera messages per second per client (a browser during a drag)


def orbit_poses(scene, count: int) -> list[tuple[list[float], list[float], float]]:
    """``count`` (wxyz, position, fov_y) of the test cameras, cycled, in the viewer's coordinates."""
    ids = scene.split("test") or scene.split("train")
    poses = []
    for k in range(count):
        camera = scene.cameras[ids[k % len(ids)]]
        height = int(camera.sizes[0, 1])
        wxyz, position = matrix_to_pose(camera.c2w[0].double().numpy())
        poses.append((wxyz.tolist(), position.tolist(), 2 * math.atan(0.5 * height / float(camera.intrinsics[0, 1]))))
    return poses


def browser(port: int, poses: list, seconds: float, offset: int, received, cpu_seconds) -> None:
    """One browser stand-in: a camera message every 1/CAMERA_RATE s for ``seconds``; reads all replies.
    Reports the messages it received and the CPU seconds it used itself (on this machine the
    stand-ins share the cores with training, which real browsers on other machines would not)."""
    import msgspec
    import viser
    from websockets.sync.client import connect

    headers = {"Cookie": f"{cookie_name(port)}={TOKEN}"}
    with connect(f"ws://127.0.0.1:{port}/", subprotocols=[f"viser-v{viser.__version__}"],
                 additional_headers=headers, open_timeout=30, max_size=None) as socket:
        started, cpu_started = time.monotonic(), time.process_time()
        step, count = offset, 0
        while time.monotonic() - started < seconds:
            wxyz, position, fov = poses[step % len(poses)]
            socket.send(msgspec.msgpack.encode({
                "type": "ViewerCameraMessage", "wxyz": wxyz, "position": position, "fov": fov,
                "near": 0.01, "far": 1000.0, "image_height": 480, "image_width": 640,
                "look_at": [0.0, 0.0, 0.0], "up_direction": [0.0, -1.0, 0.0]}))
            step += 1
            due = time.monotonic() + 1.0 / CAMERA_RATE
            while (left := due - time.monotonic()) > 0:
                try:
                    socket.recv(timeout=left)
                    count += 1
                except TimeoutError:
                    break
        received.value = count
        cpu_seconds.value = time.process_time() - cpu_started


def timed_training(trainer, seconds: float, hook=None) -> float:
    """Steps per second of wall time over ``seconds``."""
    steps, started = trainer.stats.step, time.perf_counter()
    while time.perf_counter() - started < seconds:
        trainer.step()
        if hook is not None:
            hook()
    return (trainer.stats.step - steps) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", nargs="?", default="../shared/scenes/object-a")
    parser.add_argument("--run", default=None, help="a run folder to continue training from (nothing is written "
                        "into it)")
    parser.add_argument("--method", default="splat")
    parser.add_argument("--train-seconds", type=float, default=60.0, help="quick run length without --run")
    parser.add_argument("--clients", default="1,8", help="client counts to measure, e.g. 1,4,8")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of training per measurement")
    parser.add_argument("--output-dir", default="/tmp/nerfkit-bench")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    if args.run:
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
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(f"scene {trainer.scene.name}, {trainer.method.name} at step {trainer.stats.step}; "
          f"{torch.get_num_threads()} threads, {device}; camera messages {CAMERA_RATE:.0f}/s per client")

    control = TrainingControl()
    server = start_viewer(trainer.method, trainer.scene, Path(args.output_dir) / "bench-viewer", "127.0.0.1", 0,
                          trainer.stats, control, token=TOKEN)
    hook = TrainingViewer(server, control, trainer.stats)
    poses = orbit_poses(trainer.scene, 64)
    try:
        alone = timed_training(trainer, args.seconds, hook.after_step)       # served, nobody connected
        rows = []
        context = multiprocessing.get_context("spawn")
        client_seconds = args.seconds + 15      # each stand-in outlives the timed training
        for count in counts:
            received = [context.Value("i", 0) for _ in range(count)]
            cpu = [context.Value("d", 0.0) for _ in range(count)]
            workers = [context.Process(target=browser, daemon=True,
                                       args=(server.port, poses, client_seconds, 7 * i, received[i], cpu[i]))
                       for i in range(count)]
            for worker in workers:
                worker.start()
            deadline = time.monotonic() + 30
            while server.client_count < count and time.monotonic() < deadline:
                time.sleep(0.2)
            connected = server.client_count
            frames = server.frames_drawn
            watched = timed_training(trainer, args.seconds, hook.after_step)
            frames = server.frames_drawn - frames
            for worker in workers:
                worker.join(timeout=60)
            client_cpu = sum(c.value for c in cpu) / client_seconds    # cores the stand-ins used
            rows.append((count, connected, watched, frames / args.seconds, sum(r.value for r in received), client_cpu))
    finally:
        server.close()
    print("\n| browsers moving their cameras | steps / s | of unwatched | viewer frames / s | messages received "
          "| CPU cores the stand-ins used |")
    print("|---|---|---|---|---|---|")
    print(f"| none | {alone:.2f} | 100% | - | - | - |")
    for count, connected, watched, fps, messages, client_cpu in rows:
        note = "" if connected == count else f" ({connected} connected)"
        print(f"| {count}{note} | {watched:.2f} | {watched / alone:.0%} | {fps:.2f} | {messages} | {client_cpu:.2f} |")


if __name__ == "__main__":
    main()

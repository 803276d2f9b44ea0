"""Training on N processes (torch.distributed): steps/s, rays/s and memory per process for N = 1, 2, 4.

For each N the script starts N processes of itself with torchrun's variables (as ``nerfkit train
--nproc N`` does): NCCL with one GPU per process on a CUDA machine, gloo on the CPU otherwise (the
cores divided among the processes). Each process joins the same run (`nerfkit.runs.distributed`),
trains ``--warmup`` steps, then ``--steps`` timed steps; the table has the steps/s of the timed
steps (every process agrees on each step's time: the slowest), the rays (pixels) per second over
all processes, the peak memory of each process (CUDA: max allocated; CPU: max resident set) and the
last training loss, as a correctness check between the rows.

    python bench/bench_distributed.py                              # demo scene, ngp, N = 1,2,4
    python bench/bench_distributed.py ../shared/scenes/object-a --method splat --nproc 1,2,4
    python bench/bench_distributed.py SCENE --method ngp --device cuda --steps 500   # multi-GPU

A ray method trains on the same global batch for every N (each process renders 1/N of the rays);
splat renders one image per process per step (``images_per_step: auto``), so N processes see N
images per step (the images/s column compares them). With N > the GPUs present a row is skipped.
On a 2-core CPU the rows show the correctness of the path, not speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", nargs="?", default="", help="scene folder (default: the built-in demo)")
    parser.add_argument("--method", default="ngp", help="ngp | mipnerf | splat")
    parser.add_argument("--nproc", default="1,2,4", help="process counts, e.g. 1,2,4,8")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (compiles, caches)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--downscale", type=float, default=1.0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method setting")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)      # a process of one row
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    gpus = torch.cuda.device_count() if cuda else 0
    machine = (f"{gpus} x {torch.cuda.get_device_name()}" if cuda else
               f"{len(os.sched_getaffinity(0))} CPU cores ({platform.processor() or platform.machine()})")
    print(f"method {args.method}, scene {args.scene or 'demo'}, {machine}, torch {torch.__version__}, "
          f"{args.warmup} + {args.steps} steps per row")
    print("| processes | backend | steps/s | rays/s | images/s | speed-up | peak memory per process, GiB | last loss |")
    print("|---:|---|---:|---:|---:|---:|---|---:|")
    base = None
    for count in (int(n) for n in args.nproc.split(",")):
        if cuda and count > gpus:
            print(f"| {count} | nccl | skipped: {gpus} GPUs | | | | | |")
            continue
        row = _row(args, count)
        base = base or row["steps_per_second"]
        memory = " / ".join(f"{m:.2f}" for m in row["memory_gib"])
        print(f"| {count} | {row['backend']} | {row['steps_per_second']:.2f} | {row['rays_per_second']:,.0f} "
              f"| {row['images_per_second']:.2f} | {row['steps_per_second'] / base:.2f} | {memory} "
              f"| {row['loss']:.5f} |", flush=True)


def _row(args: argparse.Namespace, count: int) -> dict:
    """Run ``count`` processes of one row; rank 0's measurements."""
    with tempfile.TemporaryDirectory() as folder, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        result = Path(folder) / "row.json"
        command = [sys.executable, __file__, args.scene, "--method", args.method, "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--device", args.device, "--downscale", str(args.downscale),
                   *(item for pair in (("--set", item) for item in args.set) for item in pair),
                   "--worker", json.dumps({"output": folder, "result": str(result)})]
        env = {**os.environ, "WORLD_SIZE": str(count), "LOCAL_WORLD_SIZE": str(count),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        processes = [subprocess.Popen(command, env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)})
                     for rank in range(count)]
        codes = [process.wait() for process in processes]
        if any(codes):
            raise SystemExit(f"a process of the {count}-process row failed: exit codes {codes}")
        return json.loads(result.read_text())


def _worker(args: argparse.Namespace) -> None:
    """One process of a row: join the run, train, measure, gather to rank 0."""
    from nerfkit.runs.config import merge_settings
    from nerfkit.runs.distributed import connect, disconnect, open_trainer, process_place
    from nerfkit.runs.session import start_run

    where = json.loads(args.worker)
    place = process_place()
    processes = connect(place, args.device)
    try:
        train = {"method": args.method, "output_dir": where["output"], "max_steps": 10 ** 9,
                 "checkpoint_every": 10 ** 9, "checkpoint_seconds": 1e12, "downscale": args.downscale,
                 "device": processes.device.type, **({"scene": args.scene} if args.scene else {})}
        config = merge_settings(None, train, args.set)
        trainer = open_trainer(processes, lambda: start_run(config, None, processes))
        for _ in range(args.warmup):
            trainer.step()
        seconds, rays, loss = trainer.stats.train_seconds, trainer.stats.rays_seen, 0.0
        for _ in range(args.steps):
            loss = float(trainer.step()["mse"])
        seconds = trainer.stats.train_seconds - seconds
        rays = trainer.stats.rays_seen - rays
        memory = (torch.cuda.max_memory_allocated() if processes.device.type == "cuda"
                  else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2 ** 30
        memories = _gather(processes, memory)
        if processes.is_main:
            by_image = trainer.method.batch_request(0).kind == "image"
            image_count = processes.image_count(config.train.images_per_step) if by_image else 0
            Path(where["result"]).write_text(json.dumps({
                "backend": "nccl" if processes.device.type == "cuda" else "gloo",
                "steps_per_second": args.steps / seconds, "rays_per_second": rays / seconds,
                "images_per_second": image_count * args.steps / seconds, "memory_gib": memories,
                "loss": loss}))
    finally:
        disconnect()


def _gather(processes, value: float) -> list[float]:
    """``value`` of every process, on every process (rank order)."""
    if processes.world == 1:
        return [value]
    values = [None] * processes.world
    torch.distributed.all_gather_object(values, value)
    return values


if __name__ == "__main__":
    main()

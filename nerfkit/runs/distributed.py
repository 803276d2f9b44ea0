"""Joining a multi-process training run through ``torch.distributed``.

Every process of a run is started the same way, by torchrun (``torchrun --nproc-per-node N -m
nerfkit train ...``, any node count through its rendezvous) or by ``nerfkit train --nproc N``
(:mod:`nerfkit.runs.launch`, which sets the same variables): it finds its place in the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``),
:func:`connect` s to the others (NCCL with one GPU per process, gloo on the CPU with the cores
divided among the processes of a machine) and :func:`open_trainer` gives it its trainer: the main
process (rank 0) starts or resumes the run folder, the others build the same trainer from its
configuration and state, so every process starts from the same parameters, optimizer and random
state. Only the main process writes into the run folder (the others need only the scene).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable, Mapping

import torch

from nerfkit.core.errors import NerfkitError
from nerfkit.runs.config import RunConfig, resolve_device
from nerfkit.runs.parallel import ProcessShare, StoppedTogether, exchange_failure
from nerfkit.runs.trainer import Trainer

PLACE_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun sets for every process (``LOCAL_WORLD_SIZE`` too; it defaults to ``WORLD_SIZE``)."""

EXCHANGE_TIMEOUT = 1800.0
"""Seconds a process waits for the others in one exchange (torch's default for gloo); a paused live
viewer holds the other processes, so a pause longer than this ends the run."""


SETTLE_SECONDS = 0.2
"""Seconds :func:`disconnect` leaves gloo's worker threads to finish after the process group is gone."""


@dataclass(frozen=True)
class ProcessPlace:
    """Where a process stands in its run, as the launcher's environment variables say."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int


def process_place(environ: Mapping[str, str] = os.environ) -> ProcessPlace | None:
    """This process's place in a multi-process run, or None when it was started on its own.

    Raises:
        NerfkitError: some of torchrun's variables are set but not all, or one is not a number.
    """
    given = [name for name in PLACE_VARIABLES if environ.get(name, "") != ""]
    if not {"RANK", "WORLD_SIZE", "LOCAL_RANK"} & set(given):
        return None
    missing = [name for name in PLACE_VARIABLES if name not in given]
    if missing:
        raise NerfkitError(f"this process has {', '.join(given)} set but not {', '.join(missing)}: "
                           "a training process of several is started by torchrun (torchrun "
                           "--nproc-per-node N -m nerfkit train ...) or by nerfkit train --nproc N, "
                           "which set all of them")
    try:
        numbers = {name: int(environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
        local_world = int(environ.get("LOCAL_WORLD_SIZE") or numbers["WORLD_SIZE"])
    except ValueError:
        values = ", ".join(f"{name}={environ.get(name)!r}" for name in PLACE_VARIABLES)
        raise NerfkitError(f"torchrun's variables must be whole numbers (but MASTER_ADDR), got {values}") from None
    place = ProcessPlace(numbers["RANK"], numbers["WORLD_SIZE"], numbers["LOCAL_RANK"], local_world,
                         environ["MASTER_ADDR"], numbers["MASTER_PORT"])
    if not (0 <= place.rank < place.world_size and 0 <= place.local_rank < place.local_world_size
            and 0 < place.master_port < 65536):
        raise NerfkitError(f"RANK {place.rank}, WORLD_SIZE {place.world_size}, LOCAL_RANK {place.local_rank}, "
                           f"LOCAL_WORLD_SIZE {place.local_world_size} and MASTER_PORT {place.master_port} do "
                           "not describe a process of a run (0 <= RANK < WORLD_SIZE, a port 1..65535)")
    return place


def check_process_count(nproc: int, device: torch.device, gpus: int | None = None) -> None:
    """One sentence for a process count this machine cannot give each its own device.

    ``gpus`` defaults to the CUDA devices torch sees; CPU processes are limited only by sense.
    """
    if nproc < 1:
        raise NerfkitError(f"--nproc must be at least 1, got {nproc}")
    if device.type == "cuda":
        gpus = torch.cuda.device_count() if gpus is None else gpus
        if nproc > gpus:
            raise NerfkitError(f"--nproc {nproc} asks for one GPU per process but this machine has {gpus} "
                               f"GPU{'s' if gpus != 1 else ''}: use --nproc {gpus} or fewer, or "
                               "--device cpu for CPU processes")


def check_port_free(host: str, port: int) -> None:
    """One sentence when the rendezvous port is taken (the main process must listen on it)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except OSError as error:
        raise NerfkitError(f"MASTER_PORT {port} on {host} is in use ({error.strerror or error}), so the "
                           "processes cannot meet there: set MASTER_PORT to a free port, or unset it "
                           "to let nerfkit train --nproc pick one") from None


def connect(place: ProcessPlace, device_name: str = "auto", timeout: float = EXCHANGE_TIMEOUT) -> ProcessShare:
    """Join the run's process group; the :class:`ProcessShare` of this process.

    CUDA: process ``LOCAL_RANK`` takes that GPU and NCCL; CPU: gloo, with torch's threads set to
    the machine's cores divided among its processes (a run's ``--threads`` overrides it later).
    From here on Ctrl-C asks every process to stop after the same step (twice: at once).
    """
    device = resolve_device(device_name)
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if place.local_rank >= gpus:
            raise NerfkitError(f"process {place.rank} has LOCAL_RANK {place.local_rank} but this machine has "
                               f"{gpus} GPU{'s' if gpus != 1 else ''}: start at most {gpus} processes per "
                               "machine (torchrun --nproc-per-node), or train on the CPU (--device cpu)")
        torch.cuda.set_device(place.local_rank)
        device = torch.device("cuda", place.local_rank)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // place.local_world_size))
    if place.rank == 0 and place.master_addr in ("127.0.0.1", "localhost") \
            and not os.environ.get("TORCHELASTIC_USE_AGENT_STORE"):
        check_port_free(place.master_addr, place.master_port)      # torchrun's agent holds it itself
    try:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                             rank=place.rank, world_size=place.world_size,
                                             timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as error:
        raise NerfkitError(f"process {place.rank} of {place.world_size} could not meet the others at "
                           f"{place.master_addr}:{place.master_port} ({exchange_failure(error)}): is the port free on the "
                           "main process's machine, and is MASTER_ADDR an address of it?") from None
    processes = ProcessShare(place.rank, place.world_size, device, timeout)
    _ask_to_stop_on_interrupt(processes)
    # The launcher ends the others with SIGTERM when one fails: end at once (also inside a wait in
    # C++), without the stack dump a library's failure handler would print (pycolmap's glog).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return processes


def disconnect() -> None:
    """Leave the process group (at the end of the run, also after an error); Ctrl-C as usual again.

    Then wait :data:`SETTLE_SECONDS` without the GIL: a gloo worker thread drops its last finished
    exchange (and the tensors in it) a moment after the exchange completes, and that needs the GIL.
    A process that went straight on to the interpreter's exit could meet it there, and the thread's
    exit during finalization aborts the process ("terminate called without an active exception",
    code -6) after a run that succeeded: 3 of 120 two-process test runs on 2 cores, none of 250 with
    the wait (BENCHMARKS.md).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        time.sleep(SETTLE_SECONDS)


def _ask_to_stop_on_interrupt(processes: ProcessShare) -> None:
    """The first SIGINT asks for a stop after the current step (agreed by all processes, so the
    main process saves a checkpoint every process agrees on); a second one interrupts at once."""
    def handler(signum: int, frame: object) -> None:
        if processes.stop_requested:
            raise KeyboardInterrupt
        processes.stop_requested = True

    signal.signal(signal.SIGINT, handler)


def open_trainer(processes: ProcessShare, start: Callable[[], Trainer]) -> Trainer:
    """This process's trainer of the run: ``start()`` (start or resume the run folder) on the main
    process; the others build the same trainer from its configuration, then every process takes the
    main process's state (parameters, optimizer, step, random generators).

    Raises:
        NerfkitError: on the main process, why the run could not start (the others stop with it).
    """
    trainer, setup = None, None
    if processes.is_main:
        try:
            trainer = start()
        except NerfkitError as error:
            processes.from_main({"error": str(error)})
            raise
        setup = {"config": trainer.config.to_dict(), "run": str(trainer.run_dir)}
    setup = processes.from_main(setup)
    if "error" in setup:
        raise StoppedTogether(setup["error"])
    if trainer is None:
        from nerfkit.runs.session import load_configured_scene, set_threads

        config = RunConfig.from_dict(setup["config"], "the main process's configuration")
        set_threads(config)
        trainer = Trainer(config, load_configured_scene(config), Path(setup["run"]), None, processes)
    state = processes.from_main(trainer.state_dict() if processes.is_main else None)
    if not processes.is_main:
        trainer.load_state_dict(state)
    return trainer


__all__ = ["EXCHANGE_TIMEOUT", "PLACE_VARIABLES", "ProcessPlace", "check_port_free", "check_process_count",
           "connect", "disconnect", "open_trainer", "process_place"]

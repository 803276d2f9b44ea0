"""``nerfkit train --nproc N``: start N training processes on this machine, as torchrun would.

Each process is ``python -m nerfkit <arguments>`` with torchrun's variables set (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT``:
the one in the environment, else a free one), so a process cannot tell the two launchers apart
and :mod:`nerfkit.runs.distributed` is the one code path for both. Like torchrun's agent, the
launcher runs the processes in their own session, passes Ctrl-C on to them (the main process saves
a checkpoint; a second Ctrl-C stops them at once), and when one of them ends with an error or is
killed, it stops the others and reports that process in one sentence.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from nerfkit.core.errors import NerfkitError
from nerfkit.runs.distributed import check_port_free

HOST = "127.0.0.1"
POLL_SECONDS = 0.1
GRACE_SECONDS = 10.0        # after one process fails: time the others get to end on their own
TERM_SECONDS = 20.0         # ... then after SIGTERM, before SIGKILL
INTERRUPT_SECONDS = 120.0   # after Ctrl-C: time to finish the step and save the checkpoint
USER_ERROR_EXIT = 2         # a process that exits with this has printed its own sentence
INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class Ended:
    """How one process ended: ``code`` as ``Popen.returncode`` (negative: killed by that signal)."""

    rank: int
    code: int

    def describe(self) -> str:
        if self.code < 0:
            try:
                name = signal.Signals(-self.code).name
            except ValueError:
                name = f"signal {-self.code}"
            return f"was killed by {name}"
        return f"exited with code {self.code}"


def rendezvous_port(environ: Mapping[str, str] = os.environ) -> int:
    """``MASTER_PORT`` when set (one sentence if it is busy or no port), else a free port."""
    value = environ.get("MASTER_PORT", "")
    if value:
        try:
            port = int(value)
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise NerfkitError(f"MASTER_PORT must be a port number 1..65535, got '{value}'")
        check_port_free(HOST, port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def run_processes(arguments: Sequence[str], nproc: int, resume_hint: str,
                  environ: Mapping[str, str] = os.environ) -> int:
    """Run ``python -m nerfkit *arguments`` as the ``nproc`` processes of one run; wait for them.

    Args:
        resume_hint: the command that resumes the run, for the sentence about a process that died.
    Returns:
        0 when all finished, 130 when interrupted (Ctrl-C), 2 when a process reported a user error
        itself (it printed its sentence).
    Raises:
        NerfkitError: a process died (killed, or a crash); the others were stopped.
    """
    port = rendezvous_port(environ)
    base = {**environ, "MASTER_ADDR": HOST, "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0", "ROLE_RANK": "0"}
    base.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    processes: list[subprocess.Popen] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)   # SIGTERM (e.g. a job's end): as Ctrl-C
    try:
        for rank in range(nproc):
            env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank), "ROLE_WORLD_SIZE": str(nproc)}
            processes.append(subprocess.Popen([sys.executable, "-m", "nerfkit", *arguments], env=env,
                                              start_new_session=True, preexec_fn=_end_with_parent))
        return _wait(processes, resume_hint)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(processes, signal.SIGKILL, 0.0)          # nothing outlives the launcher


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait(processes: list[subprocess.Popen], resume_hint: str) -> int:
    """Wait until all processes end, or one fails (then stop the rest); the exit code, or raise."""
    interrupts = 0
    first_failure: Ended | None = None
    deadline = None
    while True:
        try:
            codes = [process.poll() for process in processes]
            if all(code is not None for code in codes):
                break
            if first_failure is None:
                failed = [Ended(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
                if failed and not interrupts:
                    first_failure = failed[0]
                    deadline = time.monotonic() + GRACE_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                _stop(processes, signal.SIGTERM, TERM_SECONDS)
                break
            time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:                      # Ctrl-C: pass it on, give them time to save
            interrupts += 1
            _send(processes, signal.SIGINT)
            deadline = time.monotonic() + INTERRUPT_SECONDS
    codes = [process.wait() for process in processes]
    if interrupts:
        return INTERRUPTED_EXIT
    if all(code == 0 for code in codes):
        return 0
    if codes[0] in (USER_ERROR_EXIT, INTERRUPTED_EXIT):   # the main process said why itself
        return codes[0]
    failure = first_failure or next(Ended(rank, code) for rank, code in enumerate(codes) if code != 0)
    if failure.code == USER_ERROR_EXIT:
        return USER_ERROR_EXIT
    raise NerfkitError(f"training process {failure.rank} of {len(processes)} {failure.describe()}, so "
                       f"the others were stopped; resume the run from its last checkpoint with: {resume_hint}")


def _send(processes: list[subprocess.Popen], sig: signal.Signals) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)


def _stop(processes: list[subprocess.Popen], sig: signal.Signals, wait: float) -> None:
    """Send ``sig`` to the processes still running, wait up to ``wait`` s, then kill the rest."""
    _send(processes, sig)
    end = time.monotonic() + wait
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, end - time.monotonic()))
    _send(processes, signal.SIGKILL)
    for process in processes:
        process.wait()


def _end_with_parent() -> None:
    """In the child (Linux): receive SIGTERM when the launcher dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)    # PR_SET_PDEATHSIG


__all__ = ["Ended", "rendezvous_port", "run_processes"]

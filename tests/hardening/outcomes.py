"""Running broken inputs through the CLI in-process, and counting what came back."""

from __future__ import annotations

import contextlib
import io
import sys
import traceback
from dataclasses import dataclass, field
from typing import Sequence

import pytest

from nerfkit.cli import main

PREFIX = "nerfkit: error: "
@dataclass
class HardeningCounts:
    """What the hardening tests tried and what came back."""

    inputs: int = 0            # broken inputs run through a CLI command
    clear: int = 0             # ... that gave exit 2 and one ``nerfkit: error:`` line naming it
    tracebacks: int = 0        # ... that raised out of ``main`` or printed a traceback
    fuzzed: int = 0            # hypothesis examples given to the scene readers
    kills: int = 0             # SIGKILLs sent to training processes
    kills_mid_write: int = 0   # ... that left the temp file of a checkpoint write behind
    resumes: int = 0           # ... after which --resume continued from the newest checkpoint
    by_command: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        commands = ", ".join(f"{name} {count}" for name, count in sorted(self.by_command.items()))
        return (f"hardening: {self.inputs} broken inputs tried ({commands}), {self.clear} clear "
                f"errors, {self.tracebacks} tracebacks; {self.fuzzed} fuzzed reader inputs; "
                f"{self.kills} kills ({self.kills_mid_write} "
                f"during a checkpoint write), {self.resumes} resumes from the newest intact "
                "checkpoint")


COUNTS_KEY = pytest.StashKey[HardeningCounts]()


@dataclass
class Outcome:
    """What one CLI call did."""

    code: int | None
    stderr: str
    traceback: str = ""

    def problems(self, expect: str) -> list[str]:
        """Why this is not one clear error naming ``expect`` (empty when it is)."""
        lines = self.stderr.strip().splitlines()
        found = []
        if self.traceback or "Traceback" in self.stderr:
            found.append("traceback: " + (self.traceback or self.stderr).strip().splitlines()[-1])
        if self.code in (0, None):
            found.append(f"exit code {self.code}")
        if len(lines) != 1 or not lines[0].startswith(PREFIX):
            found.append(f"stderr is not one '{PREFIX}' line: {self.stderr.strip()[:300]!r}")
        elif expect not in lines[0]:
            found.append(f"the message does not name {expect!r}: {lines[0][:300]!r}")
        return found


def run_cli(argv: Sequence[str]) -> Outcome:
    """``nerfkit.cli.main(argv)`` in this process, stdout dropped, stderr and any escape kept."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([str(a) for a in argv])
    except BaseException:  # noqa: BLE001 - SystemExit from argparse is a clean exit too
        error = sys.exc_info()[1]
        if isinstance(error, SystemExit):
            return Outcome(error.code if isinstance(error.code, int) else 1, err.getvalue())
        return Outcome(None, err.getvalue(), traceback.format_exc())
    return Outcome(code, err.getvalue())


class Tally:
    """Runs broken inputs through the CLI, counts them and collects every unclear outcome."""

    def __init__(self, counts: HardeningCounts) -> None:
        self.counts = counts
        self.failures: list[str] = []

    def check(self, name: str, command: str, argv: Sequence[str], expect: str) -> Outcome:
        outcome = run_cli(argv)
        problems = outcome.problems(expect)
        self.counts.inputs += 1
        self.counts.by_command[command] = self.counts.by_command.get(command, 0) + 1
        if outcome.traceback or "Traceback" in outcome.stderr:
            self.counts.tracebacks += 1
        if problems:
            self.failures.append(f"{name} [{command}]: " + "; ".join(problems))
        else:
            self.counts.clear += 1
        return outcome

    def assert_all_clear(self) -> None:
        assert not self.failures, f"{len(self.failures)} unclear outcomes:\n" + "\n".join(
            self.failures)



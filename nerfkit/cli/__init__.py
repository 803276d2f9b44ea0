"""The ``nerfkit`` command: one module per sub-command (parse, call the library, print).

User mistakes end in one sentence on stderr and exit code 2, never a traceback; running out of
memory likewise. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from nerfkit.cli import evaluate, export, process, render, train, view
from nerfkit.cli.common import one_line, show_warning
from nerfkit.core.errors import NerfkitError

COMMANDS = (train, view, evaluate, render, process, export)
"""Each module has ``add_parser(commands)``, which sets the parser's ``handler``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nerfkit", description="Photos in, a 3D model out.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            return args.handler(args)
        except NerfkitError as error:
            print(f"nerfkit: error: {one_line(error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        except RuntimeError as error:                   # torch.OutOfMemoryError included
            from nerfkit.runs.guard import is_out_of_memory

            if not is_out_of_memory(error):
                raise
            print(f"nerfkit: error: 'nerfkit {args.command}' ran out of memory ({one_line(error)[:120]}): "
                  f"close other programs, or ask for less (a smaller --resolution or --max-views for "
                  f"export mesh, --downscale for the scene)", file=sys.stderr)
            return 2


__all__ = ["build_parser", "main"]

"""What the command modules share: one-line messages, choice checks and the viewer's address flags."""

from __future__ import annotations

import argparse
import sys


def one_line(error: BaseException | Warning | str) -> str:
    """A message as one line (newlines shown as ``\\n``)."""
    return str(error).replace("\r", "\\r").replace("\n", "\\n")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``nerfkit: warning:`` line each (no source line, no file name)."""
    print(f"nerfkit: warning: {one_line(message)}", file=sys.stderr)


def check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    """One sentence when ``value`` is not one of ``choices``."""
    from nerfkit.core.errors import NerfkitError

    if value not in choices:
        raise NerfkitError(f"{flag} must be one of {', '.join(choices)}, got '{value}'")


def add_viewer_address(parser: argparse.ArgumentParser) -> None:
    """``--port``, ``--host`` and ``--token`` of the web viewer."""
    parser.add_argument("--port", type=int, default=8080, help="viewer port (default 8080; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="viewer address to listen on (default 127.0.0.1; 0.0.0.0: all networks, "
                             "then a browser needs the access token in the printed URL)")
    parser.add_argument("--token", default=None,
                        help="access token browsers must give (?token=...; default: a random one on a "
                             "non-loopback --host, none on 127.0.0.1)")


def viewer_token(args: argparse.Namespace) -> str | None:
    """The token the viewer requires for these flags (None: open)."""
    from nerfkit.core.errors import NerfkitError
    from nerfkit.viewer.access import viewer_token as decide

    if args.token is not None and (not args.token or not args.token.isprintable() or " " in args.token
                                   or len(args.token) > 256):
        raise NerfkitError("--token must be 1 to 256 printable characters without spaces")
    return decide(args.host, args.token)


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    """The positional ``run`` of the commands that open a run."""
    parser.add_argument("run", help="run folder (or a parent: its newest run)")

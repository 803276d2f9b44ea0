"""``nerfkit view RUN``: serve a finished run in the web viewer until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

from nerfkit.cli.common import add_run_argument, add_viewer_address


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("view", help="browse a run in the web viewer (until Ctrl-C)")
    add_run_argument(parser)
    add_viewer_address(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nerfkit.app.serve import check_address, serve_until_interrupted, start_viewer
    from nerfkit.runs.folder import RunFolder
    from nerfkit.runs.session import open_run
    from nerfkit.runs.trainer import TrainStats

    check_address(args.host, args.port)
    folder = RunFolder.find(Path(args.run))
    _, scene, method, step = open_run(folder)
    server = start_viewer(method, scene, folder, args.host, args.port, TrainStats(step=step))
    print(f"viewing {folder.path} (step {step}) at {server.url}  (Ctrl-C to stop)", flush=True)
    serve_until_interrupted(server)
    return 0

"""Malformed or hostile viewer clients never stop training (issue 9): while `nerfkit train` runs with
its viewer on, raw websocket clients send garbage bytes, unknown message types, and camera messages
with NaN/inf poses, zero or negative image sizes and absurd fields of view; the run still trains
to its last step, exits 0 and writes its final checkpoint. The viewer listens on 127.0.0.1 only."""

from __future__ import annotations

import math
import os
import random
import re
import time

import pytest

from test_browser import _start
from tiny_run import tiny_train_args

STEPS = 150


def _camera_message(**fields) -> dict:
    message = {"type": "ViewerCameraMessage", "wxyz": (1.0, 0.0, 0.0, 0.0), "position": (0.0, 0.0, 3.0),
               "fov": 0.9, "near": 0.01, "far": 100.0, "image_height": 200, "image_width": 300,
               "look_at": (0.0, 0.0, 0.0), "up_direction": (0.0, -1.0, 0.0)}
    message.update(fields)
    return message


HOSTILE_MESSAGES = [
    _camera_message(wxyz=(math.nan, 0.0, 0.0, 0.0)),
    _camera_message(position=(math.inf, -math.inf, math.nan)),
    _camera_message(image_height=0, image_width=0),
    _camera_message(image_height=-5, image_width=7),
    _camera_message(image_height=100_000, image_width=100_000, fov=3.14),
    _camera_message(fov=0.0),
    _camera_message(fov=-1.0, near=-1.0, far=-2.0),
    _camera_message(wxyz=(0.0, 0.0, 0.0, 0.0)),
    {"type": "NoSuchMessage", "payload": 1},
    {"type": "ViewerCameraMessage"},                               # fields missing
    {"no_type": True},
]


def _send_all(url: str, messages: list, rng: random.Random) -> int:
    """Open one websocket per message (a bad one may get the connection closed); return how many
    were delivered."""
    import msgspec
    import viser
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    ws_url = url.replace("http://", "ws://")
    delivered = 0
    for message in messages:
        payload = (bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))) if message is None
                   else msgspec.msgpack.encode(message))
        try:
            with connect(ws_url, subprotocols=[f"viser-v{viser.__version__}"], open_timeout=10) as socket:
                for _ in range(3):                         # repeat: the viewer may draw in between
                    socket.send(payload)
                    time.sleep(0.05)
                delivered += 1
        except (OSError, WebSocketException):
            pass                                           # the server may drop a bad client
    return delivered


@pytest.mark.timeout(300)
def test_hostile_clients_never_stop_training(tiny_demo, tmp_path):
    pytest.importorskip("websockets")
    output = tmp_path / "out"
    process, url = _start(tiny_train_args(tiny_demo, output, "--max-steps", str(STEPS), "--port", "0",
                                          threads=1, viewer=True))
    try:
        assert re.match(r"http://(127\.0\.0\.1|localhost):\d+", url), url    # local only by default
        rng = random.Random(0)
        garbage = [None] * 5                                # random bytes
        delivered = _send_all(url, garbage + HOSTILE_MESSAGES + garbage, rng)
        assert delivered >= 5                                # the server was there to receive them
        returncode = process.wait(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert returncode == 0
    runs = sorted(output.glob("*/ngp/*/checkpoints"))
    assert len(runs) == 1
    assert (runs[0] / f"step-{STEPS:07d}.pt").is_file(), os.listdir(runs[0])


def test_cameras_that_cannot_be_drawn_are_ignored():
    from types import SimpleNamespace

    from nerfkit.viewer.server import _valid_camera

    good = dict(wxyz=(1.0, 0.0, 0.0, 0.0), position=(0.0, 0.0, 3.0), fov=0.9, aspect=1.5)
    assert _valid_camera(SimpleNamespace(**good)) is not None
    for bad in [dict(wxyz=(math.nan, 0, 0, 0)), dict(wxyz=(0, 0, 0, 0)), dict(position=(math.inf, 0, 0)),
                dict(fov=0.0), dict(fov=3.2), dict(fov=math.nan), dict(aspect=0.0), dict(aspect=1e6),
                dict(aspect=-1.0), dict(wxyz=(1.0, 0.0)), dict(position="abc")]:
        assert _valid_camera(SimpleNamespace(**{**good, **bad})) is None, bad

    class Broken:                                      # viser's aspect with a zero image height
        wxyz, position, fov = good["wxyz"], good["position"], good["fov"]

        @property
        def aspect(self):
            return 1.0 / 0

    assert _valid_camera(Broken()) is None

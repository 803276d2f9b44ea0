"""Viewer access (issue 20): on a non-loopback host the viewer requires a token; without it a client
gets 403 before anything reaches viser (no page, no websocket: nothing seen, nothing changed); with
it (in the URL once, then the cookie the gate sets) the page loads, the websocket connects and
frames are drawn; on 127.0.0.1 the viewer stays open. The gate binds 127.0.0.1 here and is told to
require the token, as it is for a non-loopback host."""

from __future__ import annotations

import hmac
import http.client
import threading
import time

import numpy as np
import pytest

from nerfkit.viewer.access import (
    cookie_name,
    is_loopback,
    offered_token,
    token_matches,
    viewer_token,
    with_cookie,
)

TOKEN = "s3cret-T0ken"


def test_the_decision_takes_the_host():
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host) and viewer_token(host, None) is None, host
    for host in ("0.0.0.0", "192.168.1.20", "::", "my-laptop.local"):
        assert not is_loopback(host), host
        first, second = viewer_token(host, None), viewer_token(host, None)
        assert first and second and first != second and len(first) >= 20      # random, unguessable
    assert viewer_token("127.0.0.1", "mine") == "mine" and viewer_token("0.0.0.0", "mine") == "mine"


def test_tokens_are_read_from_the_url_or_the_cookie_and_compared_in_constant_time(monkeypatch):
    port = 8123
    assert offered_token(b"GET /?token=abc HTTP/1.1\r\nHost: x\r\n\r\n", port) == ("abc", True)
    cookie = f"Cookie: other=1; {cookie_name(port)}=xyz\r\n".encode()
    assert offered_token(b"GET /assets/a.js HTTP/1.1\r\n" + cookie + b"\r\n", port) == ("xyz", False)
    assert offered_token(b"GET / HTTP/1.1\r\nCookie: nerfkit_viewer_1=zzz\r\n\r\n", port) == (None, False)
    assert offered_token(b"garbage\r\n\r\n", port) == (None, False)
    assert offered_token(b"GET / HTTP/1.1\r\nCookie: ;;;===\r\n\r\n", port) == (None, False)
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert token_matches("abc", "abc") and not token_matches("abd", "abc") and not token_matches(None, "abc")
    assert len(calls) == 2
    head = with_cookie(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "c", "t")
    assert head.endswith(b"Set-Cookie: c=t; Path=/; HttpOnly; SameSite=Strict\r\n\r\n")


class _Stats:
    step, loss, psnr, rays_per_second = 0, 0.0, 0.0, 0.0


class _Counting:
    """A render function that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request):
        from nerfkit.viewer.types import RenderResult

        self.calls += 1
        return RenderResult(rgb=np.full((request.height, request.width, 3), 0.5, np.float32))


@pytest.fixture
def gated_viewer():
    from nerfkit.viewer.server import ViewerOptions, ViewerServer

    render = _Counting()
    server = ViewerServer(render, _Stats(), ViewerOptions(host="127.0.0.1", port=0, token=TOKEN))
    stop = threading.Event()

    def draw():
        while not stop.is_set():
            if server.render_once() == 0.0:
                server.wait_for_work(0.05)

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    yield server, render
    stop.set()
    thread.join(timeout=5)
    server.close()


def _get(port: int, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def _camera_message() -> bytes:
    import msgspec

    return msgspec.msgpack.encode({"type": "ViewerCameraMessage", "wxyz": (1.0, 0.0, 0.0, 0.0),
                                   "position": (0.0, 0.0, -3.0), "fov": 0.9, "near": 0.01, "far": 100.0,
                                   "image_height": 120, "image_width": 160, "look_at": (0.0, 0.0, 0.0),
                                   "up_direction": (0.0, -1.0, 0.0)})


def _websocket(port: int, headers: dict | None = None):
    import viser
    from websockets.sync.client import connect

    return connect(f"ws://127.0.0.1:{port}/", subprotocols=[f"viser-v{viser.__version__}"], open_timeout=10,
                   additional_headers=headers or {})


def test_without_the_token_nothing_is_served_and_nothing_changes(gated_viewer):
    from websockets.exceptions import InvalidStatus

    server, render = gated_viewer
    assert server.url.endswith(f"/?token={TOKEN}") and server.port != server.server.get_port()
    for path, headers in [("/", None), ("/?token=wrong", None), ("/index.html", {"Cookie": f"{cookie_name(server.port)}=no"})]:
        response = _get(server.port, path, headers)
        assert response.status == 403, path
        assert b"access token" in response.body and b"viser" not in response.body.lower()
        assert response.getheader("Set-Cookie") is None
    with pytest.raises(InvalidStatus) as refused:
        with _websocket(server.port) as socket:
            socket.send(_camera_message())
    assert refused.value.response.status_code == 403
    time.sleep(0.5)
    assert server.client_count == 0 and render.calls == 0           # no client reached viser, no frame


def test_with_the_token_the_page_loads_and_frames_are_drawn(gated_viewer):
    server, render = gated_viewer
    page = _get(server.port, f"/?token={TOKEN}")
    assert page.status == 200 and b"<html" in page.body.lower()
    cookie = page.getheader("Set-Cookie")
    assert cookie.startswith(f"{cookie_name(server.port)}={TOKEN};") and "HttpOnly" in cookie
    header = {"Cookie": cookie.split(";")[0]}
    assert _get(server.port, "/", header).status == 200             # the page's own requests: the cookie
    with _websocket(server.port, header) as socket:
        socket.send(_camera_message())
        deadline = time.monotonic() + 20
        while render.calls == 0 and time.monotonic() < deadline:
            try:
                socket.recv(timeout=0.5)
            except TimeoutError:
                pass
        assert server.client_count == 1
    assert render.calls > 0


def test_on_loopback_without_a_token_it_stays_open():
    from nerfkit.viewer.server import ViewerOptions, ViewerServer

    server = ViewerServer(_Counting(), _Stats(), ViewerOptions(host="127.0.0.1", port=0))
    try:
        assert "token" not in server.url
        response = _get(server.port, "/")
        assert response.status == 200 and response.getheader("Set-Cookie") is None
    finally:
        server.close()


def test_a_bad_token_flag_is_one_sentence(tiny_demo, capsys):
    from nerfkit.cli import main

    assert main(["view", str(tiny_demo), "--token", "has space"]) == 2
    err = capsys.readouterr().err
    assert "--token" in err and "\n" not in err.strip()

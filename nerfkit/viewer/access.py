"""Who may use the viewer: open on the loopback address, a token everywhere else.

On a non-loopback ``--host`` (e.g. 0.0.0.0) the viewer would show the scene and its training
cameras, and let anyone pause training or render videos into the run folder. So there the viser
server listens on 127.0.0.1 only and an :class:`AccessGate` listens on the asked address: every
connection's first HTTP request must carry the token, as ``?token=...`` in the URL (printed once by
the command; the gate answers it with a cookie) or as that cookie (the page's own requests and its
websocket, which drops the URL's query). The token is compared in constant time
(:func:`hmac.compare_digest`). Anything else gets ``403 Forbidden`` and is closed before a byte
reaches viser: no page, no scene, no messages in either direction. A token can also be asked for
on 127.0.0.1 (``--token``), e.g. on a shared machine.

The gate relays bytes both ways unchanged, except for the cookie added to the response of a
request authorised by its URL.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import threading
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

HEAD_LIMIT = 64 * 1024          # bytes of a request head
HEAD_TIMEOUT = 15.0             # seconds a client has to send its request head
PIPE_CHUNK = 1 << 16
TOKEN_PARAMETER = "token"
FORBIDDEN_BODY = (b"<!doctype html><title>nerfkit viewer</title><p>This viewer needs its access token: open "
                  b"the URL that nerfkit printed (it ends in <code>?token=...</code>).</p>\n")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def viewer_token(host: str, token: str | None) -> str | None:
    """The token the viewer requires: ``token`` when one is given, a new random one on a
    non-loopback ``host``, None (open) on loopback."""
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(18)


def cookie_name(port: int) -> str:
    """The cookie holding the token of the viewer on ``port`` (cookies ignore ports)."""
    return f"nerfkit_viewer_{port}"


def token_matches(offered: str | None, token: str) -> bool:
    """Constant-time comparison of the offered token (None: none offered)."""
    if offered is None:
        return False
    return hmac.compare_digest(offered.encode("utf-8", "replace"), token.encode("utf-8"))


def offered_token(head: bytes, port: int) -> tuple[str | None, bool]:
    """(token offered by a request head, whether it came in the URL rather than the cookie)."""
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        target = request_line.split(" ")[1]
    except (IndexError, UnicodeDecodeError):
        return None, False
    query = parse_qs(urlsplit(target).query).get(TOKEN_PARAMETER)
    if query:
        return query[0], True
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "cookie":
            try:
                cookie = SimpleCookie(value.strip())
            except CookieError:
                continue
            if cookie_name(port) in cookie:
                return cookie[cookie_name(port)].value, False
    return None, False


def with_cookie(response_head: bytes, name: str, token: str) -> bytes:
    """A response head (up to and including the blank line) with the token cookie set."""
    line = f"Set-Cookie: {name}={token}; Path=/; HttpOnly; SameSite=Strict\r\n".encode("latin-1")
    return response_head[:-2] + line + b"\r\n"


class AccessGate:
    """A token-checking relay on ``host:port`` in front of a server on ``127.0.0.1:upstream_port``.

    Args:
        host, port: where to listen (port 0: any free port; a busy one moves to the next free, as
            the viewer does).
        upstream_port: the viser server's port on 127.0.0.1.
        token: the token every connection must offer.
    Attributes:
        port: the port bound.
        refused: connections refused so far (for tests and the stats).
    """

    def __init__(self, host: str, port: int, upstream_port: int, token: str) -> None:
        self.host, self.upstream_port, self.token = host, upstream_port, token
        self.port = port
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(port, started), name="viewer-gate", daemon=True)
        self._thread.start()
        started.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop listening and drop every relayed connection."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # --- internals ----------------------------------------------------------------------------
    def _run(self, port: int, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(self._listen(port))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as error:
            self._error = error
            started.set()
            self._loop.close()
            return
        started.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _listen(self, port: int) -> asyncio.base_events.Server:
        last: OSError | None = None
        for attempt in range(1000 if port else 1):
            try:
                return await asyncio.start_server(self._serve, self.host, port + attempt if port else 0)
            except OSError as error:
                last = error
        assert last is not None
        raise last

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        offered, in_url = offered_token(head, self.port)
        if not token_matches(offered, self.token):
            self.refused += 1
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(FORBIDDEN_BODY) + FORBIDDEN_BODY)
            await _drain_and_close(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        upstream_writer.write(head)
        to_client = (self._first_response_with_cookie(upstream_reader, writer) if in_url
                     else _pipe(upstream_reader, writer))
        await asyncio.gather(_pipe(reader, upstream_writer), to_client, return_exceptions=True)

    async def _first_response_with_cookie(self, upstream: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        """Relay the response to a request authorised by its URL, adding the token cookie."""
        try:
            head = await upstream.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            await _drain_and_close(client)
            return
        client.write(with_cookie(head, cookie_name(self.port), self.token))
        await _pipe(upstream, client)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy bytes until the source ends, then close the sink."""
    try:
        while data := await source.read(PIPE_CHUNK):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        await _drain_and_close(sink)


async def _drain_and_close(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()

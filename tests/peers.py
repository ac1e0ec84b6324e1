"""Independent third-party servers for tests: uvicorn (HTTP/1.1), the standard library's
`http.server`, and websockets.

Theory of operation: each helper is a context manager that starts the server in a
background thread, on 127.0.0.1 with port 0, and yields the bound port; on exit it
asks the server to stop and joins its thread. They give gluegun_actors peers whose
HTTP and WebSocket code owes nothing to the embedded test server, so a bug cannot
hide by being the same on both ends.

Routes mirror `gluegun_actors.testing.EmbeddedServer` where both have them.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, TypeAlias, cast
from urllib.parse import parse_qsl

import uvicorn
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

START_TIMEOUT: Final = 10.0
"""Seconds a peer may take to start listening."""
STOP_TIMEOUT: Final = 10.0
"""Seconds a peer may take to stop."""

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

HELLO: Final = b"hello from gluegun_actors"


# -- uvicorn ------------------------------------------------------------------------------


async def _respond(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    framing = [] if status in (204, 304) else [(b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), *headers, *framing],
        }
    )
    await send({"type": "http.response.body", "body": b"" if status in (204, 304) else body})


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts)  # http.disconnect
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _send_chunks(send: Send, pieces: Sequence[bytes]) -> None:
    """A body without content-length: uvicorn's h11 protocol sends it chunked."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A framework-free ASGI app with the EmbeddedServer's main HTTP routes.

    `/trailers` is a plain chunked response here: uvicorn's h11 protocol does not send
    ASGI `http.response.trailers` (only its HTTP/2 protocol does), so no trailers.
    """
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    body = await _read_body(receive)
    if path == "/":
        await _respond(send, 200, HELLO)
    elif path == "/echo" and scope["method"] in ("POST", "PUT", "PATCH"):
        await _respond(send, 200, body)
    elif path == "/chunked":
        await _send_chunks(send, [f"chunk{i}".encode() for i in range(int(query.get("n", "3")))])
    elif path == "/trailers":
        await _send_chunks(send, [f"chunk{i}".encode() for i in range(3)])
    elif path.startswith("/status/") and path.removeprefix("/status/").isdigit():
        status = int(path.removeprefix("/status/"))
        await _respond(send, status, HTTPStatus(status).phrase.lower().encode())
    elif path == "/delay":
        await asyncio.sleep(int(query.get("ms", "0")) / 1000)
        await _respond(send, 200, b"delayed")
    elif path == "/headers":
        seen: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            seen[name] = f"{seen[name]}, {value}" if name in seen else value
        await _respond(send, 200, json.dumps(seen, sort_keys=True).encode())
    else:
        await _respond(send, 404, b"not found")


class _ThreadedUvicorn(uvicorn.Server):
    """A uvicorn server that says when it listens (its `started` flag, as an event)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@contextmanager
def uvicorn_server() -> Iterator[int]:
    """Run `asgi_app` on uvicorn (h11) in a thread; yield its port."""
    config = uvicorn.Config(
        asgi_app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        http="h11",
        timeout_graceful_shutdown=2,
    )
    server = _ThreadedUvicorn(config)
    thread = threading.Thread(target=server.run, name="peer-uvicorn", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(START_TIMEOUT) or not server.started:
            raise RuntimeError("uvicorn did not start")
        port: int = server.servers[0].sockets[0].getsockname()[1]
        yield port
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("uvicorn did not stop")


# -- websockets ---------------------------------------------------------------------------


async def _ws_handler(connection: ServerConnection) -> None:
    """Echo at any path; `/close3333` closes with 3333 "bye"; `/ping` pings b"hi" first;
    `/fragments` first sends one text message in three fragments ("frag", "men", "ted")."""
    path = connection.request.path.split("?", 1)[0] if connection.request else "/"
    if path == "/close3333":
        await connection.close(3333, "bye")
        return
    if path == "/fragments":
        await connection.send(iter(["frag", "men", "ted"]))
    if path == "/ping":
        await connection.ping(b"hi")  # the pong waiter is not awaited: just send the ping
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:
        pass


class _WebsocketsThread:
    """A websockets asyncio server on its own event loop in its own thread."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._main, name="peer-websockets", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(_ws_handler, "127.0.0.1", 0, **self._options) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"websockets did not start: {self._error!r}")
        return self.port

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("websockets did not stop")


# -- the standard library's http.server ---------------------------------------------------


class StdlibServer(http.server.ThreadingHTTPServer):
    """`http.server` speaking HTTP/1.1 keep-alive; `paths` records each request's path.

    Routes: `/` answers "hello"; `/slow-close` answers with `Connection: close`, sends its
    head, waits `SLOW_CLOSE_PAUSE` seconds, then sends its 5-byte body and closes.
    """

    daemon_threads = True
    paths: list[str]


SLOW_CLOSE_PAUSE: Final = 0.3


class _StdlibHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StdlibServer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path == "/slow-close":
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            time.sleep(SLOW_CLOSE_PAUSE)
            self.wfile.write(b"later")
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(HELLO)))
        self.end_headers()
        self.wfile.write(HELLO)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


def server_tls_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A server-side TLS context presenting `certificate` (certificate and key files)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@contextmanager
def stdlib_server(tls: ssl.SSLContext | None = None) -> Iterator[StdlibServer]:
    """A `StdlibServer` on 127.0.0.1 (read `.server_port`), stopped on exit; with `tls`
    (see `server_tls_context`), it speaks HTTPS."""
    server = StdlibServer(("127.0.0.1", 0), _StdlibHandler)
    server.paths = []
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="stdlib-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT)


@contextmanager
def websockets_server(
    *,
    subprotocols: Sequence[str] | None = None,
    compression: str | None = "deflate",
    max_size: int | None = 2**20,
) -> Iterator[int]:
    """Run a websockets 17 echo server in a thread; yield its port.

    Paths: any path echoes; `/close3333` closes with code 3333 and reason "bye";
    `/fragments` sends a text message in three fragments first;
    `/ping` sends a ping with payload b"hi" right after the handshake, then echoes.
    """
    options: dict[str, Any] = {"compression": compression, "max_size": max_size}
    if subprotocols is not None:
        options["subprotocols"] = [cast(Subprotocol, p) for p in subprotocols]
    peer = _WebsocketsThread(options)
    port = peer.start()
    try:
        yield port
    finally:
        peer.stop()

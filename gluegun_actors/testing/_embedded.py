"""EmbeddedServer: a local HTTP/1.1 and WebSocket echo server for tests and examples.

Theory of operation: each client thread runs one `_HttpSession`, an h11 server
connection read one event at a time. Requests are answered strictly in order (the
request body is read in full first), so keep-alive and pipelining come from h11
itself: bytes of the next request wait in h11's buffer until `start_next_cycle()`.
Routes are a table from path to (methods, handler); HEAD runs the GET handler and
h11 leaves the body out.

A request that asks for a WebSocket upgrade is handed to wsproto's own server
handshake (`H11Handshake`), which checks it and writes the 101; the session then
continues as a `WebSocketSession` over a wsproto `Connection`, fed first with the
bytes h11 had read past the request. Messages are echoed fragment by fragment, so
nothing is reassembled and memory stays bounded whatever the message size.

The routes are listed in `EmbeddedServer`'s docstring. Durations in URLs are
milliseconds; durations given to Python calls are seconds.
"""

from __future__ import annotations

import http
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import h11
from wsproto.connection import ConnectionType
from wsproto.events import (
    AcceptConnection,
    RejectConnection,
)
from wsproto.events import Request as WsRequest
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from gluegun_actors._io.addresses import host_port
from gluegun_actors.testing._payloads import (
    MAX_CHUNKS,
    MAX_DELAY_MS,
    PIECE,
    BadRequest,
    int_param,
    pattern_bytes,
)
from gluegun_actors.testing._server import (
    DEFAULT_MAX_CONNECTIONS,
    ThreadedTcpServer,
    _Channel,
    logger,
)
from gluegun_actors.testing._ws_echo import WebSocketSession, WsKind, WsPlan

DEFAULT_SUBPROTOCOLS: Final = ("chat", "superchat")
DEFAULT_IDLE_TIMEOUT: Final = 60.0
"""Seconds a client may stay silent (or not read) before the server closes it."""
DEFAULT_MAX_BODY_SIZE: Final = 16 * 1024 * 1024
"""Largest request body read (413 beyond)."""
DEFAULT_MAX_GENERATED_SIZE: Final = 256 * 1024 * 1024
"""Largest body `/big`, `/stream` or `/ws/push` will generate (400 beyond)."""
DEFAULT_MAX_HEADER_BLOCK_SIZE: Final = 64 * 1024
"""Largest request head (h11's `max_incomplete_event_size`)."""
DEFAULT_CLOSING_TIMEOUT: Final = 5.0
"""Seconds to wait for the peer's close frame after sending ours."""
DEFAULT_LINGER: Final = 1.0
"""Seconds to read after our FIN before closing, so the close stays a FIN."""


HELLO: Final = b"hello from gluegun_actors"
EARLY_HINTS_LINK: Final = "</style.css>; rel=preload; as=style"

_READ_METHODS: Final = frozenset({"GET", "HEAD"})
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_NO_BODY_STATUSES: Final = frozenset({204, 304})


class _PeerGone(Exception):
    """The peer closed its side before the request was complete."""


@dataclass(frozen=True, slots=True)
class _Request:
    """One complete request, as the route handlers see it."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: list[tuple[str, str]]
    http_version: str
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of header `name` (lower case); repeated headers joined with ', '."""
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None

    def int_param(self, name: str, default: int, maximum: int) -> int:
        return int_param(self.query, name, default, maximum)


def _has_token(value: str | None, token: str) -> bool:
    if value is None:
        return False
    return any(part.strip().lower() == token for part in value.split(","))


def _decode_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in headers]


def _is_websocket_upgrade(headers: list[tuple[str, str]]) -> bool:
    upgrade = ", ".join(value for name, value in headers if name == "upgrade")
    connection = ", ".join(value for name, value in headers if name == "connection")
    return _has_token(upgrade, "websocket") and _has_token(connection, "upgrade")


def _phrase(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.lower().encode("ascii")
    except ValueError:
        return f"status {status}".encode("ascii")


class EmbeddedServer(ThreadedTcpServer):
    """An HTTP/1.1 + WebSocket echo server on 127.0.0.1, in background threads.

    HTTP routes (HEAD works on every GET route and sends no body):

    - `GET /` → 200 "hello from gluegun_actors"
    - `POST|PUT|PATCH /echo` → 200 with the request body (chunked request bodies too)
    - `GET /chunked?n=3` → a chunked body of n chunks "chunk0", "chunk1", ...
    - `GET /trailers` → chunked "chunk0".."chunk2"; with `te: trailers` in the request,
      also the trailer `x-checksum: <body length>`
    - `GET /stream?chunks=N&size=S&delay_ms=D` → N chunks of S pattern bytes, D ms apart
    - `GET /status/<code>` → that status (204 and 304 without body; others with the
      lower-case reason phrase as body, e.g. "not found")
    - `GET /delay?ms=D` → 200 "delayed" after D ms
    - `GET /close` → 200 "closing" with `connection: close`, then the server closes
    - `GET /headers` → a JSON object of the request headers (lower-case names)
    - `GET /inform` → 103 Early Hints (with a `link` header), then 200 "informed"
    - `GET /big?size=N` → N pattern bytes (`pattern_bytes`), with content-length
    - anything else → 404 "not found"

    WebSocket (any path with an upgrade request):

    - `/ws/close?code=3333&reason=bye` → a close frame right after the handshake
    - `/ws/push?n=N&size=S` → N text messages of S pattern bytes, then waits
    - `/ws/reject?status=403` → the upgrade is refused with that status
    - every other path (`/echo`, `/ws`, ...) echoes each text and binary message.

    The first subprotocol offered that is in `subprotocols` is chosen;
    permessage-deflate is accepted when offered (unless `compression=False`); pings
    are answered; traffic wsproto cannot parse gets the close code wsproto names.
    `stop()` sends open WebSockets a 1001 close frame before closing them.

    Durations given to it are seconds (`idle_timeout`, `closing_timeout`); in URLs,
    milliseconds (`delay_ms`). `ValueError` for `max_connections` below 1.

    Example:
        ```python
        with EmbeddedServer() as server:
            conn = connection.open("127.0.0.1", server.port)
            stream = http.get(conn, "/chunked?n=2")
            assert http.await_body(conn, stream, 5000) == b"chunk0chunk1"
            connection.close(conn)
        ```
    """

    _kind = "embedded"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        subprotocols: Sequence[str] = DEFAULT_SUBPROTOCOLS,
        compression: bool = True,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        closing_timeout: float = DEFAULT_CLOSING_TIMEOUT,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_generated_size: int = DEFAULT_MAX_GENERATED_SIZE,
        max_header_block_size: int = DEFAULT_MAX_HEADER_BLOCK_SIZE,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(host, port, max_connections=max_connections)
        self.subprotocols = tuple(subprotocols)
        self.compression = compression
        self.idle_timeout = idle_timeout
        self.closing_timeout = closing_timeout
        self.max_body_size = max_body_size
        self.max_generated_size = max_generated_size
        self.max_header_block_size = max_header_block_size
        self.linger = DEFAULT_LINGER
        self._requests: list[tuple[str, str]] = []
        self._requests_lock = threading.Lock()

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request seen, as (method, target), in arrival order (a copy)."""
        with self._requests_lock:
            return list(self._requests)

    def url(self, path: str = "/") -> str:
        """`http://127.0.0.1:<port><path>`, for `connection.open_url`."""
        return f"http://{host_port(self.host, self.port)}{path}"

    def ws_url(self, path: str = "/ws") -> str:
        """`ws://127.0.0.1:<port><path>`, for `websocket.connect(url)`."""
        return f"ws://{host_port(self.host, self.port)}{path}"

    def _record_request(self, method: str, target: str) -> None:
        with self._requests_lock:
            self._requests.append((method, target))

    def _serve_client(self, channel: _Channel, index: int) -> None:
        _HttpSession(self, channel).run()


_Handler = Callable[["_HttpSession", _Request], None]


class _HttpSession:
    """One client connection speaking HTTP/1.1 (until it upgrades)."""

    def __init__(self, server: EmbeddedServer, channel: _Channel) -> None:
        self._server = server
        self._channel = channel
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=server.max_header_block_size
        )

    # -- I/O ------------------------------------------------------------------------

    def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self._h11.receive_data(self._channel.recv(self._server.idle_timeout))

    def _send(self, event: h11.Event) -> None:
        data = self._h11.send(event)
        if data:
            self._channel.send(data, self._server.idle_timeout)

    # -- the request loop -------------------------------------------------------------

    def run(self) -> None:
        while True:
            try:
                event = self._next_event()
                if not isinstance(event, h11.Request):
                    break  # ConnectionClosed: the client is done
                if not self._serve(event):
                    return  # upgraded to WebSocket, or closed
            except h11.RemoteProtocolError as exc:
                self._fail(exc.error_status_hint, f"bad request: {exc}")
                return
            except BadRequest as exc:
                self._fail(exc.status, str(exc))
                return
            except _PeerGone:
                break
            if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                break  # connection: close, or an HTTP/1.0 client
            self._h11.start_next_cycle()
        self._channel.close_gracefully(self._server.linger)

    def _serve(self, request: h11.Request) -> bool:
        """Answer one request; False when this session no longer owns the connection."""
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        self._server._record_request(method, target)
        headers = _decode_headers(request.headers)
        if _is_websocket_upgrade(headers):
            self._upgrade(request)
            return False
        body = self._read_body()
        parts = urlsplit(target)
        req = _Request(
            method=method,
            target=target,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            http_version=request.http_version.decode("ascii"),
            body=body,
        )
        route = _find_route(req.path)
        if route is None:
            self._respond(req, 404, [("content-type", "text/plain")], _phrase(404))
            return True
        methods, handler = route
        if method not in methods:
            allow = ", ".join(sorted(methods))
            self._respond(req, 405, [("allow", allow)], _phrase(405))
            return True
        handler(self, req)
        return True

    def _read_body(self) -> bytes:
        if self._h11.they_are_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))
        parts: list[bytes] = []
        size = 0
        while True:
            event = self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._server.max_body_size:
                    raise BadRequest(413, "request body too large")
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise _PeerGone

    def _fail(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        """Answer with an error status if a response can still start, then close."""
        logger.debug("answering %d: %s", status, message)
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = message.encode("utf-8", "replace")
            try:
                self._send(
                    h11.Response(
                        status_code=status,
                        headers=[
                            *headers,
                            ("content-type", "text/plain"),
                            ("content-length", str(len(body))),
                            ("connection", "close"),
                        ],
                    )
                )
                self._send(h11.Data(data=body))
                self._send(h11.EndOfMessage())
            except h11.LocalProtocolError:
                pass
        self._channel.close_gracefully(self._server.linger)

    # -- responses --------------------------------------------------------------------

    def _send_response(
        self,
        req: _Request,
        status: int,
        headers: Sequence[tuple[str, str]],
        pieces: Iterable[bytes],
        *,
        trailers: Sequence[tuple[str, str]] = (),
        delay: float = 0.0,
    ) -> None:
        """Send a response; no body for HEAD (and then no delays or trailers either)."""
        self._send(h11.Response(status_code=status, headers=list(headers)))
        if req.method == "HEAD":
            self._send(h11.EndOfMessage())
            return
        for index, piece in enumerate(pieces):
            if index and delay:
                self._channel.sleep(delay)
            if piece:
                self._send(h11.Data(data=piece))
        self._send(h11.EndOfMessage(headers=list(trailers)))

    def _respond(
        self, req: _Request, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        if status in _NO_BODY_STATUSES:
            self._send_response(req, status, headers, [])
            return
        length = [("content-length", str(len(body)))]
        self._send_response(req, status, headers + length, [body])

    # -- routes -----------------------------------------------------------------------

    def root(self, req: _Request) -> None:
        self._respond(req, 200, [("content-type", "text/plain")], HELLO)

    def echo(self, req: _Request) -> None:
        content_type = req.header("content-type") or "application/octet-stream"
        self._respond(req, 200, [("content-type", content_type)], req.body)

    def chunked(self, req: _Request) -> None:
        n = req.int_param("n", 3, MAX_CHUNKS)
        pieces = (f"chunk{i}".encode("ascii") for i in range(n))
        self._send_response(req, 200, [("content-type", "text/plain")], pieces)

    def trailers(self, req: _Request) -> None:
        pieces = [f"chunk{i}".encode("ascii") for i in range(3)]
        headers = [("content-type", "text/plain")]
        trailers: list[tuple[str, str]] = []
        if _has_token(req.header("te"), "trailers") and req.http_version == "1.1":
            headers.append(("trailer", "x-checksum"))
            trailers.append(("x-checksum", str(sum(len(piece) for piece in pieces))))
        self._send_response(req, 200, headers, pieces, trailers=trailers)

    def stream(self, req: _Request) -> None:
        chunks = req.int_param("chunks", 3, MAX_CHUNKS)
        size = req.int_param("size", 16, self._server.max_generated_size)
        delay_ms = req.int_param("delay_ms", 0, MAX_DELAY_MS)
        if chunks * size > self._server.max_generated_size:
            raise BadRequest(400, "chunks * size is over the server's max_generated_size")
        piece = pattern_bytes(size)
        self._send_response(
            req,
            200,
            [("content-type", "application/octet-stream")],
            (piece for _ in range(chunks)),
            delay=delay_ms / 1000,
        )

    def status(self, req: _Request) -> None:
        raw = req.path.removeprefix("/status/")
        if not raw.isdigit() or not 200 <= int(raw) <= 599:
            raise BadRequest(400, f"/status/ takes a final status 200-599, got {raw!r}")
        status = int(raw)
        self._respond(req, status, [("content-type", "text/plain")], _phrase(status))

    def delay(self, req: _Request) -> None:
        ms = req.int_param("ms", 0, MAX_DELAY_MS)
        self._channel.sleep(ms / 1000)
        self._respond(req, 200, [("content-type", "text/plain")], b"delayed")

    def close(self, req: _Request) -> None:
        headers = [("content-type", "text/plain"), ("connection", "close")]
        self._respond(req, 200, headers, b"closing")

    def headers(self, req: _Request) -> None:
        seen: dict[str, str] = {}
        for name, value in req.headers:
            seen[name] = f"{seen[name]}, {value}" if name in seen else value
        body = json.dumps(seen, sort_keys=True).encode("utf-8")
        self._respond(req, 200, [("content-type", "application/json")], body)

    def inform(self, req: _Request) -> None:
        if req.http_version == "1.1":  # no 1xx for HTTP/1.0 clients
            self._send(
                h11.InformationalResponse(status_code=103, headers=[("link", EARLY_HINTS_LINK)])
            )
        self._respond(req, 200, [("content-type", "text/plain")], b"informed")

    def big(self, req: _Request) -> None:
        size = req.int_param("size", 1024 * 1024, self._server.max_generated_size)
        piece = pattern_bytes(PIECE)
        pieces = (piece[: min(PIECE, size - start)] for start in range(0, size, PIECE))
        headers = [("content-type", "application/octet-stream"), ("content-length", str(size))]
        self._send_response(req, 200, headers, pieces)

    # -- WebSocket --------------------------------------------------------------------

    def _upgrade(self, request: h11.Request) -> None:
        """Hand the upgrade request to wsproto's server handshake, then speak WebSocket."""
        while True:  # read to the end of the request: h11 then pauses and keeps the rest
            event = self._next_event()
            if isinstance(event, h11.EndOfMessage):
                break
            if not isinstance(event, h11.Data):
                raise _PeerGone
        trailing, _closed = self._h11.trailing_data
        try:
            raw = h11.Connection(h11.CLIENT).send(
                h11.Request(
                    method=request.method,
                    target=request.target,
                    headers=list(request.headers.raw_items()),
                )
            )
        except h11.LocalProtocolError as exc:
            raise BadRequest(400, f"bad websocket upgrade: {exc}") from None
        handshake = H11Handshake(ConnectionType.SERVER)
        try:
            handshake.receive_data(raw)
            ws_request = next(e for e in handshake.events() if isinstance(e, WsRequest))
        except WsRemoteProtocolError as exc:
            hint = exc.event_hint
            if isinstance(hint, RejectConnection):
                extra = _decode_headers((bytes(n), bytes(v)) for n, v in hint.headers)
                self._fail(hint.status_code, f"websocket handshake failed: {exc}", extra)
            else:  # pragma: no cover - wsproto always hints a rejection
                self._fail(400, f"websocket handshake failed: {exc}")
            return
        plan = WsPlan.from_target(ws_request.target, self._server.max_generated_size)
        if plan.kind is WsKind.REJECT:
            self._fail(plan.status, "websocket upgrade rejected")
            return
        offered = ws_request.subprotocols
        subprotocol = next((p for p in offered if p in self._server.subprotocols), None)
        extensions: list[Extension] = [PerMessageDeflate()] if self._server.compression else []
        accept = handshake.send(AcceptConnection(subprotocol=subprotocol, extensions=extensions))
        connection = handshake.connection
        assert connection is not None  # set by AcceptConnection
        self._channel.send(accept, self._server.idle_timeout)
        WebSocketSession(self._server, self._channel, connection, plan).run(trailing)


def _find_route(path: str) -> tuple[frozenset[str], _Handler] | None:
    if path.startswith("/status/"):
        return _READ_METHODS, _HttpSession.status
    return _ROUTES.get(path)


_ROUTES: Final[dict[str, tuple[frozenset[str], _Handler]]] = {
    "/": (_READ_METHODS, _HttpSession.root),
    "/echo": (_BODY_METHODS, _HttpSession.echo),
    "/chunked": (_READ_METHODS, _HttpSession.chunked),
    "/trailers": (_READ_METHODS, _HttpSession.trailers),
    "/stream": (_READ_METHODS, _HttpSession.stream),
    "/delay": (_READ_METHODS, _HttpSession.delay),
    "/close": (_READ_METHODS, _HttpSession.close),
    "/headers": (_READ_METHODS, _HttpSession.headers),
    "/inform": (_READ_METHODS, _HttpSession.inform),
    "/big": (_READ_METHODS, _HttpSession.big),
}

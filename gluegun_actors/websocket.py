"""WebSocket over HTTP/1.1: the Gluegun Socket API and Gun's low-level helpers.

Two levels, as in Gluegun:

- The **Socket API** (`connect`, `send_text`, `send_binary`, `receive_app_frame`, `close`,
  `with_socket`) hides the upgrade. `close(socket)` sends a close frame only; the
  connection stays until the caller closes `socket.connection` (or uses `with_socket` /
  `with Socket`, which close both, also when the body raises).
- The **low level** (`upgrade`, `upgrade_with_protocol`, `await_upgrade`, `send`, `receive`)
  works on a connection the caller owns. Call `await_upgrade` before `receive`.

After a connection loss the connection comes back as plain HTTP (`GunUp`): a WebSocket is
never upgraded again behind the caller's back; upgrade anew after `GunUp`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

from gluegun_actors import connection
from gluegun_actors._await import MessageFuture, future, wait, wait_seconds
from gluegun_actors._awaited import FrameWait, UpgradeWait
from gluegun_actors._checks import check_connection, check_headers, check_reply_to, check_stream
from gluegun_actors._connection import commands
from gluegun_actors._connection.handle import Connection
from gluegun_actors._options import WsOptions, make_ws_options
from gluegun_actors._protocol.http1_request import check_request
from gluegun_actors._protocol.ws_handshake import check_extra_headers
from gluegun_actors._timeouts import Infinity, Timeout, timeout_seconds
from gluegun_actors._types import Protocol, StreamRef
from gluegun_actors._url import parse_url, url_options
from gluegun_actors.errors import (
    BadStateError,
    ConnectionDown,
    ConnectionTerminated,
    GluegunError,
    InvalidArgument,
    InvalidOptions,
    UnsupportedProtocol,
    WebSocketClosed,
    describe,
)
from gluegun_actors.events import GunUpgrade
from gluegun_actors.http import ReplyTo
from gluegun_actors.mailbox import current
from gluegun_actors.message import AppFrame, Binary, Close, Frame, Ping, Pong, Text

__all__ = [
    "Options",
    "Socket",
    "await_upgrade",
    "await_upgrade_future",
    "close",
    "connect",
    "options",
    "receive",
    "receive_app_frame",
    "receive_future",
    "send",
    "send_binary",
    "send_text",
    "upgrade",
    "upgrade_with_protocol",
    "with_socket",
]

T = TypeVar("T")


Options = WsOptions
"""WebSocket options (defaults to HTTP/1.1); build with `options(**fields)`."""


def options(**fields: Any) -> Options:
    """WebSocket options, each checked here (`InvalidOptions`); see `Options` for every field.

    Durations are milliseconds; sizes are bytes.

    Raises:
        InvalidOptions: an unknown name, a value of the wrong type or out of range, or a
            header that would replace the handshake's own.

    Example:
        ```python
        opts = websocket.options(subprotocols=["chat"], compress=True, keepalive=20_000,
                                 connection=connection.options(retry=3))
        ```
    """
    return make_ws_options(**fields)


def _wait_timeout(options: Options) -> Timeout:
    """The Socket API's bound on connecting and on each receive."""
    return Infinity if options.timeout is None else options.timeout


# -- low level ----------------------------------------------------------------------------


def upgrade(
    conn: Connection,
    path: str,
    headers: Any = (),
    options: Options | None = None,
    *,
    reply_to: ReplyTo = None,
) -> StreamRef:
    """Ask to upgrade `conn` to WebSocket on `path` (Gun's `gun:ws_upgrade`).

    The stream's messages (`GunUpgrade`, then `GunWs`) go to `reply_to`: by default the
    caller (the calling Pykka actor, else the calling thread's mailbox), as in Gun.
    Returns the stream at once; call `await_upgrade` before `receive`. Errors as
    `upgrade_with_protocol`.

    Example:
        ```python
        ws = websocket.upgrade(conn, "/echo", [("origin", "http://localhost")])
        websocket.await_upgrade(conn, ws, 5000)
        websocket.send(conn, ws, Text("hello"))
        ```
    """
    return upgrade_with_protocol(conn, Protocol.HTTP1, path, headers, options, reply_to=reply_to)


def upgrade_with_protocol(
    conn: Connection,
    protocol: Protocol,
    path: str,
    headers: Any = (),
    options: Options | None = None,
    *,
    reply_to: ReplyTo = None,
) -> StreamRef:
    """Upgrade over the protocol `await_up` returned; HTTP/2 is refused before any I/O.

    Gluegun's `upgrade_with_protocol`: the same as `upgrade`, with the protocol checked
    first. Returns the stream at once.

    Raises:
        UnsupportedProtocol: `protocol` is not HTTP/1.1; nothing was sent.
        InvalidArgument: a path that does not start with `/`, headers that are not pairs.
        InvalidOptions: `options` did not come from `websocket.options()`.
        LocalProtocolError: a header HTTP/1.1 forbids, or one that would replace the
            handshake's own (`sec-websocket-key`, `upgrade`...).
        BadStateError: the connection is already upgraded.
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        protocol = connection.await_up(conn, 5000)
        ws = websocket.upgrade_with_protocol(conn, protocol, "/echo", [])
        ```
    """
    check_connection(conn)
    if not isinstance(protocol, Protocol):
        raise InvalidArgument(f"protocol must be a Protocol (from await_up), got {protocol!r}")
    if protocol is not Protocol.HTTP1:
        raise UnsupportedProtocol(
            f"WebSocket needs HTTP/1.1 here; {protocol.value!r} cannot be upgraded. "
            "Open the connection with protocols=[Protocol.HTTP1]"
        )
    command = upgrade_command(path, headers, options, reply_to)
    if conn.protocol is Protocol.WS:
        raise BadStateError(f"{conn!r} is already upgraded to WebSocket")
    conn.tell(command)
    return command.stream


def upgrade_command(
    path: str, headers: Any, options: Options | None, reply_to: ReplyTo
) -> commands.Upgrade:
    """The upgrade command, every argument checked, on a new stream reference."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgument(f"path must be a str starting with '/', got {path!r}")
    if options is None:
        options = Options()
    elif not isinstance(options, Options):
        raise InvalidOptions("options must come from websocket.options()")
    checked = check_headers(headers)
    check_request("GET", path, checked)
    check_extra_headers(checked)
    target = check_reply_to(reply_to)
    stream = StreamRef(reply_to=target, resilient=options.reupgrade)
    return commands.Upgrade(stream, path, checked, options)


def await_upgrade(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> GunUpgrade:
    """Wait for the upgrade of `stream`; returns the `GunUpgrade` (negotiated protocols).

    A non-101 answer raises `UpgradeFailed` with its status, headers and body. Call it
    before `receive`: until it has taken the `GunUpgrade`, `receive` refuses. `timeout` is
    in milliseconds.

    Raises:
        UpgradeFailed: the server answered with another status; `.status`, `.headers`,
            `.body` say what it said.
        AwaitTimeout: no answer in time; nothing was taken from the mailbox.
        StreamError: the stream failed (e.g. a bad 101: `RemoteProtocolError` as reason).
        ConnectionDown: the connection was lost before the answer.
        ConnectionTerminated: the connection stopped.
        BadStateError: the stream's messages go to a Pykka actor.

    Example:
        ```python
        ws = websocket.upgrade(conn, "/chat", [], websocket.options(subprotocols=["v2"]))
        upgrade = websocket.await_upgrade(conn, ws, 5000)
        upgrade.protocols  # ("websocket", "v2")
        ```
    """
    return wait(UpgradeWait(check_connection(conn), check_stream(stream)), timeout, "upgrade")


def await_upgrade_future(conn: Connection, stream: StreamRef) -> MessageFuture[GunUpgrade]:
    """`await_upgrade` as a Pykka future; `get(timeout=)` takes seconds as a float.

    Example:
        ```python
        upgrades = pykka.get_all([websocket.await_upgrade_future(c, s) for c, s in pairs], 5.0)
        ```
    """
    return future(UpgradeWait(check_connection(conn), check_stream(stream)))


def send(conn: Connection, stream: StreamRef, frame: Frame | Sequence[Frame]) -> None:
    """Send one frame, or a list of frames in order, on an upgraded stream.

    Gun's `gun:ws_send`. Returns at once: the frames are written by the connection, in
    order, from the calling thread when the actor is idle. Sending `Close` starts the
    closing handshake (bounded by `closing_timeout`).

    Raises:
        InvalidArgument: not a `Text` / `Binary` / `Ping` / `Pong` / `Close` (or a list of
            them), or a frame carrying the wrong type.
        BadStateError: the stream is not upgraded now: `await_upgrade` was not called, the
            connection came back from a loss as plain HTTP, or a `reupgrade` stream is
            being upgraded again.
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        websocket.send(conn, ws, Text("hello"))
        websocket.send(conn, ws, [Binary(b"\\x00\\x01"), Text("two frames, in order")])
        ```
    """
    check_connection(conn)
    check_stream(stream)
    _send_checked(conn, stream, checked_frames(frame))


def _send_checked(conn: Connection, stream: StreamRef, frames: tuple[Frame, ...]) -> None:
    """`send` once `conn`, `stream` and `frames` are known to be well typed."""
    conn.check_alive()
    if stream not in conn.ws_streams:
        raise BadStateError(
            f"{stream!r} is not an upgraded WebSocket stream of {conn!r} now: "
            + (
                "it is being upgraded again after a reconnect (reupgrade); wait for its "
                "GunUpgrade (websocket.await_upgrade)"
                if stream.resilient
                else "call await_upgrade first (or upgrade again: a reconnect brings the "
                "connection back as plain HTTP)"
            )
        )
    conn.tell(commands.WsSend(stream, frames))


_FRAMES: Final = (Text, Binary, Ping, Pong, Close)
_PAYLOADS: Final = (bytes, bytearray, memoryview)


def checked_frames(frame: Frame | Sequence[Frame]) -> tuple[Frame, ...]:
    """One frame or a list of them, as a tuple, each checked."""
    frames = tuple(frame) if isinstance(frame, list | tuple) else (frame,)
    for item in frames:
        if not isinstance(item, _FRAMES):
            raise InvalidArgument(
                f"frames are message.Text/Binary/Ping/Pong/Close, got {type(item).__name__}"
            )
        if isinstance(item, Text) and not isinstance(item.text, str):
            raise InvalidArgument(f"Text carries a str, got {type(item.text).__name__}")
        if isinstance(item, Binary | Ping | Pong) and not isinstance(item.data, _PAYLOADS):
            raise InvalidArgument(f"{type(item).__name__} carries bytes, got {item.data!r}")
    return frames


def receive(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> Frame:
    """The next frame of an upgraded stream (Close frames too; pings when not silenced).

    Takes the stream's next `GunWs` from its `reply_to` mailbox, waiting up to `timeout`
    milliseconds. A peer's close arrives as a `Close` frame; the wait after it raises
    `ConnectionDown`. On a `reupgrade` stream the wait goes on across a reconnect.

    Raises:
        BadStateError: the stream's upgrade answer is still in the mailbox: call
            `await_upgrade` first (the answer is left where it is); or the messages go to
            a Pykka actor.
        AwaitTimeout: no frame in time; nothing was taken.
        ConnectionDown: the connection was lost (or closed) with the stream on it.
        ConnectionTerminated: the connection stopped.

    Example:
        ```python
        match websocket.receive(conn, ws, 5000):
            case Text(text): print(text)
            case Binary(data): print(len(data), "bytes")
            case Close(code, reason): print("closed", code, reason)
        ```
    """
    waiting = FrameWait(check_connection(conn), check_stream(stream))
    return wait(waiting, timeout, "WebSocket frame")


def receive_future(conn: Connection, stream: StreamRef) -> MessageFuture[Frame]:
    """`receive` as a Pykka future; `get(timeout=)` takes seconds as a float.

    Example:
        ```python
        futures = [websocket.receive_future(conn, ws) for conn, ws in feeds]
        frames = pykka.get_all(futures, timeout=5.0)  # one frame from each feed
        ```
    """
    return future(FrameWait(check_connection(conn), check_stream(stream)))


# -- the Socket API -----------------------------------------------------------------------


class Socket:
    """An upgraded WebSocket stream on its own connection; reusable, lifecycle explicit.

    `connection` and `stream` are exposed so the caller can close the connection. As a
    context manager it closes the WebSocket and the connection on exit.

    Example:
        ```python
        with websocket.connect("ws://localhost:8080/echo") as socket:
            websocket.send_text(socket, "hi")
            print(websocket.receive_app_frame(socket))
        ```
    """

    __slots__ = ("connection", "options", "protocol", "stream")

    def __init__(
        self, conn: Connection, stream: StreamRef, options: Options, protocol: str | None
    ) -> None:
        self.connection = conn
        self.stream = stream
        self.options = options
        self.protocol = protocol
        """The subprotocol the server chose, if any."""

    def __enter__(self) -> Socket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _close_all(self)

    def __repr__(self) -> str:
        return f"<Socket {self.stream!r} on {self.connection!r}>"


def connect(
    url: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    path: str | None = None,
    options: Options | None = None,
) -> Socket:
    """Open a connection, upgrade it, and return the `Socket`.

    Give a `url` (`ws://host[:port]/path`, or `wss://` for TLS with verification on), or
    `host=`, `port=` and `path=` (default `/`); not both. Its messages go to the calling
    thread's mailbox (or the owner given in the connection options), where the Socket
    API's blocking calls read them, also when called from inside a Pykka actor. On any
    failure the connection is closed before the error is raised.

    `options.timeout` (ms, default 5000) bounds the connect and the upgrade; the
    connection's own options go in `options.connection`.

    Raises:
        InvalidArgument: both forms or neither, a URL that is not `ws://` / `wss://`.
        AwaitTimeout: not connected and upgraded within `options.timeout`; while it keeps
            failing to connect, the error names the last connect error (its `__cause__`).
        ConnectionTerminated: the connection gave up (retries exhausted).
        UpgradeFailed: the server refused the upgrade (`.status`, `.headers`, `.body`).

    Example:
        ```python
        socket = websocket.connect("wss://example.com/feed",
                                   options=websocket.options(subprotocols=["v2"]))
        try:
            websocket.send_text(socket, "subscribe")
        finally:
            websocket.close(socket)
            connection.close(socket.connection)
        ```
    """
    options, host, port, path, conn_options = socket_target(url, host, port, path, options)
    conn = connection.open(host, port, conn_options)
    try:
        protocol = connection.await_up(conn, _wait_timeout(options))
        reply_to = conn_options.owner
        stream = upgrade_with_protocol(conn, protocol, path, [], options, reply_to=reply_to)
        answer = wait(UpgradeWait(conn, stream, path), _wait_timeout(options), "upgrade")
    except BaseException:
        _discard(conn)
        raise
    chosen = answer.protocols[1] if len(answer.protocols) > 1 else None
    return Socket(conn, stream, options, chosen)


def socket_target(
    url: str | None,
    host: str | None,
    port: int | None,
    path: str | None,
    options: Options | None,
) -> tuple[Options, str, int, str, connection.Options]:
    """`connect`'s arguments checked: the WebSocket options, where to connect (by `url`,
    or `host`/`port`/`path`), and the connection options, owned by the caller's mailbox
    unless they name an owner (the Socket API's waits read a mailbox, even in an actor)."""
    if options is None:
        options = Options()
    elif not isinstance(options, Options):
        raise InvalidOptions("options must come from websocket.options()")
    conn_options = options.connection or connection.Options()
    if url is not None:
        if host is not None or port is not None or path is not None:
            raise InvalidArgument("give either url= or host=/port=/path=, not both")
        parsed = parse_url(url)
        if not parsed.websocket:
            raise InvalidArgument(
                f"a WebSocket url starts with ws:// or wss://, got {parsed.scheme}://"
            )
        conn_options = url_options(parsed, conn_options)
        host, port, path = parsed.host, parsed.port, parsed.target
    elif host is None or port is None:
        raise InvalidArgument("give url= (ws://host:port/path) or both host= and port=")
    if conn_options.owner is None:
        conn_options = dataclasses.replace(conn_options, owner=current())
    return options, host, port, path or "/", conn_options


def send_text(socket: Socket, text: str) -> None:
    """Send `text` as one Text message (Gluegun's `send_text`).

    Raises:
        InvalidArgument: `text` is not a str, or `socket` is not a `Socket`.
        BadStateError: the WebSocket is no longer upgraded (its connection was lost).
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        websocket.send_text(socket, "hello")
        ```
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"send_text takes a str, got {type(text).__name__}")
    try:
        _send_checked(_check_socket(socket).connection, socket.stream, (Text(text),))
    except BadStateError as error:
        raise _ended(socket, error) from None


def send_binary(socket: Socket, data: bytes) -> None:
    """Send `data` (bytes, bytearray or memoryview) as one Binary message.

    Raises:
        InvalidArgument: `data` is not bytes-like, or `socket` is not a `Socket`.
        BadStateError: the WebSocket is no longer upgraded (its connection was lost).
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        websocket.send_binary(socket, bytes(range(256)))
        ```
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgument(f"send_binary takes bytes, got {type(data).__name__}")
    try:
        _send_checked(_check_socket(socket).connection, socket.stream, (Binary(bytes(data)),))
    except BadStateError as error:
        raise _ended(socket, error) from None


def receive_app_frame(socket: Socket, timeout: Timeout | None = None) -> AppFrame:
    """The next Text or Binary message; control frames are handled, never returned.

    A close from the peer raises `WebSocketClosed` with its code and reason. `timeout`
    is in milliseconds and bounds the whole wait; None takes `options.timeout` (5000).

    Raises:
        WebSocketClosed: the peer closed the WebSocket; `.code`, `.close_reason`.
        AwaitTimeout: no message in time; nothing was taken.
        ConnectionDown: the connection was lost.
        ConnectionTerminated: the connection stopped.

    Example:
        ```python
        match websocket.receive_app_frame(socket, 10_000):
            case Text(text): print(text)
            case Binary(data): print(len(data), "bytes")
        ```
    """
    _check_socket(socket)
    limit = _wait_timeout(socket.options) if timeout is None else timeout
    try:
        frame = _next_frame(socket, limit, (Text, Binary, Close))
    except ConnectionDown as error:
        if isinstance(error, ConnectionTerminated):
            raise
        raise ConnectionDown(
            f"the connection of {socket!r} was lost ({describe(error.reason)}) and its "
            "WebSocket with it: a reconnect brings the connection back as plain HTTP, "
            f"without the WebSocket; {_REOPEN}",
            error.reason,
        ) from error.__cause__
    return _app_frame(socket, frame)


def _app_frame(socket: Socket, frame: Frame) -> AppFrame:
    """`frame` (one of Text, Binary, Close) as `receive_app_frame` gives it: a Close
    raises `WebSocketClosed`."""
    if isinstance(frame, Close):
        raise WebSocketClosed(
            f"the peer closed the WebSocket (code {frame.code}, reason {frame.reason!r})",
            socket.stream,
            frame.code,
            frame.reason,
        )
    assert isinstance(frame, Text | Binary)
    return frame


def _next_frame(socket: Socket, timeout: Timeout, kinds: tuple[type, ...]) -> Frame:
    """The next frame of one of `kinds`, skipping the others; `timeout` bounds them all."""
    seconds = timeout_seconds(timeout)
    deadline = None if seconds is None else _now() + seconds
    conn, stream = socket.connection, socket.stream
    while True:
        remaining = None if deadline is None else max(0.0, deadline - _now())
        frame = wait_seconds(FrameWait(conn, stream), remaining, "WebSocket frame")
        if isinstance(frame, kinds):
            return frame


def close(socket: Socket) -> None:
    """Send a close frame (1000). The connection stays open: close it, or use `with_socket`.

    As Gluegun's `close`: the closing handshake then runs in the connection (bounded by
    `closing_timeout`); `socket.connection` is still the caller's to close.

    Raises:
        BadStateError: the WebSocket is no longer upgraded.
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        websocket.close(socket)
        connection.close(socket.connection)
        ```
    """
    _check_socket(socket)
    send(socket.connection, socket.stream, Close(1000, ""))


def with_socket(
    url: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    path: str | None = None,
    options: Options | None = None,
    callback: Callable[[Socket], T],
) -> T:
    """Connect (by `url`, or `host=`/`port=`/`path=` as `connect`), run `callback(socket)`,
    then close the WebSocket and the connection.

    The cleanup also runs when the callback raises; returns the callback's result. The
    close waits for the peer's close frame up to `closing_timeout`.

    Raises:
        InvalidArgument: `callback` is not callable; the rest as `connect`.

    Example:
        ```python
        def echo_once(socket: websocket.Socket) -> AppFrame:
            websocket.send_text(socket, "hello")
            return websocket.receive_app_frame(socket)

        reply = websocket.with_socket("ws://localhost:8080/echo", callback=echo_once)
        ```
    """
    if not callable(callback):
        raise InvalidArgument(f"callback must be callable, got {callback!r}")
    with connect(url, host=host, port=port, path=path, options=options) as socket:
        return callback(socket)


_REOPEN = (
    "open a new socket (websocket.connect), or open it with "
    "websocket.options(reupgrade=True) to have it upgraded again after each reconnect"
)


def _ended(socket: Socket, error: BadStateError) -> BadStateError:
    """The error for a send on a `Socket` whose WebSocket is gone (with its connection)."""
    if socket.stream.resilient:  # being upgraded again: `send`'s own message says so
        return error
    now = "is back" if socket.connection.protocol is Protocol.HTTP1 else "is reconnecting"
    return BadStateError(
        f"{socket!r} cannot send: its WebSocket ended when the connection was lost (or "
        f"closed), and the connection {now} as plain HTTP, without the WebSocket; {_REOPEN}"
    )


def _check_socket(socket: object) -> Socket:
    if not isinstance(socket, Socket):
        raise InvalidArgument(f"expected a websocket.Socket (from connect), got {socket!r}")
    return socket


def _close_all(socket: Socket) -> None:
    """Close handshake (bounded by the closing timeout), then the connection, then its messages."""
    conn = socket.connection
    try:
        if conn.alive and socket.stream in conn.ws_streams:
            close(socket)
            _await_close(socket)
    except GluegunError:
        pass
    finally:
        _discard(conn)


def _await_close(socket: Socket) -> None:
    options = socket.options
    closing = options.closing_timeout
    if closing is None:
        closing = (options.connection or connection.Options()).closing_timeout
    _next_frame(socket, closing, (Close,))


def _discard(conn: Connection) -> None:
    connection.close(conn)
    if conn.owner.mailbox is not None:
        connection.flush(conn)


_now = time.monotonic

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
from typing import Any, TypeVar

from gluegun_actors import connection
from gluegun_actors._await import MessageFuture, Wait, future, wait
from gluegun_actors._checks import check_connection, check_headers, check_reply_to, check_stream
from gluegun_actors._connection import commands
from gluegun_actors._connection.handle import Connection
from gluegun_actors._options import WsOptions, make_ws_options
from gluegun_actors._protocol.ws_handshake import check_extra_headers
from gluegun_actors._timeouts import Infinity, Timeout, timeout_seconds
from gluegun_actors._types import Protocol, StreamRef
from gluegun_actors.errors import (
    BadStateError,
    GluegunError,
    InvalidArgument,
    InvalidOptions,
    UnsupportedProtocol,
    UpgradeFailed,
    WebSocketClosed,
)
from gluegun_actors.events import GunData, GunResponse, GunTrailers, GunUpgrade, GunWs
from gluegun_actors.http import ReplyTo
from gluegun_actors.mailbox import Keep, current
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
    """WebSocket options, each checked here (`InvalidOptions`); see `Options` for every field."""
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
    """Upgrade over the protocol `await_up` returned; HTTP/2 is refused before any I/O."""
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
    check_extra_headers(checked)
    target = check_reply_to(reply_to)
    stream = StreamRef(reply_to=target, resilient=options.reupgrade)
    return commands.Upgrade(stream, path, checked, options)


def await_upgrade(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> GunUpgrade:
    """Wait for the upgrade of `stream`; returns the `GunUpgrade` (negotiated protocols).

    A non-101 answer raises `UpgradeFailed` with its status, headers and body.
    """
    return wait(_UpgradeWait(check_connection(conn), check_stream(stream)), timeout, "upgrade")


def await_upgrade_future(conn: Connection, stream: StreamRef) -> MessageFuture[GunUpgrade]:
    return future(_UpgradeWait(check_connection(conn), check_stream(stream)))


def send(conn: Connection, stream: StreamRef, frame: Frame | Sequence[Frame]) -> None:
    """Send one frame, or a list of frames in order, on an upgraded stream."""
    check_connection(conn)
    check_stream(stream)
    frames = checked_frames(frame)
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


def checked_frames(frame: Frame | Sequence[Frame]) -> tuple[Frame, ...]:
    """One frame or a list of them, as a tuple, each checked."""
    frames = tuple(frame) if isinstance(frame, list | tuple) else (frame,)
    for item in frames:
        if not isinstance(item, Text | Binary | Ping | Pong | Close):
            raise InvalidArgument(
                f"frames are message.Text/Binary/Ping/Pong/Close, got {type(item).__name__}"
            )
        if isinstance(item, Text) and not isinstance(item.text, str):
            raise InvalidArgument(f"Text carries a str, got {type(item.text).__name__}")
        if isinstance(item, Binary | Ping | Pong) and not isinstance(
            item.data, bytes | bytearray | memoryview
        ):
            raise InvalidArgument(f"{type(item).__name__} carries bytes, got {item.data!r}")
    return frames


def receive(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> Frame:
    """The next frame of an upgraded stream (Close frames too; pings when not silenced)."""
    waiting = _FrameWait(check_connection(conn), check_stream(stream))
    return wait(waiting, timeout, "WebSocket frame")


def receive_future(conn: Connection, stream: StreamRef) -> MessageFuture[Frame]:
    """`receive` as a Pykka future."""
    return future(_FrameWait(check_connection(conn), check_stream(stream)))


class _FrameWait(Wait[Frame]):
    """One frame; an upgrade answer still queued ends it with "call await_upgrade first"."""

    frame: Frame

    def take(self, message: Any) -> bool | Keep:
        if type(message) is GunWs:
            self.frame = message.frame
            self.finished = True
            return True
        if type(message) is GunUpgrade and self.stream is not None and self.stream.resilient:
            return True  # upgraded again after a reconnect: take it and wait on
        if type(message) in (GunUpgrade, GunResponse):
            error = BadStateError(
                f"the upgrade answer of {self.stream!r} is still in the mailbox: call "
                "websocket.await_upgrade before websocket.receive"
            )
            return self.fail(error, keep=True)
        return False

    def value(self) -> Frame:
        return self.frame


class _UpgradeWait(Wait[GunUpgrade]):
    """Takes the GunUpgrade, or a refusal: GunResponse and its whole body."""

    def __init__(self, conn: Connection, stream: StreamRef) -> None:
        super().__init__(conn, stream)
        self.upgrade: GunUpgrade | None = None
        self.response: GunResponse | None = None
        self.body: list[bytes] = []

    def take(self, message: Any) -> bool:
        match message:
            case GunUpgrade():
                self.upgrade = message
                self.finished = True
                return True
            case GunResponse(is_fin=is_fin):
                self.response = message
                self.finished = is_fin
                return True
            case GunData(is_fin=is_fin, data=chunk) if self.response is not None:
                self.body.append(chunk)
                self.finished = is_fin
                return True
            case GunTrailers() if self.response is not None:
                self.finished = True
                return True
        return False

    def value(self) -> GunUpgrade:
        if self.upgrade is not None:
            return self.upgrade
        assert self.response is not None
        raise UpgradeFailed(
            f"the server refused the WebSocket upgrade of {self.stream!r} with status "
            f"{self.response.status}",
            self.stream,
            self.response.status,
            self.response.headers,
            b"".join(self.body),
        )


# -- the Socket API -----------------------------------------------------------------------


class Socket:
    """An upgraded WebSocket stream on its own connection; reusable, lifecycle explicit.

    `connection` and `stream` are exposed so the caller can close the connection. As a
    context manager it closes the WebSocket and the connection on exit.
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


def connect(*, host: str, port: int, path: str = "/", options: Options | None = None) -> Socket:
    """Open a connection, upgrade it on `path`, and return the `Socket`.

    Its messages go to the calling thread's mailbox (or the owner given in the connection
    options), where the Socket API's blocking calls read them, also when called from
    inside a Pykka actor. On any failure the connection is closed before the error is
    raised.
    """
    if options is None:
        options = Options()
    elif not isinstance(options, Options):
        raise InvalidOptions("options must come from websocket.options()")
    conn_options = options.connection or connection.Options()
    if conn_options.owner is None:  # blocking calls read a mailbox, even inside an actor
        conn_options = dataclasses.replace(conn_options, owner=current())
    conn = connection.open(host, port, conn_options)
    try:
        protocol = connection.await_up(conn, _wait_timeout(options))
        reply_to = conn_options.owner
        stream = upgrade_with_protocol(conn, protocol, path, [], options, reply_to=reply_to)
        answer = await_upgrade(conn, stream, _wait_timeout(options))
    except BaseException:
        _discard(conn)
        raise
    chosen = answer.protocols[1] if len(answer.protocols) > 1 else None
    return Socket(conn, stream, options, chosen)


def send_text(socket: Socket, text: str) -> None:
    if not isinstance(text, str):
        raise InvalidArgument(f"send_text takes a str, got {type(text).__name__}")
    send(_check_socket(socket).connection, socket.stream, Text(text))


def send_binary(socket: Socket, data: bytes) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgument(f"send_binary takes bytes, got {type(data).__name__}")
    send(_check_socket(socket).connection, socket.stream, Binary(bytes(data)))


def receive_app_frame(socket: Socket, timeout: Timeout | None = None) -> AppFrame:
    """The next Text or Binary message; control frames are handled, never returned.

    A close from the peer raises `WebSocketClosed` with its code and reason.
    """
    _check_socket(socket)
    limit = _wait_timeout(socket.options) if timeout is None else timeout
    frame = _next_frame(socket, limit, (Text, Binary, Close))
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
    while True:
        remaining: Timeout = (
            Infinity if deadline is None else max(0, int((deadline - _now()) * 1000))
        )
        frame = receive(socket.connection, socket.stream, remaining)
        if isinstance(frame, kinds):
            return frame


def close(socket: Socket) -> None:
    """Send a close frame (1000). The connection stays open: close it, or use `with_socket`."""
    _check_socket(socket)
    send(socket.connection, socket.stream, Close(1000, ""))


def with_socket(
    *,
    host: str,
    port: int,
    path: str = "/",
    options: Options | None = None,
    callback: Callable[[Socket], T],
) -> T:
    """Connect, run `callback(socket)`, then close the WebSocket and the connection.

    The cleanup also runs when the callback raises; returns the callback's result.
    """
    if not callable(callback):
        raise InvalidArgument(f"callback must be callable, got {callback!r}")
    with connect(host=host, port=port, path=path, options=options) as socket:
        return callback(socket)


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

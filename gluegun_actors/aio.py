"""asyncio: await connection and stream messages in coroutines, the event loop never blocked.

**Why.** The blocking helpers (`connection.await_up`, `http.await_body`,
`websocket.receive`, ...) put the calling thread to sleep, which would stall an asyncio
event loop and every coroutine on it. The coroutines here wait on the same mailbox with
the same matching (the very `Wait` objects the blocking helpers use) while the loop keeps
running: a waiting coroutine costs no thread and nothing polls. The connection's turn that
delivers the awaited message hands it to the loop (`loop.call_soon_threadsafe`).

| blocking | coroutine |
| --- | --- |
| `connection.await_up` | `await_up` |
| `http.await_response`, `await_body`, `await_body_and_trailers`, `await_next` | the same names |
| `websocket.await_upgrade` | `await_upgrade` |
| `websocket.receive` | `receive_frame` |
| `websocket.connect`, `receive_app_frame`, `with_socket` | the same names |
| leaving `with socket:` | `disconnect` |
| `Mailbox.receive`, `Mailbox.collect` | `receive`, `collect` |
| a loop over `Mailbox.receive` | `async for message in messages()` |
| `connection.close` | `close` |

Starting things never blocks (`connection.open`, `http.get`, `websocket.upgrade`,
`websocket.send_text`, `websocket.close`...): call those directly from a coroutine.

**Who gets the messages.** A `Mailbox`, as for threads: in an asyncio app, the loop
thread's own mailbox (`mailbox.current()`, the default owner and `reply_to` of calls made
on the loop thread), or a dedicated `Mailbox` passed as `owner=` / `reply_to=`. Many
coroutines may wait on one mailbox at once, each for its own connection or stream; a
message goes to the first wait that matches it, the others stay queued. Waiting where the
messages go to a Pykka actor raises `BadStateError`, as the blocking helpers do.

**Timeouts and errors.** Timeouts are milliseconds, as in the blocking API: an `int`,
`Milliseconds(n)` or `Infinity` (a `float` is refused with `InvalidTimeout`: it is almost
always seconds). The errors are the blocking helpers': `AwaitTimeout` when nothing came in
time (nothing was taken); `ConnectionDown` when the connection is lost before the stream
finished; `ConnectionTerminated` when the connection actor has stopped (its `Down` ends
the wait at once); `StreamError`, `UpgradeFailed`, `WebSocketClosed` as documented there.
`asyncio.wait_for` and `asyncio.timeout` work too: they cancel the wait.

**Cancellation loses no message.** Whatever a cancelled wait had taken goes back to its
place in the mailbox, in order, for the next wait: the first pieces of a body `await_body`
was collecting, and also a message taken just before the cancellation reached the
coroutine. That happens inside `task.cancel()`, so the messages are back when it returns.
A coroutine has taken a message only when it returns it.

```python
import asyncio
from gluegun_actors import aio, websocket

async def main() -> None:
    socket = await aio.connect("ws://127.0.0.1:8080/echo")
    try:
        websocket.send_text(socket, "hello")
        print(await aio.receive_app_frame(socket, 5000))  # Text(text='hello')
    finally:
        await aio.disconnect(socket)

asyncio.run(main())
```
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast, overload

import pykka

from gluegun_actors import connection, websocket
from gluegun_actors._aio import collect as _collect
from gluegun_actors._aio import wait as _wait
from gluegun_actors._awaited import (
    BodyAndTrailersWait,
    BodyWait,
    FrameWait,
    NextWait,
    ResponseWait,
    UpgradeWait,
    UpWait,
)
from gluegun_actors._checks import check_connection, check_stream
from gluegun_actors._connection import commands
from gluegun_actors._connection.handle import Connection
from gluegun_actors._timeouts import Infinity, Milliseconds, Timeout
from gluegun_actors._types import Headers, Protocol, StreamRef
from gluegun_actors._waits import One
from gluegun_actors.connection import _CLOSE_WAIT
from gluegun_actors.errors import (
    AwaitTimeout,
    GluegunError,
    InvalidArgument,
)
from gluegun_actors.events import Down, GunResponse, GunUpgrade
from gluegun_actors.mailbox import Collector, Mailbox, Match, current, predicate
from gluegun_actors.message import AppFrame, Binary, Close, Frame, Text
from gluegun_actors.supervisor import demonitor, monitor
from gluegun_actors.websocket import (
    Socket,
    _app_frame,
    _check_socket,
    _wait_timeout,
)

__all__ = [
    "Messages",
    "await_body",
    "await_body_and_trailers",
    "await_next",
    "await_response",
    "await_up",
    "await_upgrade",
    "close",
    "collect",
    "connect",
    "disconnect",
    "messages",
    "receive",
    "receive_app_frame",
    "receive_frame",
    "with_socket",
]

T = TypeVar("T")
M = TypeVar("M")


# -- connections and streams ----------------------------------------------------------------


async def await_up(conn: Connection, timeout: Timeout = 5000) -> Protocol:
    """Wait until `conn` is up and return its protocol (`connection.await_up`).

    `ConnectionTerminated` if the connection stops first (say, its retries ran out).
    """
    return await _wait(UpWait(check_connection(conn)), timeout, "GunUp")


async def await_response(
    conn: Connection, stream: StreamRef, timeout: Timeout = 5000
) -> GunResponse:
    """The stream's `GunResponse`, 1xx informs skipped (`http.await_response`)."""
    waiting = ResponseWait(check_connection(conn), check_stream(stream))
    return await _wait(waiting, timeout, "response")


async def await_body(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> bytes:
    """The rest of the stream's body, whole (`http.await_body`, Gun's `gun:await_body`).

    As in Gun, `timeout` bounds each message: a slow body that never pauses longer than
    that is waited for to its end. On timeout or cancellation every piece taken goes back.
    """
    waiting = BodyWait(check_connection(conn), check_stream(stream))
    return await _wait(waiting, timeout, "complete body", per_message=True)


async def await_body_and_trailers(
    conn: Connection, stream: StreamRef, timeout: Timeout = 5000
) -> tuple[bytes, Headers]:
    """`await_body`, also returning the trailers (`http.await_body_and_trailers`)."""
    waiting = BodyAndTrailersWait(check_connection(conn), check_stream(stream))
    return await _wait(waiting, timeout, "complete body", per_message=True)


async def await_next(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> Any:
    """The next message of the stream, whatever it is (`http.await_next`, Gun's `gun:await`)."""
    waiting = NextWait(check_connection(conn), check_stream(stream))
    return await _wait(waiting, timeout, "message")


async def await_upgrade(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> GunUpgrade:
    """The `GunUpgrade` of a WebSocket stream (`websocket.await_upgrade`).

    A refusal (not 101) raises `UpgradeFailed` with its status, headers and body.
    """
    waiting = UpgradeWait(check_connection(conn), check_stream(stream))
    return await _wait(waiting, timeout, "upgrade")


async def receive_frame(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> Frame:
    """The next frame of an upgraded stream, Close frames too (`websocket.receive`).

    Call `await_upgrade` first: an upgrade answer still queued raises `BadStateError`.
    """
    waiting = FrameWait(check_connection(conn), check_stream(stream))
    return await _wait(waiting, timeout, "WebSocket frame")


async def close(conn: Connection) -> None:
    """Close `conn` at once, as `connection.close`, and return once its actor is gone
    (bounded, as there), without blocking the loop: a monitor's `Down` says when."""
    check_connection(conn)
    ref = conn.actor_ref
    if ref is None:
        return
    gone = Mailbox(f"aio.close {conn!r}")
    watch = monitor(conn, owner=gone)
    try:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(commands.CloseNow())
        await _collect(gone, One(Down), Milliseconds(int(_CLOSE_WAIT * 1000)))
    except AwaitTimeout:
        pass  # as connection.close: the caller is not held up longer
    finally:
        demonitor(watch)


# -- the mailbox ---------------------------------------------------------------------------


@overload
async def receive(
    match: type[M], timeout: Timeout = Infinity, *, mailbox: Mailbox | None = None
) -> M: ...


@overload
async def receive(
    match: Match = None, timeout: Timeout = Infinity, *, mailbox: Mailbox | None = None
) -> object: ...


async def receive(
    match: Match = None, timeout: Timeout = Infinity, *, mailbox: Mailbox | None = None
) -> object:
    """Take the first message that matches, in arrival order (`Mailbox.receive`).

    `match` is a class, a tuple or union of classes, a pure predicate, or None for any
    message; `mailbox` defaults to the calling thread's own (`mailbox.current()`). The
    other messages stay where they are. `AwaitTimeout` after `timeout` ms (default:
    wait forever), taking nothing.

    Raises:
        AwaitTimeout: nothing matched within `timeout`; nothing was taken.
        InvalidTimeout: `timeout` is a `float` (seconds by mistake).

    Example:
        ```python
        down = await aio.receive(lambda m: isinstance(m, GunDown) and m.conn is conn, 1000)
        ```
    """
    return await _collect(_mailbox(mailbox), One(match), timeout)


async def collect(
    collector: Collector[T],
    timeout: Timeout = Infinity,
    *,
    mailbox: Mailbox | None = None,
    per_message: bool = False,
) -> T:
    """Feed messages to `collector` until it is done and return its result
    (`Mailbox.collect`); on timeout or cancellation every message it took goes back."""
    return await _collect(_mailbox(mailbox), collector, timeout, per_message=per_message)


class Messages(Generic[M]):
    """An endless async iterator of the messages of a mailbox that match, in order.

    Each step is a `receive` with no timeout: stop with `break`, or cancel the task
    (nothing is lost either way). Bound a quiet stream with `asyncio.timeout`.
    """

    __slots__ = ("_match", "mailbox")

    def __init__(self, mailbox: Mailbox, match: Match) -> None:
        predicate(match)  # refuse a bad match now, not at the first step
        self.mailbox = mailbox
        self._match = match  # the same object every step: the mailbox remembers its scans

    def __aiter__(self) -> Messages[M]:
        return self

    async def __anext__(self) -> M:
        return cast(M, await _collect(self.mailbox, One(self._match), Infinity))

    def __repr__(self) -> str:
        return f"<aio.Messages of {self.mailbox!r} matching {self._match!r}>"


@overload
def messages(mailbox: Mailbox | None = None, *, match: type[M]) -> Messages[M]: ...


@overload
def messages(mailbox: Mailbox | None = None, *, match: Match = None) -> Messages[Any]: ...


def messages(mailbox: Mailbox | None = None, *, match: Match = None) -> Messages[Any]:
    """`async for message in aio.messages():` the owner's messages as they come.

    `mailbox` defaults to the calling thread's own, taken now (call it on the loop
    thread); `match` (as for `receive`) leaves the other messages queued for other waits.

    Example:
        ```python
        async for event in aio.messages(match=GunUp | GunDown):
            match event:
                case GunUp(conn, protocol): ...
                case GunDown(conn, _, reason, killed_streams): ...
        ```
    """
    return Messages(_mailbox(mailbox), match)


def _mailbox(mailbox: object) -> Mailbox:
    if mailbox is None:
        return current()
    if not isinstance(mailbox, Mailbox):
        raise InvalidArgument(f"mailbox must be a gluegun_actors.mailbox.Mailbox, got {mailbox!r}")
    return mailbox


# -- the Socket API ------------------------------------------------------------------------


async def connect(
    url: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    path: str | None = None,
    options: websocket.Options | None = None,
) -> Socket:
    """Open a connection, upgrade it, and return the `websocket.Socket` (`websocket.connect`).

    Give a `url` (`ws://host[:port]/path`, or `wss://` for TLS with verification on), or
    `host=`, `port=` and `path=` (default `/`). Its messages go to the calling thread's
    mailbox (the loop thread's), or to the owner in the connection options. Waits are
    bounded by `options.timeout` (ms). On any failure, cancellation included, the
    connection is closed before the error is raised. Use the socket with
    `websocket.send_text` / `send_binary` and `receive_app_frame`; end it with
    `disconnect`.
    """
    options, host, port, path, conn_options = websocket.socket_target(
        url, host, port, path, options
    )
    conn = connection.open(host, port, conn_options)
    limit = _wait_timeout(options)
    try:
        protocol = await await_up(conn, limit)
        stream = websocket.upgrade_with_protocol(
            conn, protocol, path, [], options, reply_to=conn_options.owner
        )
        answer = await await_upgrade(conn, stream, limit)
    except BaseException:
        await _discard(conn)
        raise
    chosen = answer.protocols[1] if len(answer.protocols) > 1 else None
    return Socket(conn, stream, options, chosen)


async def receive_app_frame(socket: Socket, timeout: Timeout | None = None) -> AppFrame:
    """The next Text or Binary message (`websocket.receive_app_frame`); control frames
    are handled, never returned. `timeout` defaults to the socket's `options.timeout`.

    A close from the peer raises `WebSocketClosed` with its code and reason.
    """
    _check_socket(socket)
    limit = _wait_timeout(socket.options) if timeout is None else timeout
    frame = await _next_frame(socket, limit, (Text, Binary, Close))
    return _app_frame(socket, frame)


async def disconnect(socket: Socket) -> None:
    """End a socket as leaving `with socket:` does: a close frame (1000), the peer's close
    awaited up to the closing timeout, then the connection closed and its messages
    flushed from the mailbox. Harmless on a socket already closed or lost."""
    await _end(_check_socket(socket), handshake=True)


async def with_socket(
    url: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    path: str | None = None,
    options: websocket.Options | None = None,
    callback: Callable[[Socket], Awaitable[T]],
) -> T:
    """Connect (as `connect`), await `callback(socket)`, then `disconnect`; returns the
    callback's result (`websocket.with_socket`).

    The cleanup also runs when the callback raises; when it is cancelled the connection
    is closed at once, without waiting for the peer's close.
    """
    if not callable(callback):
        raise InvalidArgument(f"callback must be callable, got {callback!r}")
    socket = await connect(url, host=host, port=port, path=path, options=options)
    try:
        result = await callback(socket)
    except asyncio.CancelledError:
        await _end(socket, handshake=False)
        raise
    except BaseException:
        await _end(socket, handshake=True)
        raise
    await _end(socket, handshake=True)
    return result


class _FrameOfKindsWait(FrameWait):
    """The next frame of one of `kinds`; the frames before it are taken and skipped."""

    def __init__(self, conn: Connection, stream: StreamRef, kinds: tuple[type, ...]) -> None:
        super().__init__(conn, stream)
        self.kinds = kinds

    def take(self, message: Any) -> Any:
        verdict = super().take(message)
        if self.finished and self.error is None and not isinstance(self.frame, self.kinds):
            self.finished = False  # a frame of another kind: skipped
        return verdict


async def _next_frame(socket: Socket, timeout: Timeout, kinds: tuple[type, ...]) -> Frame:
    waiting = _FrameOfKindsWait(socket.connection, socket.stream, kinds)
    return await _wait(waiting, timeout, "WebSocket message")


async def _end(socket: Socket, *, handshake: bool) -> None:
    conn = socket.connection
    try:
        if handshake and conn.alive and socket.stream in conn.ws_streams:
            websocket.close(socket)
            options = socket.options
            closing = options.closing_timeout
            if closing is None:
                closing = (options.connection or connection.Options()).closing_timeout
            await _next_frame(socket, closing, (Close,))
    except GluegunError:
        pass
    finally:
        await _discard(conn)


async def _discard(conn: Connection) -> None:
    await close(conn)
    if conn.owner.mailbox is not None:
        connection.flush(conn)

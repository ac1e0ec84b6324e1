"""Open, watch and close connections (Gun's `gun:open`, `gun:await_up`, `gun:close`...).

A connection is an actor that connects in the background and reports to its owner:

    conn = connection.open("localhost", 8080)
    protocol = connection.await_up(conn, connection.Milliseconds(5000))
    ...
    connection.close(conn)
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import pykka

from gluegun_actors._await import (
    MessageFuture,
    future,
    owner_mailbox,
    stream_mailbox,
    wait,
)
from gluegun_actors._awaited import UpWait
from gluegun_actors._checks import check_address, check_connection, check_stream
from gluegun_actors._connection import commands
from gluegun_actors._connection.actor import ConnectionActor
from gluegun_actors._connection.destination import caller, destination
from gluegun_actors._connection.handle import Connection
from gluegun_actors._connection.info import ConnectionInfo, StreamInfo
from gluegun_actors._connection.stats import ConnectionStats
from gluegun_actors._io import acquire_reactor, release_reactor
from gluegun_actors._options import Options, make_options
from gluegun_actors._timeouts import Infinity, Milliseconds, Timeout
from gluegun_actors._types import Protocol, StreamRef
from gluegun_actors._url import parse_url, url_options
from gluegun_actors.errors import ConnectionTerminated, InvalidArgument, InvalidOptions
from gluegun_actors.mailbox import Mailbox, current

__all__ = [
    "Connection",
    "ConnectionInfo",
    "ConnectionStats",
    "Infinity",
    "Milliseconds",
    "Options",
    "Protocol",
    "StreamInfo",
    "StreamRef",
    "Timeout",
    "await_up",
    "await_up_future",
    "close",
    "flush",
    "info",
    "open",
    "open_url",
    "options",
    "set_owner",
    "shutdown",
    "stats",
    "stream_info",
    "update_flow",
]

_CLOSE_WAIT = 10.0


def options(**fields: Any) -> Options:
    """Connection options, validated; see `Options` for every field and its default.

    Durations are milliseconds (an `int`, `Milliseconds` or `Infinity`).

    Raises:
        InvalidOptions: an unknown name, a value of the wrong type or out of range; the
            message names the option.

    Example:
        ```python
        opts = connection.options(retry=10, retry_timeout=1000, connect_timeout=3000)
        conn = connection.open("example.com", 443, opts)  # TLS: chosen by port
        ```
    """
    return make_options(**fields)


def open(host: str, port: int, options: Options | None = None) -> Connection:
    """Start a connection actor to `host:port`; it connects in the background.

    Returns at once, before any I/O (Gun's `gun:open`). The owner receives `GunUp` once
    connected: `options.owner`, else the calling Pykka actor when called from one, else
    the calling thread's `mailbox.current()`. The transport is TLS on port 443 and TCP
    elsewhere unless `options.transport` says otherwise.

    Raises:
        InvalidArgument: `host` is not a non-empty str (or carries `user@`), `port` is not
            an int in 1..65535.
        InvalidOptions: `options` did not come from `connection.options()`.

    Example:
        ```python
        conn = connection.open("localhost", 8080, connection.options(retry=0))
        connection.await_up(conn, 5000)
        ```
    """
    conn, options = handle(host, port, options)
    launch(conn, options)
    return conn


def open_url(url: str, options: Options | None = None) -> Connection:
    """Start a connection to the host and port of `url` (Gun's `gun:open` by URL).

    `ws://` and `http://` are TCP, `wss://` and `https://` TLS with verification on;
    without a port, 80 or 443. The path is not used here: give it to the request or the
    upgrade (`websocket.connect(url=...)` does both).

    Raises:
        InvalidArgument: a bad URL (unknown scheme, no host, credentials in it).
        InvalidOptions: a `transport` option that contradicts the scheme.

    Example:
        ```python
        conn = connection.open_url("https://example.com")  # example.com:443 over TLS
        stream = http.get(conn, "/")
        ```
    """
    parsed = parse_url(url)
    return open(parsed.host, parsed.port, url_options(parsed, options))


def handle(host: str, port: int, options: Options | None) -> tuple[Connection, Options]:
    """`open`'s first half: check the arguments and make the handle, not yet started
    (so that a manager can announce it before it can send anything)."""
    check_address(host, port)
    if options is None:
        options = Options()
    elif not isinstance(options, Options):
        raise InvalidOptions(f"options must come from connection.options(), got {options!r}")
    owner = destination(options.owner if options.owner is not None else caller())
    return Connection(host.strip("[]"), port, owner), options


def launch(conn: Connection, options: Options) -> None:
    """`open`'s second half: start the handle's actor; it connects in the background."""
    reactor = acquire_reactor()
    try:
        conn.actor_ref = ConnectionActor.start(conn, options, reactor)
    except BaseException:
        release_reactor(reactor)
        raise


def await_up(conn: Connection, timeout: Timeout = 5000) -> Protocol:
    """Wait until `conn` is up and return its protocol; raise if it stops first.

    Takes the connection's `GunUp` from its owner's mailbox, waiting up to `timeout`
    milliseconds (an `int`, `Milliseconds` or `Infinity`); every other message stays.

    Raises:
        AwaitTimeout: no `GunUp` in time. While the connection keeps failing to
            connect, the error names the last connect error, also its `__cause__`.
        ConnectionTerminated: the connection stopped first; `.reason` says why (the last
            connect error once its retries ran out).
        BadStateError: the owner is a Pykka actor: its messages arrive in `on_receive`.
        InvalidTimeout: `timeout` is a `float` (seconds by mistake).

    Example:
        ```python
        conn = connection.open("localhost", 8080)
        protocol = connection.await_up(conn, 5000)  # Protocol.HTTP1
        ```
    """
    return wait(UpWait(check_connection(conn)), timeout, "GunUp")


def await_up_future(conn: Connection) -> MessageFuture[Protocol]:
    """`await_up` as a Pykka future (for `pykka.get_all` over many connections).

    Its `get(timeout=)` takes seconds as a `float` (Pykka's unit), `Milliseconds`,
    `Infinity` or None, and raises what `await_up` raises (`pykka.Timeout` when the
    timeout passes); `cancel()` gives up the wait and leaves the mailbox as it was.

    Raises:
        BadStateError: the owner is a Pykka actor.

    Example:
        ```python
        futures = [connection.await_up_future(c) for c in conns]
        protocols = pykka.get_all(futures, timeout=5.0)  # seconds, as Pykka
        ```
    """
    return future(UpWait(check_connection(conn)))


def close(conn: Connection) -> None:
    """Close at once: the socket is closed, the actor stopped, nothing more is delivered.

    Returns once the actor is gone. Streams in flight are dropped without messages; what
    was already delivered stays in the mailbox (see `flush`). Closing twice is harmless.
    The owner gets no `Down`; a `reply_to` with a live stream gets `Down(conn, "shutdown")`.
    Gun's `gun:close`.

    Raises:
        InvalidArgument: `conn` is not a `Connection`.

    Example:
        ```python
        connection.close(conn)
        connection.flush(conn)  # drop what it had delivered and nobody read
        ```
    """
    check_connection(conn)
    ref = conn.actor_ref
    if ref is None:
        return
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(commands.CloseNow())
    conn.finished.wait(_CLOSE_WAIT)


def shutdown(conn: Connection) -> None:
    """Close gracefully: the active request completes, pipelined ones fail, WebSockets get
    close 1001; no `GunDown`, no reconnect; the owner gets `Down(conn, "normal")` at the end.

    Returns at once (Gun's `gun:shutdown`); the whole close is bounded by the
    `closing_timeout` option (ms), after which the socket is closed anyway.

    Raises:
        ConnectionTerminated: the connection has already stopped.

    Example:
        ```python
        connection.shutdown(conn)
        mailbox.current().receive(lambda m: isinstance(m, Down) and m.conn is conn, 20_000)
        ```
    """
    check_connection(conn).tell(commands.CloseGracefully())


def flush(conn_or_stream: Connection | StreamRef, conn: Connection | None = None) -> int:
    """Remove the messages of a connection from its owner's mailbox, or of one stream
    from the mailbox its messages go to (its `reply_to`).

    Race-free where Gun's is not: `flush(conn)` and `flush(stream, conn)` first pass a
    barrier through the actor, so every message it produced before the call is in the
    mailbox when it flushes, and flushing a stream also cancels it, so none of its
    messages can arrive afterwards. `flush(stream)` alone is Gun's: it removes what the
    calling thread's mailbox holds for the stream now. Returns how many were removed.

    Raises:
        InvalidArgument: neither a `Connection` nor a `StreamRef`.
        BadStateError: the messages go to a Pykka actor, not a mailbox.

    Example:
        ```python
        removed = connection.flush(conn)             # everything of conn, race-free
        connection.flush(stream, conn)               # one stream: cancel it, then flush
        ```
    """
    if isinstance(conn_or_stream, Connection):
        target: Connection | None = conn_or_stream
        stream = None
    else:
        stream = check_stream(conn_or_stream)
        target = None if conn is None else check_connection(conn)
    if target is None:
        return current().flush(lambda message: getattr(message, "stream", None) == stream)
    mailbox = owner_mailbox(target) if stream is None else stream_mailbox(target, stream)
    _barrier(target, stream)

    def match(message: object) -> bool:
        if getattr(message, "conn", None) is not target:
            return False
        return stream is None or getattr(message, "stream", None) == stream

    return mailbox.flush(match)


def _barrier(conn: Connection, stream: StreamRef | None) -> None:
    ref = conn.actor_ref
    if ref is None or not conn.alive:
        return
    with contextlib.suppress(pykka.ActorDeadError):
        ref.ask(commands.Barrier(stream), timeout=_CLOSE_WAIT)


def info(conn: Connection) -> ConnectionInfo:
    """A snapshot of the connection: state, protocol, owner, socket addresses, streams.

    Gun's `gun:info/1`, asked of the actor (a round trip of at most 10 s). While the
    connection fails to connect, `last_error` is the exception of the last attempt.

    Raises:
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        snapshot = connection.info(conn)
        print(snapshot.state_name, snapshot.sock_ip, snapshot.sock_port)
        ```
    """
    check_connection(conn)
    conn.check_alive()
    assert conn.actor_ref is not None
    try:
        answer = conn.actor_ref.ask(commands.InfoRequest(), timeout=_CLOSE_WAIT)
    except pykka.ActorDeadError:
        raise ConnectionTerminated(f"{conn!r} has stopped", conn.exit_reason) from None
    return cast(ConnectionInfo, answer)


def stats(conn: Connection) -> ConnectionStats:
    """The connection's counters and state now, without asking the actor (so it never
    waits, and still answers after the connection stopped).

    Raises:
        InvalidArgument: `conn` is not a `Connection`.

    Example:
        ```python
        counters = connection.stats(conn)
        print(counters.state, counters.bytes_in, counters.reconnects)
        ```
    """
    return check_connection(conn).stats.snapshot()


def stream_info(conn: Connection, stream: StreamRef) -> StreamInfo | None:
    """A snapshot of one stream: its state, where its messages go, its protocol; None for a
    stream the connection does not know (finished, failed, or never started on it).

    Gun's `gun:stream_info/2`, asked of the actor.

    Raises:
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        stream = http.get(conn, "/slow")
        connection.stream_info(conn, stream)  # StreamInfo(ref=..., state='running', ...)
        ```
    """
    check_connection(conn)
    check_stream(stream)
    conn.check_alive()
    assert conn.actor_ref is not None
    try:
        answer = conn.actor_ref.ask(commands.StreamInfoRequest(stream), timeout=_CLOSE_WAIT)
    except pykka.ActorDeadError:
        raise ConnectionTerminated(f"{conn!r} has stopped", conn.exit_reason) from None
    return cast(StreamInfo | None, answer)


def set_owner(conn: Connection, owner: Mailbox | pykka.ActorRef[Any]) -> None:
    """Send every later message of `conn` to `owner` (and watch it instead of the old one).

    Gun's `gun:set_owner/2`. Streams already started keep their `reply_to`. Returns once
    the actor has switched (a round trip).

    Raises:
        InvalidArgument: `owner` is neither a `Mailbox` nor a Pykka `ActorRef`.
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        worker_mailbox = mailbox.Mailbox("worker")
        connection.set_owner(conn, worker_mailbox)  # GunDown, GunUp... now go there
        ```
    """
    check_connection(conn)
    if not isinstance(owner, Mailbox | pykka.ActorRef):
        raise InvalidArgument(f"owner must be a Mailbox or a pykka.ActorRef, got {owner!r}")
    conn.check_alive()
    assert conn.actor_ref is not None
    try:
        conn.actor_ref.ask(commands.SetOwner(owner), timeout=_CLOSE_WAIT)
    except pykka.ActorDeadError:
        raise ConnectionTerminated(f"{conn!r} has stopped", conn.exit_reason) from None


def update_flow(conn: Connection, stream: StreamRef, credits: int) -> None:
    """Give `stream` more flow credits (Gun's `gun:update_flow`); reading resumes above zero.

    A credit is one `GunData` or `GunWs` data message. Only streams opened with the
    `flow` option count credits. An unknown stream gets a `GunError` with a
    `BadStateError`, as in Gun.

    Raises:
        InvalidArgument: `credits` is not a positive int.
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        ws = websocket.upgrade(conn, "/feed", [], websocket.options(flow=10))
        ...  # after handling ten messages:
        connection.update_flow(conn, ws, 10)
        ```
    """
    check_connection(conn)
    check_stream(stream)
    if isinstance(credits, bool) or not isinstance(credits, int) or credits < 1:
        raise InvalidArgument(f"credits must be a positive int, got {credits!r}")
    conn.tell(commands.UpdateFlow(stream, credits))

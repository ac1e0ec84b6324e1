"""Open, watch and close connections (Gun's `gun:open`, `gun:await_up`, `gun:close`...).

A connection is an actor that connects in the background and reports to its owner::

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
    Wait,
    future,
    owner_mailbox,
    stream_mailbox,
    wait,
)
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
from gluegun_actors.errors import ConnectionTerminated, InvalidArgument, InvalidOptions
from gluegun_actors.events import GunUp
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
    "options",
    "set_owner",
    "shutdown",
    "stats",
    "stream_info",
    "update_flow",
]

_CLOSE_WAIT = 10.0


def options(**fields: Any) -> Options:
    """Connection options, validated; see `Options` for every field and its default."""
    return make_options(**fields)


def open(host: str, port: int, options: Options | None = None) -> Connection:
    """Start a connection actor to `host:port`; it connects in the background.

    The owner (by default the calling thread's mailbox) receives `GunUp` once connected.
    """
    conn, options = handle(host, port, options)
    launch(conn, options)
    return conn


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
    """Wait until `conn` is up and return its protocol; raise if it stops first."""
    return wait(_UpWait(check_connection(conn)), timeout, "GunUp")


def await_up_future(conn: Connection) -> MessageFuture[Protocol]:
    """`await_up` as a Pykka future (for `pykka.get_all` over many connections)."""
    return future(_UpWait(check_connection(conn)))


class _UpWait(Wait[Protocol]):
    protocol: Protocol

    def take(self, message: Any) -> bool:
        if type(message) is GunUp:
            self.protocol = message.protocol
            self.finished = True
            return True
        return False

    def value(self) -> Protocol:
        return self.protocol


def close(conn: Connection) -> None:
    """Close at once: the socket is closed, the actor stopped, nothing more is delivered.

    Returns once the actor is gone. Streams in flight are dropped without messages; what
    was already delivered stays in the mailbox (see `flush`). Closing twice is harmless.
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
    close 1001; no `GunDown`, no reconnect; the owner gets `Down(conn, "normal")` at the end."""
    check_connection(conn).tell(commands.CloseGracefully())


def flush(conn_or_stream: Connection | StreamRef, conn: Connection | None = None) -> int:
    """Remove the messages of a connection from its owner's mailbox, or of one stream
    from the mailbox its messages go to (its `reply_to`).

    Race-free where Gun's is not: `flush(conn)` and `flush(stream, conn)` first pass a
    barrier through the actor, so every message it produced before the call is in the
    mailbox when it flushes, and flushing a stream also cancels it, so none of its
    messages can arrive afterwards. `flush(stream)` alone is Gun's: it removes what the
    calling thread's mailbox holds for the stream now. Returns how many were removed.
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
    """A snapshot of the connection: state, protocol, owner, socket addresses, streams."""
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
    waits, and still answers after the connection stopped)."""
    return check_connection(conn).stats.snapshot()


def stream_info(conn: Connection, stream: StreamRef) -> StreamInfo | None:
    """A snapshot of one stream: its state, where its messages go, its protocol; None for a
    stream the connection does not know (finished, failed, or never started on it)."""
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
    """Send every later message of `conn` to `owner` (and watch it instead of the old one)."""
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
    """Give `stream` more flow credits (Gun's `gun:update_flow`); reading resumes above zero."""
    check_connection(conn)
    check_stream(stream)
    if isinstance(credits, bool) or not isinstance(credits, int) or credits < 1:
        raise InvalidArgument(f"credits must be a positive int, got {credits!r}")
    conn.tell(commands.UpdateFlow(stream, credits))

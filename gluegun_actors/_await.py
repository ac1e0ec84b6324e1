"""Selective receive for one connection: the machinery under every `await_*` helper.

Every await helper is a `Wait`: a mailbox `Collector` that takes the messages answering
it (a stream's response and body, an upgrade, a frame) and also ends on the messages that
mean no answer will come: `GunError` for its stream (taken: it belongs to the stream),
`GunDown` naming its stream and `Down` for its connection (kept: `KEEP` leaves them in
place for the owner and the other waits). A timeout gives back everything it took.

`wait` blocks in the calling thread without allocating a future when the answer is
already queued; each helper is also available as a Pykka future (`MessageFuture`), so a
caller can wait on many connections at once with `pykka.get_all`.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import pykka

from gluegun_actors._connection.handle import Connection
from gluegun_actors._timeouts import FutureTimeout, Timeout, future_timeout_seconds, timeout_seconds
from gluegun_actors._types import StreamRef
from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    ConnectionDown,
    GluegunError,
    StreamError,
    describe,
)
from gluegun_actors.events import (
    Down,
    GunData,
    GunDown,
    GunError,
    GunInform,
    GunResponse,
    GunTrailers,
    GunUpgrade,
    GunWs,
)
from gluegun_actors.mailbox import KEEP, Keep, Mailbox

T = TypeVar("T")


def owner_mailbox(conn: Connection) -> Mailbox:
    """The mailbox where the connection's own messages go: its owner's."""
    mailbox = conn.owner.mailbox
    if mailbox is None:
        raise BadStateError(
            f"the owner of {conn!r} is a Pykka actor: its messages arrive in its on_receive, "
            "so await helpers cannot read them; receive them there, or set_owner to a Mailbox"
        )
    return mailbox


def stream_mailbox(conn: Connection, stream: StreamRef) -> Mailbox:
    """The mailbox where `stream`'s messages go: its `reply_to`, else the owner's."""
    target = stream.reply_to
    if target is None:
        return owner_mailbox(conn)
    if not isinstance(target, Mailbox):
        raise BadStateError(
            f"the messages of {stream!r} go to the Pykka actor {target!r} (its reply_to): "
            "they arrive in its on_receive, so await helpers cannot read them"
        )
    return target


def failure(conn: Connection, message: object) -> GluegunError:
    """The exception for a message that ended a wait without answering it."""
    match message:
        case Down(reason=reason):
            return conn.terminated(reason, "nothing more will come from it")
        case GunDown(reason=reason):
            error = ConnectionDown(
                f"{conn!r} went down ({describe(reason)}) before the stream finished", reason
            )
            if isinstance(reason, BaseException):
                error.__cause__ = reason
            return error
        case GunError(stream=stream, reason=reason):
            if isinstance(reason, GluegunError):
                return reason
            return StreamError(f"stream failed: {describe(reason)}", stream, reason)
    raise AssertionError(message)  # pragma: no cover


_STREAM_KINDS = (GunInform, GunResponse, GunData, GunTrailers, GunUpgrade, GunWs)


class Wait(Generic[T]):
    """A collector for one await: `take` the answers, end on the connection's failures.

    `stream` None waits on the connection as a whole (only `Down` ends it). Subclasses
    implement `take` (True to take a message of the stream; set `finished` when complete)
    and `value`.
    """

    def __init__(self, conn: Connection, stream: StreamRef | None = None) -> None:
        self.conn = conn
        self.stream = stream
        self.error: GluegunError | None = None
        self.finished = False

    def mailbox(self) -> Mailbox:
        """Where the messages it waits for go."""
        if self.stream is None:
            return owner_mailbox(self.conn)
        return stream_mailbox(self.conn, self.stream)

    def offer(self, message: object) -> bool | Keep:
        if getattr(message, "conn", None) is not self.conn:
            return False
        kind = type(message)
        if kind is Down:
            return self.fail(failure(self.conn, message), keep=True)
        stream = self.stream
        if stream is None:
            return self.take(message)
        if kind in _STREAM_KINDS:
            return message.stream == stream and self.take(message)  # type: ignore[attr-defined]
        if kind is GunError and message.stream in (stream, None):  # type: ignore[attr-defined]
            return self.fail(failure(self.conn, message), keep=False)
        if kind is GunDown and stream in message.killed_streams:  # type: ignore[attr-defined]
            if stream.resilient:
                return False  # it will be upgraded again: wait on
            return self.fail(failure(self.conn, message), keep=True)
        return False

    def fail(self, error: GluegunError, *, keep: bool) -> bool | Keep:
        """End the wait with `error`; `keep` leaves the message in the mailbox."""
        self.error = error
        self.finished = True
        return KEEP if keep else True

    def take(self, message: Any) -> bool | Keep:
        raise NotImplementedError

    def done(self) -> bool:
        return self.finished

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value()

    def value(self) -> T:
        raise NotImplementedError


class MessageFuture(pykka.Future[T], Generic[T]):
    """A Pykka future over one await. `cancel()` gives up the wait and gives back anything
    it had taken.

    `get(timeout=)` takes seconds as a float (Pykka's unit, so `pykka.get_all` works),
    `Milliseconds`, `Infinity` or None; a bare `int` is refused, since Pykka would read it
    as seconds and the rest of this library as milliseconds.
    """

    def __init__(self, mailbox: Mailbox, inner: pykka.Future[T]) -> None:
        super().__init__()
        self._mailbox = mailbox
        self._inner = inner

    def get(self, *, timeout: FutureTimeout = None) -> T:
        return self._inner.get(timeout=future_timeout_seconds(timeout))

    def set(self, value: Any | None = None) -> None:  # pragma: no cover - not settable
        raise BadStateError("a MessageFuture is resolved by its mailbox")

    def set_exception(self, exc_info: Any = None) -> None:  # pragma: no cover
        raise BadStateError("a MessageFuture is resolved by its mailbox")

    def cancel(self) -> bool:
        """Stop waiting; True if it was still waiting."""
        return self._mailbox.cancel(self._inner)


def future(collector: Wait[T]) -> MessageFuture[T]:
    """Start `collector` as a future on the owner's mailbox."""
    mailbox = collector.mailbox()
    return MessageFuture(mailbox, mailbox.collect_future(collector))


def wait(collector: Wait[T], timeout: Timeout, what: str, *, per_message: bool = False) -> T:
    """Block for `collector` up to `timeout` ms (of silence, with `per_message`);
    `AwaitTimeout` (taking nothing) after.

    A wait on a connection whose actor is gone looks only at what is already queued.
    """
    return wait_seconds(collector, timeout_seconds(timeout), what, per_message=per_message)


def wait_seconds(
    collector: Wait[T], seconds: float | None, what: str, *, per_message: bool = False
) -> T:
    """`wait` with the timeout already in seconds (None: forever)."""
    conn = collector.conn
    mailbox = collector.mailbox()
    try:
        return mailbox._await(collector, seconds if conn.alive else 0, per_message)
    except AwaitTimeout:
        error = timed_out(conn, seconds, what, per_message=per_message)
        raise error from error.__cause__


def timed_out(
    conn: Connection, seconds: float | None, what: str, *, per_message: bool = False
) -> AwaitTimeout:
    """The error for a wait on `conn` that got nothing in time (blocking or in a coroutine);
    raises `ConnectionTerminated` instead if the actor has stopped meanwhile.

    While the connection fails to connect, the message says why and `__cause__` is the
    last attempt's exception: raise it `from error.__cause__`, not `from None`.
    """
    conn.check_alive()
    text = "forever" if seconds is None else f"{int(seconds * 1000)} ms"
    if per_message and seconds is not None:
        text += " of silence"
    outage = conn.outage
    if outage is None:
        return AwaitTimeout(
            f"no {what} from {conn!r} within {text}; nothing was taken from the mailbox"
        )
    error = AwaitTimeout(
        f"no {what} from {conn!r} within {text}: it is not up, {outage}; nothing was taken "
        "from the mailbox"
    )
    error.__cause__ = outage.error
    return error

"""Selective receive for one connection: the machinery under every `await_*` helper.

An await helper waits on the owner's mailbox for the first message that answers it. It
also wakes on the messages that mean "no answer will come" (`GunDown` naming its stream,
`Down` for its connection) and raises; those connection-level messages are given back to
the mailbox at their place, so the owner (or another waiter) still sees them. A timeout
gives back everything it took: nothing is lost.

Each helper is also available as a Pykka future (`MessageFuture`), so a caller can wait
on many connections at once with `pykka.get_all`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pykka

from gluegun_actors._handle import Connection
from gluegun_actors._types import StreamRef, timeout_seconds
from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    ConnectionDown,
    ConnectionTerminated,
    GluegunError,
    InvalidArgument,
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
from gluegun_actors.mailbox import Mailbox

T = TypeVar("T")


class GiveBack(Exception):
    """Raised by a converter: restore what was taken, then raise `error`."""

    def __init__(self, error: GluegunError) -> None:
        super().__init__(str(error))
        self.error = error


def check_connection(conn: object) -> Connection:
    if not isinstance(conn, Connection):
        raise InvalidArgument(f"expected a Connection (from connection.open), got {conn!r}")
    return conn


def check_stream(stream: object) -> StreamRef:
    if not isinstance(stream, StreamRef):
        raise InvalidArgument(
            f"expected a StreamRef (returned when the stream started), got {stream!r}"
        )
    return stream


def owner_mailbox(conn: Connection) -> Mailbox:
    """The mailbox the await helpers read: the connection owner's."""
    mailbox = conn.owner.mailbox
    if mailbox is None:
        raise BadStateError(
            f"the owner of {conn!r} is a Pykka actor: its messages arrive in its on_receive, "
            "so await helpers cannot read them; receive them there, or set_owner to a Mailbox"
        )
    return mailbox


def ends_connection(conn: Connection, message: object) -> bool:
    """True for the connection-level message that ends every wait on `conn`."""
    return type(message) is Down and message.conn is conn


def ends_stream(conn: Connection, stream: StreamRef, message: object) -> bool:
    """True for the messages that end a wait on `stream` without answering it."""
    kind = type(message)
    if kind is Down:
        return message.conn is conn  # type: ignore[attr-defined]
    if kind is GunDown:
        return message.conn is conn and stream in message.killed_streams  # type: ignore[attr-defined]
    return kind is GunError and message.conn is conn and message.stream in (stream, None)  # type: ignore[attr-defined]


def failure(conn: Connection, message: object) -> GluegunError:
    """The exception for a message that ended a wait."""
    match message:
        case Down(reason=reason):
            return ConnectionTerminated(
                f"{conn!r} has stopped ({describe(reason)}); nothing more will come from it",
                reason,
            )
        case GunDown(reason=reason):
            return ConnectionDown(
                f"{conn!r} went down ({describe(reason)}) before the stream finished", reason
            )
        case GunError(stream=stream, reason=reason):
            if isinstance(reason, GluegunError):
                return reason
            return StreamError(f"stream failed: {describe(reason)}", stream, reason)
    raise AssertionError(message)  # pragma: no cover


def give_back_failure(conn: Connection, message: object) -> GluegunError:
    """`failure`, wrapped so that connection-level messages are restored to the mailbox."""
    error = failure(conn, message)
    if type(message) in (Down, GunDown):
        raise GiveBack(error)
    return error


class MessageFuture(pykka.Future[T], Generic[T]):
    """A Pykka future over a selective receive; `get` converts (and may raise).

    `timeout` in `get` is in seconds, as for every Pykka future. `cancel()` gives up the
    wait and gives back anything it had taken.
    """

    def __init__(
        self, mailbox: Mailbox, inner: pykka.Future[Any], convert: Callable[[Any], T]
    ) -> None:
        super().__init__()
        self._mailbox = mailbox
        self._inner = inner
        self._convert = convert

    def get(self, *, timeout: float | None = None) -> T:
        try:
            return self._convert(self._inner.get(timeout=timeout))
        except GiveBack as give_back:
            self._mailbox.cancel(self._inner)
            raise give_back.error from None

    def set(self, value: Any | None = None) -> None:  # pragma: no cover - not settable
        raise BadStateError("a MessageFuture is resolved by its mailbox")

    def set_exception(self, exc_info: Any = None) -> None:  # pragma: no cover
        raise BadStateError("a MessageFuture is resolved by its mailbox")

    def cancel(self) -> bool:
        """Stop waiting; True if it was still waiting (nothing had been taken)."""
        return self._mailbox.cancel(self._inner)


def receive_future(
    conn: Connection, match: Callable[[object], bool], convert: Callable[[Any], T]
) -> MessageFuture[T]:
    mailbox = owner_mailbox(conn)
    return MessageFuture(mailbox, mailbox.receive_future(match), convert)


def collect_future(conn: Connection, collector: StreamCollector[T]) -> MessageFuture[T]:
    """Wait with a `StreamCollector`; its outcome (value or error) is read in `get`."""
    mailbox = owner_mailbox(conn)
    return MessageFuture(mailbox, mailbox.collect_future(collector), StreamCollector.outcome)


def wait(start: Callable[[], MessageFuture[T]], conn: Connection, timeout: object, what: str) -> T:
    """Start a wait and block on it for `timeout` ms; `AwaitTimeout` (taking nothing) after.

    The timeout is checked before the wait starts, so a bad one takes nothing either.
    """
    seconds = timeout_seconds(timeout)
    future = start()
    if not conn.alive:
        # The actor is gone: only what is already queued can answer.
        seconds = 0.0
    try:
        return future.get(timeout=seconds)
    except pykka.Timeout:
        future.cancel()
        if not conn.alive:
            conn.check_alive()
        raise AwaitTimeout(
            f"no {what} from {conn!r} within {timeout_text(timeout)}; nothing was taken from "
            "the mailbox"
        ) from None


def timeout_text(timeout: object) -> str:
    seconds = timeout_seconds(timeout)
    return "forever" if seconds is None else f"{int(seconds * 1000)} ms"


_STREAM_KINDS = (GunInform, GunResponse, GunData, GunTrailers, GunUpgrade, GunWs)


def of_stream(conn: Connection, stream: StreamRef, message: object) -> bool:
    return (
        type(message) in _STREAM_KINDS
        and message.conn is conn  # type: ignore[attr-defined]
        and message.stream == stream  # type: ignore[attr-defined]
    )


class StreamCollector(Generic[T]):
    """Takes a stream's messages until an answer, or a message that ends the wait.

    `result()` returns the collector itself: its outcome is computed in the waiting thread
    by `outcome()`, so a wait that ended on `Down` / `GunDown` can give those back.
    """

    def __init__(self, conn: Connection, stream: StreamRef) -> None:
        self.conn = conn
        self.stream = stream
        self.error: GluegunError | None = None
        self.give_back = False
        self.finished = False

    def offer(self, message: object) -> bool:
        if of_stream(self.conn, self.stream, message):
            return self.take(message)
        if ends_stream(self.conn, self.stream, message):
            self.error = failure(self.conn, message)
            self.give_back = type(message) in (Down, GunDown)
            self.finished = True
            return True
        return False

    def take(self, message: Any) -> bool:
        raise NotImplementedError

    def done(self) -> bool:
        return self.finished

    def result(self) -> StreamCollector[T]:
        return self

    def outcome(self) -> T:
        if self.error is not None:
            if self.give_back:
                raise GiveBack(self.error)
            raise self.error
        return self.value()

    def value(self) -> T:
        raise NotImplementedError

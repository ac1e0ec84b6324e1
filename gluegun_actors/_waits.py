"""What waits on a mailbox: matches, collectors, and the three kinds of wait.

A receive is a `Collector` (`One` for a single message) registered as a wait. A wait
made by `receive` or `collect` is a `BlockingWait`: its caller sleeps on a plain lock that
the resolving thread releases (one wakeup; a future's condition costs several). A wait
made by a `*_future` call is a `FutureWait`, a Pykka future. A wait made by a coroutine
(`gluegun_actors.aio`) is a `LoopWait`: its outcome is handed to the coroutine's event
loop, so no thread sleeps for it. `settle` resolves finished
waits outside the mailbox lock; see `mailbox` for the theory of operation.
"""

from __future__ import annotations

import enum
import threading
import types
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeAlias, TypeVar

from pykka import ThreadingFuture

from gluegun_actors._io.wakeups import HeldWakeups, wake
from gluegun_actors._timeouts import FutureTimeout, future_timeout_seconds
from gluegun_actors.errors import InvalidArgument

if TYPE_CHECKING:
    import asyncio

    from gluegun_actors.mailbox import Mailbox

__all__ = [
    "KEEP",
    "BlockingWait",
    "Collector",
    "Entry",
    "FutureWait",
    "Keep",
    "LoopWait",
    "Match",
    "One",
    "Outcome",
    "Wait",
    "WaitState",
    "predicate",
    "seq_of",
    "settle",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Match: TypeAlias = type | types.UnionType | tuple[type, ...] | Callable[[object], bool] | None
"""What a receive takes: a class, a tuple or union of classes (`isinstance`), a predicate,
or None for any message."""

Entry: TypeAlias = tuple[int, object]
"""A queued message with its sequence number: the queue is sorted by it."""

seq_of = itemgetter(0)
"""The sequence number of an `Entry`."""


def _any(message: object) -> bool:
    return True


def predicate(match: Match) -> Callable[[object], bool]:
    """The predicate for a `Match`, so callers can combine matches; refuses anything else."""
    if match is None:
        return _any
    if isinstance(match, types.GenericAlias):
        raise InvalidArgument(f"match on the plain class, not the generic alias {match!r}")
    if isinstance(match, type | types.UnionType):
        classes = match
        return lambda message: isinstance(message, classes)
    if isinstance(match, tuple):
        if not all(isinstance(cls, type) for cls in match):
            raise InvalidArgument(f"a match tuple must hold classes only, got {match!r}")
        return lambda message: isinstance(message, match)
    if callable(match):
        return match
    raise InvalidArgument(
        f"a match is a class, a tuple of classes, a predicate or None, got {match!r}"
    )


class Keep:
    """The type of `KEEP`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()
"""What `Collector.offer` returns for a message that ends the wait but stays queued."""


class Collector(Protocol[T_co]):
    """A wait that may take several messages, such as every message of an HTTP body.

    Used for one wait only. `offer` is asked about messages in arrival order and says
    whether to take each one; `done` is asked after each message taken; `result` is
    asked once, after `done` said True, outside the mailbox lock in the thread that
    completed the wait (maybe the one that put the last message), and may raise (a
    `GluegunError`) to fail the wait. `offer` and `done` run under the mailbox lock.
    A declined message is not offered again while the wait is registered, so a
    collector should not start wanting messages it declined; and a collector whose
    `offer` raises may be asked again about a message before it is dropped, so
    declining must leave it unchanged.

    `offer` may also return `KEEP`: the message ends the wait (`done` is not asked) but
    is not taken: it stays in place for the owner and the other waits. The await helpers
    use it for the messages that end every wait on a connection (`GunDown`, `Down`).
    """

    def offer(self, message: object) -> bool | Keep: ...

    def done(self) -> bool: ...

    def result(self) -> T_co: ...


class One:
    """The collector behind `receive`: the first message that matches.

    `key` is the match as the caller gave it, under which the mailbox remembers how far
    that match has looked (None: a match of any message, which needs no memory).
    """

    __slots__ = ("_match", "_message", "key")

    def __init__(self, match: Match) -> None:
        self._match = predicate(match)
        self._message: object = None
        self.key = match

    def offer(self, message: object) -> bool:
        if self._match(message):
            self._message = message
            return True
        return False

    def done(self) -> bool:
        return True

    def result(self) -> object:
        return self._message


class WaitState(enum.Enum):
    """Where a wait is. NEW → PENDING → DONE | FAILED | WITHDRAWN; DONE → RETURNED.

    NEW may also go straight to DONE (the queue already held enough).
    """

    NEW = "new"  # scanning the queue, not registered yet
    PENDING = "pending"  # registered; may hold messages taken so far
    DONE = "done"  # took everything it wanted; its future is (being) resolved
    FAILED = "failed"  # its match raised; its future holds the exception; took nothing
    WITHDRAWN = "withdrawn"  # timed out or cancelled while pending; took nothing
    RETURNED = "returned"  # was done, then cancelled: its messages went back


class FutureWait(ThreadingFuture[T], Generic[T]):
    sliding = False  # a future's `get(timeout)` bounds the whole wait
    progress_at = 0.0
    """A wait made by a `*_future` call: the future its caller holds, and what the
    mailbox knows about it."""

    def __init__(self, mailbox: Mailbox, collector: Collector[T]) -> None:
        super().__init__()
        self.mailbox = mailbox
        self.collector = collector
        self.state = WaitState.NEW
        self.taken: list[Entry] = []
        self.error: BaseException | None = None  # what the future raises, once settled

    def __repr__(self) -> str:
        return f"<mailbox wait {self.state.value} on {self.mailbox!r}>"

    def get(self, *, timeout: FutureTimeout = None) -> T:
        """The result; `timeout` is seconds as a float, `Milliseconds`, `Infinity` or None
        (a bare int is refused: see `_timeouts.FutureTimeout`)."""
        value: T = super().get(timeout=future_timeout_seconds(timeout))
        return value

    def resolve(self, value: T, held: HeldWakeups | None) -> None:
        self.set(value)  # a future's waiters sleep on its condition: woken at once

    def fail(self, error: BaseException, held: HeldWakeups | None) -> None:
        self.error = error
        self.set_exception((type(error), error, error.__traceback__))


class _KeptOutcomeWait(Generic[T]):
    """What `BlockingWait` and `LoopWait` share: the wait's fields, and an outcome kept in
    `value` or `error` for the waiter, who is then told (`_wake`) in its own way."""

    __slots__ = (
        "collector",
        "error",
        "mailbox",
        "progress_at",
        "sliding",
        "state",
        "taken",
        "value",
    )

    def __init__(self, mailbox: Mailbox, collector: Collector[T], sliding: bool) -> None:
        self.mailbox = mailbox
        self.collector = collector
        self.state = WaitState.NEW
        self.taken: list[Entry] = []
        self.value: T | None = None
        self.error: BaseException | None = None
        self.sliding = sliding
        """The timeout counts from the last message taken, not from the start."""
        self.progress_at = 0.0
        """`time.monotonic()` when a sliding wait last took a message (under the lock)."""

    def __repr__(self) -> str:
        return f"<mailbox wait {self.state.value} on {self.mailbox!r}>"

    def resolve(self, value: T, held: HeldWakeups | None) -> None:
        self.value = value
        self._wake(held)

    def fail(self, error: BaseException, held: HeldWakeups | None) -> None:
        self.error = error
        self._wake(held)

    def _wake(self, held: HeldWakeups | None) -> None:
        raise NotImplementedError


class Poker(Protocol):
    """Interrupts a thread's poll (`_io.lease`); a poke from that thread itself is a no-op."""

    def poke(self) -> None: ...


class BlockingWait(_KeptOutcomeWait[T]):
    """A wait made by `receive` or `collect`: its caller sleeps on a plain lock that the
    thread resolving it releases, one wakeup (a future's condition costs several)."""

    __slots__ = ("poker", "signal")

    def __init__(self, mailbox: Mailbox, collector: Collector[T], sliding: bool = False) -> None:
        super().__init__(mailbox, collector, sliding)
        self.signal = threading.Lock()
        self.signal.acquire()
        self.poker: Poker | None = None
        """Set while its thread polls a borrowed socket instead of sleeping (`_io.lease`):
        a wakeup also interrupts that poll."""

    def _wake(self, held: HeldWakeups | None) -> None:
        wake(self, held)  # a held wakeup looks at `poker` when it is released, not now

    def release(self) -> None:
        """Wake the sleeper: release the signal, then poke its poll if it has one. In this
        order: the borrower sets `poker` before it last looks at the signal, so one of the
        two always sees the other."""
        self.signal.release()
        poker = self.poker
        if poker is not None:
            poker.poke()

    def sleep(self, seconds: float | None) -> bool:
        """Wait until resolved (True) or `seconds` pass (False)."""
        if seconds is None:
            return self.signal.acquire()
        return self.signal.acquire(timeout=min(seconds, threading.TIMEOUT_MAX))


class LoopWait(_KeptOutcomeWait[T]):
    """A wait made by a coroutine: whichever thread resolves it hands the outcome to the
    coroutine's event loop (`call_soon_threadsafe`), so the loop never blocks on it.

    The outcome lands in `outcome` as `(value, error)`: a future that never raises by
    itself, so the coroutine tells its own cancellation apart from the wait's failure.
    Made on the loop's thread; resolved there at once when that is where it finishes.
    If the loop is closed before it can be told, what the wait took goes back.
    """

    __slots__ = ("_thread", "outcome")

    def __init__(
        self,
        mailbox: Mailbox,
        collector: Collector[T],
        outcome: asyncio.Future[tuple[T | None, BaseException | None]],
        sliding: bool = False,
    ) -> None:
        super().__init__(mailbox, collector, sliding)
        self.outcome = outcome
        self._thread = threading.get_ident()

    def _wake(self, held: HeldWakeups | None) -> None:
        if threading.get_ident() == self._thread:
            self._deliver()
            return
        try:
            self.outcome.get_loop().call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody will take the outcome
            self.mailbox._withdraw(self)

    def _deliver(self) -> None:
        if not self.outcome.done():  # else its coroutine gave up, and gave the messages back
            self.outcome.set_result((self.value, self.error))


Wait: TypeAlias = "FutureWait[Any] | BlockingWait[Any] | LoopWait[Any]"

Outcome: TypeAlias = tuple[Wait, Exception | None]
"""A wait that finished under the lock, and its match's exception if it failed."""


def settle(outcomes: list[Outcome], held: HeldWakeups | None = None) -> None:
    """Resolve finished waits, outside the lock; a sleeper's wakeup may be `held` back."""
    for wait, error in outcomes:
        if error is None:
            try:
                value = wait.collector.result()
            except Exception as exc:
                error = exc
            else:
                wait.resolve(value, held)
                continue
        wait.fail(error, held)

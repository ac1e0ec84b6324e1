"""Erlang's mailbox for plain threads: ordered, thread-safe, with selective receive.

Theory of operation
-------------------
A `Mailbox` holds a queue of messages in arrival order and a list of registered
*waits*, in registration order. Every message gets a sequence number when it is put.

- `put` first offers the message to the registered waits, in order; the first that
  takes it gets it. Otherwise the message is queued. Nothing ever blocks on a receiver.
- A new wait first offers the queued messages to itself, in order, under the lock. If
  that is not enough it registers, and from then on every new message is offered to it
  by `put`: a registered wait never scans the queue again.
- A wait is a `Collector`: `receive` is the collector that takes the first matching
  message; `collect` takes several (say, a whole HTTP body). Their callers sleep on a
  plain lock; the `*_future` variants give a Pykka future instead, so waits on many
  mailboxes combine with `pykka.get_all`.
- Giving up (a timeout, `cancel`, or an exception while waiting) is atomic with respect
  to `put`: a wait that was resolved in the race keeps its message (or gives it back, for
  `cancel`); a half-done collector gives back every message it took. Given-back messages
  return to their original places (by sequence number) and are offered to the other
  waits first, as if they had just been put. A message is never lost nor delivered twice.

Matches and collectors run under the mailbox lock: they must be quick and must not use
the mailbox. An exception from one goes to that waiter only (the message stays), never
to the thread that put the message. Waiting itself happens outside the lock.

A match must be pure: the same answer for the same message, every time. The mailbox
relies on it to remember, for each match object, up to where it has declined everything
(the last `SCAN_MARKS_LIMIT` match objects are remembered). A later `receive` with the
same object resumes there, so receiving the late messages of a long queue in a loop is
linear, not quadratic. Giving messages back forgets every mark.

Complexity, with n queued messages and w registered waits:

- `put`: O(1) (one lock and an append) with no waits; otherwise w offers at most.
- `receive` / `collect`: one offer per message looked at, from the head or, for a match
  object used before, from its mark (the skip is a C-level walk, no offers); plus
  O(min(k, n - k)) pointer moves to unlink the message at position k. The head message
  is O(1). A wait that has to block never scans again: each later message costs one offer.
- giving back j messages: up to `GIVE_BACK_INSERT_LIMIT` one by one (binary search and
  insert each), beyond that a single O(n + j) merge.
- `flush`, `messages`: O(n).

Backpressure: a mailbox has a high-water mark (`HIGH_WATER_MESSAGES` messages or
`HIGH_WATER_BYTES` bytes of payload queued). A connection that delivers to a mailbox
over it stops reading its socket, so a slow owner is held back by TCP, not by memory;
it reads again once the mailbox is drained to half the mark, or as soon as a receiver
blocks waiting for something the queue does not hold (a selective receive that skips
what is queued must not wait for a connection that waits for it).

`current()` is the calling thread's own mailbox (Erlang's `self()`), made on first use
and closed when its thread ends, which fires its monitors: that is how a connection
notices that its owner is gone.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

from pykka import Future

from gluegun_actors._io.lease import sleep_reading
from gluegun_actors._io.wakeups import HeldWakeups
from gluegun_actors._timeouts import Infinity, Timeout, timeout_seconds
from gluegun_actors._waits import (
    KEEP,
    BlockingWait,
    Collector,
    Entry,
    FutureWait,
    Keep,
    Match,
    One,
    Outcome,
    Wait,
    WaitState,
    predicate,
    seq_of,
    settle,
)
from gluegun_actors.errors import AwaitTimeout, BadStateError, InvalidArgument
from gluegun_actors.events import GunData, GunWs
from gluegun_actors.message import Binary, Text

if TYPE_CHECKING:
    from gluegun_actors._io.transport import Transport

__all__ = [
    "GIVE_BACK_INSERT_LIMIT",
    "HIGH_WATER_BYTES",
    "HIGH_WATER_MESSAGES",
    "KEEP",
    "SCAN_MARKS_LIMIT",
    "Collector",
    "Keep",
    "Mailbox",
    "Match",
    "current",
    "predicate",
]

_log = logging.getLogger(__name__)

GIVE_BACK_INSERT_LIMIT: Final = 16
"""Given-back messages up to this count are inserted one by one; more are merged at once."""

SCAN_MARKS_LIMIT: Final = 32
"""How many match objects a mailbox remembers scan positions for (the oldest is forgotten)."""

HIGH_WATER_MESSAGES: Final = 10_000
"""Queued messages past which connections delivering here stop reading their sockets."""

HIGH_WATER_BYTES: Final = 16 << 20
"""Queued payload bytes (`GunData` data, `GunWs` frames) past which they stop too."""

T = TypeVar("T")
M = TypeVar("M")

_now = time.monotonic


class _Monitor:
    """A monitor handle: its identity is the registration."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback


class Mailbox:
    """A thread-safe, ordered mailbox with selective receive (see the module docstring).

    Give one as a connection's `owner` or a stream's `reply_to` to read its messages from
    any thread; `len(mailbox)` is how many are queued.

    Example:
        ```python
        inbox = mailbox.Mailbox("feeds")
        conn = connection.open("localhost", 8080, connection.options(owner=inbox))
        up = inbox.receive(GunUp, 5000)
        ```
    """

    __slots__ = (
        "__weakref__",
        "_alive",
        "_bytes",
        "_drained",
        "_high_bytes",
        "_high_messages",
        "_lock",
        "_marks",
        "_monitors",
        "_name",
        "_next_seq",
        "_queue",
        "_source",
        "_steady",
        "_waits",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        high_water_messages: int = HIGH_WATER_MESSAGES,
        high_water_bytes: int = HIGH_WATER_BYTES,
    ) -> None:
        for what, value in (("messages", high_water_messages), ("bytes", high_water_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"high_water_{what} must be a positive int, got {value!r}")
        self._name = name
        self._high_messages = high_water_messages
        self._high_bytes = high_water_bytes
        # Every field below is guarded by `_lock` (any thread puts, receives, flushes):
        self._lock = threading.Lock()
        self._queue: deque[Entry] = deque()
        self._waits: dict[Wait, None] = {}  # an ordered set, in registration order
        self._next_seq = 0
        self._alive = True
        self._monitors: dict[_Monitor, None] = {}
        # id(match) -> (the match or a weak reference to it, the first sequence number it
        # has not declined): every queued message before that number fails that match.
        self._marks: dict[int, tuple[object, int]] = {}
        self._bytes = 0  # payload bytes queued (see `_weight`)
        # Called once the queue is drained to half its high-water mark (or a receiver
        # blocks): connections that stopped reading because it was over the mark.
        self._drained: list[Callable[[], None]] = []
        # The socket of the connection that last delivered here (set by that connection,
        # unlocked: a hint): a receiver that blocks reads it itself (`_io.lease`).
        self._source: weakref.ref[Transport] | None = None
        self._steady = False  # the last two deliveries came from that same socket

    def __repr__(self) -> str:
        name = f" {self._name!r}" if self._name is not None else ""
        state = "alive" if self._alive else "dead"
        return f"<Mailbox{name} {state}, {len(self._queue)} queued, {len(self._waits)} waiting>"

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)

    def __bool__(self) -> bool:
        """A mailbox is always true, even empty (so `if owner:` means "is there one")."""
        return True

    @property
    def name(self) -> str | None:
        return self._name

    # -- putting ---------------------------------------------------------------------

    def put(self, message: object) -> None:
        """Deliver `message`: to the first registered wait that takes it, else to the queue."""
        with self._lock:
            entry = (self._next_seq, message)
            self._next_seq += 1
            if not self._waits:
                self._queue.append(entry)
                self._bytes += _weight(message)
                return
            outcomes = self._dispatch_locked([entry])
        settle(outcomes)

    def put_all(self, messages: list[object]) -> None:
        """`put` each of `messages`, in order, under one lock."""
        self._put_all(messages, None)

    def _put_all(self, messages: list[object], held: HeldWakeups | None) -> None:
        """`put_all` for the runtime: a receiver's wakeup may be `held` by the calling thread."""
        if not messages:
            return
        with self._lock:
            first = self._next_seq
            self._next_seq = first + len(messages)
            entries = list(zip(itertools.count(first), messages))
            if not self._waits:
                self._queue.extend(entries)
                self._bytes += sum(map(_weight, messages))
                return
            outcomes = self._dispatch_locked(entries)
        settle(outcomes, held)

    # -- receiving -------------------------------------------------------------------

    @overload
    def receive(self, match: type[M], timeout: Timeout = Infinity) -> M: ...

    @overload
    def receive(self, match: Match = None, timeout: Timeout = Infinity) -> object: ...

    def receive(self, match: Match = None, timeout: Timeout = Infinity) -> object:
        """Take the first message that matches, in arrival order, waiting up to `timeout`.

        The other messages stay where they are. Raises `AwaitTimeout` when nothing
        matched in time; a message that arrives as the timeout fires is returned, not lost.
        `match` must be pure (see the module docstring).

        `match` is a message class (or a tuple of classes), a predicate, or None (any
        message). `timeout` is milliseconds (`int`, `Milliseconds`) or `Infinity`.

        Raises:
            AwaitTimeout: nothing matched within `timeout`; nothing was taken.
            InvalidTimeout: `timeout` is a `float` (seconds by mistake).

        Example:
            ```python
            inbox = mailbox.current()
            down = inbox.receive(lambda m: isinstance(m, GunDown) and m.conn is conn, 1000)
            anything = inbox.receive(timeout=0)  # the head, or AwaitTimeout at once
            ```
        """
        seconds = timeout_seconds(timeout)
        if match is None or isinstance(match, type):  # the head matches: take it at once
            with self._lock:
                queue = self._queue
                if queue and (match is None or isinstance(queue[0][1], match)):
                    message = queue.popleft()[1]
                    self._bytes -= _weight(message)
                    drained = self._drained_locked()
                else:
                    drained = None
            if drained is not None:
                if drained:
                    _call_all(drained)
                self._taken_at_once()
                return message
        return self._await(One(match), seconds)

    @overload
    def receive_future(self, match: type[M]) -> Future[M]: ...

    @overload
    def receive_future(self, match: Match = None) -> Future[object]: ...

    def receive_future(self, match: Match = None) -> Future[Any]:
        """A future for the first message that matches; the message is taken when it resolves.

        Combine with `pykka.get_all`; give up with `cancel`, or the wait stays registered.
        Its `get(timeout=)` takes seconds as a `float` (Pykka's unit) or `Milliseconds`.

        Example:
            ```python
            pending = inbox.receive_future(GunUp)
            try:
                up = pending.get(timeout=2.0)
            except pykka.Timeout:
                inbox.cancel(pending)
            ```
        """
        return self._start(One(match))

    def collect(
        self, collector: Collector[T], timeout: Timeout = Infinity, *, per_message: bool = False
    ) -> T:
        """Feed messages to `collector` until it is done and return its result.

        `timeout` bounds the whole wait, or with `per_message` each message: the wait gives
        up once that long has passed since the start or the last message it took (Gun's
        `await_body`). On timeout (`AwaitTimeout`) every message it took goes back to its
        place. `timeout` is milliseconds or `Infinity`.

        Raises:
            AwaitTimeout: the collector was not done in time; its messages went back.

        Example:
            ```python
            class Three(mailbox.Collector[list[object]]):
                def __init__(self) -> None:
                    self.items: list[object] = []
                def offer(self, message: object) -> bool:
                    self.items.append(message)
                    return True
                def done(self) -> bool:
                    return len(self.items) == 3
                def result(self) -> list[object]:
                    return self.items

            first_three = inbox.collect(Three(), 1000)
            ```
        """
        seconds = timeout_seconds(timeout)
        return self._await(collector, seconds, per_message)

    def collect_future(self, collector: Collector[T]) -> Future[T]:
        """A future for `collector`'s result; give up with `cancel` to get its messages back."""
        return self._start(collector)

    def cancel(self, future: Future[Any]) -> bool:
        """Give up a wait made by `receive_future` or `collect_future`.

        True: it was still pending; it is unregistered, and any messages a collector took
        go back, and its future raises `BadStateError`. False: it had already finished;
        if it took messages they go back to their original places, so the caller must
        not use its value.
        """
        if not isinstance(future, FutureWait) or future.mailbox is not self:
            raise InvalidArgument(f"{future!r} is not a wait on {self!r}")
        was_pending = self._withdraw(future)
        if was_pending:
            error = BadStateError(f"this wait on {self!r} was cancelled")
            future.set_exception((type(error), error, None))
        return was_pending

    def flush(self, match: Match = None) -> int:
        """Remove the queued messages that match (all by default); return how many.

        Only what is queued now: for a connection's messages still on their way, use
        `connection.flush(conn)`, which waits for them first.

        Example:
            ```python
            dropped = inbox.flush(GunData)  # every queued GunData, of any connection
            ```
        """
        matches = predicate(match)
        with self._lock:
            keep = deque(entry for entry in self._queue if not matches(entry[1]))
            removed = len(self._queue) - len(keep)
            self._queue = keep
            self._bytes = sum(_weight(entry[1]) for entry in keep)
            drained = self._drained_locked()
        _call_all(drained)
        return removed

    def messages(self) -> list[object]:
        """A snapshot of the queued messages, in order."""
        with self._lock:
            return [message for _, message in self._queue]

    # -- owner monitoring -------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once the owner is gone (`close`, or the end of a `current()` thread)."""
        return self._alive

    def monitor(self, callback: Callable[[], None]) -> object:
        """Call `callback` once when the mailbox dies; at once if it is already dead.

        Returns a handle for `demonitor`. The callback runs in the thread that closes
        the mailbox; an exception from it is logged and does not stop the others.
        """
        handle = _Monitor(callback)
        with self._lock:
            if self._alive:
                self._monitors[handle] = None
                return handle
        _fire([handle])
        return handle

    def demonitor(self, handle: object) -> None:
        """Forget a monitor; nothing happens if it already fired or was forgotten."""
        if isinstance(handle, _Monitor):
            with self._lock:
                self._monitors.pop(handle, None)

    def close(self) -> None:
        """The owner is gone: mark the mailbox dead and fire its monitors, once.

        Queued messages and pending waits stay: whoever holds the mailbox may still
        read it, and `put` still works (a connection that is told of the death stops).
        """
        with self._lock:
            if not self._alive:
                return
            self._alive = False
            monitors = list(self._monitors)
            self._monitors.clear()
        _fire(monitors)

    # -- the machinery ------------------------------------------------------------------

    def _await(
        self, collector: Collector[T], seconds: float | None, per_message: bool = False
    ) -> T:
        """Wait in the calling thread; give up atomically after `seconds` (of silence,
        with `per_message`)."""
        with self._lock:
            done, indices = self._scan_locked(collector)
            if done:
                self._take_locked(indices)
                wait = None
            elif seconds == 0:
                raise self._timeout_error(collector, seconds)
            else:
                wait = BlockingWait(self, collector, per_message and seconds is not None)
                wait.taken = self._take_locked(indices)
                wait.progress_at = _now()
                wait.state = WaitState.PENDING
                self._waits[wait] = None
            # A receiver that blocks wants what is not queued: connections read on.
            drained = self._drained_locked(blocked=wait is not None)
        _call_all(drained)
        if wait is None:
            self._taken_at_once()
            return collector.result()
        try:
            resolved = self._sleep(wait, seconds)
            while not resolved and wait.sliding:  # a message since? wait that long after it
                assert seconds is not None
                with self._lock:
                    left = wait.progress_at + seconds - _now()
                if left <= 0 or wait.state is not WaitState.PENDING:
                    break
                resolved = self._sleep(wait, left)
        except BaseException:  # interrupted: give back what it took
            self._withdraw(wait)
            raise
        if not resolved:
            with self._lock:
                timed_out = wait.state is WaitState.PENDING
                if timed_out:
                    outcomes = self._unregister_locked(wait, WaitState.WITHDRAWN)
            if timed_out:
                settle(outcomes)
                raise self._timeout_error(collector, seconds)
            wait.sleep(None)  # resolved in the race with the timeout: settled right after
        if wait.error is not None:
            raise wait.error
        return wait.value  # type: ignore[return-value]

    def _fed_by(self, source: weakref.ref[Transport]) -> None:
        """A connection delivered here what it read from `source` (no lock: a hint)."""
        if self._source is source:
            self._steady = True
        else:
            self._source = source
            self._steady = False

    def _taken_at_once(self) -> None:
        """A message was taken without waiting: whoever reads here is at work on what
        was read, so the socket feeding it stays (or is parked) for it (`_io.lease`)."""
        source = self._source
        transport = None if source is None else source()
        if transport is not None:
            transport._keep_loan(steal=self._steady)

    def _sleep(self, wait: BlockingWait[Any], seconds: float | None) -> bool:
        """`wait.sleep(seconds)`, reading the socket that feeds this mailbox meanwhile if
        it can be borrowed (see `_io.lease`)."""
        source = self._source
        transport = None if source is None else source()
        if transport is not None:
            resolved = sleep_reading(wait, seconds, transport)
            if resolved is not None:
                return resolved
        return wait.sleep(seconds)

    def _start(self, collector: Collector[T]) -> FutureWait[T]:
        """Scan, then register unless the queue already held enough; return the future."""
        wait = FutureWait(self, collector)
        self._begin(wait)
        return wait

    def _begin(self, wait: Wait) -> bool:
        """Offer the queue to a new `wait`, then register it unless that was enough (it is
        settled at once then: True). Waits that do not block a thread start here."""
        with self._lock:
            done, indices = self._scan_locked(wait.collector)
            wait.taken = self._take_locked(indices)
            if done:
                wait.state = WaitState.DONE
            else:
                wait.state = WaitState.PENDING
                wait.progress_at = _now()
                self._waits[wait] = None
            drained = self._drained_locked(blocked=not done)
        _call_all(drained)
        if done:
            settle([(wait, None)])
        return done

    def _expire(self, wait: Wait, seconds: float) -> float | None:
        """A timer of `wait` ran out: give it up if it is still pending, atomically with
        `put` (what it took goes back), and, when it is `sliding`, `seconds` have passed
        since it last took a message. Returns the seconds still to wait (the sliding case),
        else None: it gave up (now WITHDRAWN) or had already finished."""
        with self._lock:
            if wait.state is not WaitState.PENDING:
                return None
            left = wait.progress_at + seconds - _now() if wait.sliding else 0.0
            if left > 0:
                return left
            outcomes = self._unregister_locked(wait, WaitState.WITHDRAWN)
        settle(outcomes)
        return None

    def _withdraw(self, wait: Wait) -> bool:
        """Unregister `wait` (True if it was pending), giving back what it took."""
        with self._lock:
            match wait.state:
                case WaitState.PENDING:
                    outcomes = self._unregister_locked(wait, WaitState.WITHDRAWN)
                    was_pending = True
                case WaitState.DONE:
                    returned, wait.taken = wait.taken, []
                    wait.state = WaitState.RETURNED
                    outcomes = self._give_back_locked(returned)
                    was_pending = False
                case _:
                    return False
        settle(outcomes)
        return was_pending

    def _unregister_locked(self, wait: Wait, state: WaitState) -> list[Outcome]:
        del self._waits[wait]
        wait.state = state
        if isinstance(wait.collector, One) and wait.collector.key is not None:
            # It declined what was queued when it registered and everything offered since.
            self._set_mark_locked(wait.collector.key, self._next_seq)
        returned, wait.taken = wait.taken, []
        return self._give_back_locked(returned)

    def _give_back_locked(self, entries: list[Entry]) -> list[Outcome]:
        """Put taken messages back into play: to the waits first, else to their places."""
        if not entries:
            return []
        self._marks.clear()  # no match has seen these: scans must look at them again
        return self._dispatch_locked(entries)

    def _scan_locked(self, collector: Collector[Any]) -> tuple[bool, list[int]]:
        """Offer the queued messages to a new wait, in order; the indices it takes.

        Nothing is removed here, so an exception from the collector leaves the queue as is.
        A `receive` starts after the messages its match has already declined.
        """
        queue = self._queue
        key = collector.key if isinstance(collector, One) else None
        start = 0
        if key is not None and queue:
            mark = self._mark_locked(key)
            if mark > queue[0][0]:
                start = bisect_left(queue, mark, key=seq_of)
        indices: list[int] = []
        for index, (seq, message) in enumerate(islice(queue, start, None), start):
            verdict = collector.offer(message)
            if verdict is KEEP:
                return True, indices
            if verdict:
                indices.append(index)
                if collector.done():
                    if key is not None:
                        self._set_mark_locked(key, seq + 1)
                    return True, indices
        if key is not None:
            self._set_mark_locked(key, self._next_seq)
        return False, indices

    def _mark_locked(self, key: object) -> int:
        """The first sequence number `key` has not declined (0 when unknown)."""
        found = self._marks.get(id(key))
        if found is None:
            return 0
        holder, seq = found
        known = holder() if isinstance(holder, weakref.ref) else holder
        return seq if known is key else 0

    def _set_mark_locked(self, key: object, seq: int) -> None:
        marks = self._marks
        marks.pop(id(key), None)
        if len(marks) >= SCAN_MARKS_LIMIT:
            del marks[next(iter(marks))]
        try:
            holder: object = weakref.ref(key)
        except TypeError:  # a tuple or union of classes: cheap to keep
            holder = key
        marks[id(key)] = (holder, seq)

    def _take_locked(self, indices: list[int]) -> list[Entry]:
        """Remove the entries at `indices` (ascending) from the queue and return them."""
        queue = self._queue
        if not indices:
            return []
        if indices[-1] == len(indices) - 1:  # a prefix: the common case
            taken = [queue.popleft() for _ in indices]
            self._bytes -= sum(_weight(entry[1]) for entry in taken)
            return taken
        taken = [queue[index] for index in indices]
        self._bytes -= sum(_weight(entry[1]) for entry in taken)
        if len(indices) <= GIVE_BACK_INSERT_LIMIT:
            for index in reversed(indices):
                del queue[index]
        else:
            drop = set(indices)
            self._queue = deque(e for i, e in enumerate(queue) if i not in drop)
        return taken

    def _dispatch_locked(self, entries: list[Entry]) -> list[Outcome]:
        """Offer `entries` to the registered waits, oldest first; queue what nobody takes.

        A wait whose match raises fails (its future gets the exception). If it had taken
        messages they come back into play, and the message it failed on is offered again
        from the first wait, so that arrival order still decides who gets what.
        """
        outcomes: list[Outcome] = []
        unclaimed: list[Entry] = []
        work = sorted(entries, key=seq_of)  # a sorted list is a heap
        while work:
            entry = heapq.heappop(work)
            wait, done, error, kept = self._offer_locked(entry[1])
            for keeper in kept:  # ended by this message, which stays for the others
                del self._waits[keeper]
                keeper.state = WaitState.DONE
                outcomes.append((keeper, None))
            if wait is None:
                unclaimed.append(entry)
            elif error is not None:
                del self._waits[wait]
                wait.state = WaitState.FAILED
                outcomes.append((wait, error))
                if wait.taken:
                    self._marks.clear()  # a give-back, as in `_give_back_locked`
                    for returned in wait.taken:
                        heapq.heappush(work, returned)
                    wait.taken = []
                heapq.heappush(work, entry)
            else:
                wait.taken.append(entry)
                if wait.sliding:
                    wait.progress_at = _now()
                if done:
                    del self._waits[wait]
                    wait.state = WaitState.DONE
                    outcomes.append((wait, None))
                    if isinstance(wait.collector, One) and wait.collector.key is not None:
                        self._set_mark_locked(wait.collector.key, entry[0] + 1)
        self._restore_locked(unclaimed)
        return outcomes

    def _offer_locked(
        self, message: object
    ) -> tuple[Wait | None, bool, Exception | None, list[Wait]]:
        """The first registered wait that takes `message`, whether it is done, or its error;
        and the waits before it that `KEEP` it (ended by it, without taking it)."""
        kept: list[Wait] = []
        for wait in self._waits:
            try:
                verdict = wait.collector.offer(message)
            except Exception as exc:
                return wait, False, exc, kept
            if verdict is KEEP:
                kept.append(wait)
            elif verdict:
                return wait, wait.collector.done(), None, kept
        return None, False, None, kept

    def _restore_locked(self, entries: list[Entry]) -> None:
        """Put entries (ascending) back into the queue at their places by sequence number."""
        if not entries:
            return
        self._bytes += sum(_weight(entry[1]) for entry in entries)
        queue = self._queue
        if not queue or queue[-1][0] < entries[0][0]:
            queue.extend(entries)
        elif len(entries) <= GIVE_BACK_INSERT_LIMIT:
            for entry in entries:
                queue.insert(bisect_left(queue, entry[0], key=seq_of), entry)
        else:
            self._queue = deque(heapq.merge(queue, entries, key=seq_of))

    def _backlogged(self, on_drained: Callable[[], None]) -> bool:
        """True when the queue is over its high-water mark: `on_drained` is then called
        once (from a receiving thread) when it is drained to half, or a receiver blocks.
        For connections deciding whether to read on (see the module docstring)."""
        if len(self._queue) <= self._high_messages and self._bytes <= self._high_bytes:
            return False  # the common case, without the lock (a snapshot is enough here)
        with self._lock:
            if len(self._queue) <= self._high_messages and self._bytes <= self._high_bytes:
                return False
            self._drained.append(on_drained)
            return True

    def _drained_locked(self, *, blocked: bool = False) -> list[Callable[[], None]]:
        """The drain callbacks to call now: the queue is at or under half its mark, or a
        receiver is about to block (`blocked`)."""
        if not self._drained:
            return []
        if not blocked and (
            len(self._queue) > self._high_messages // 2 or self._bytes > self._high_bytes // 2
        ):
            return []
        drained, self._drained = self._drained, []
        return drained

    def _timeout_error(self, collector: Collector[Any], seconds: float | None) -> AwaitTimeout:
        if isinstance(collector, One):
            what = f"a message matching {collector.key!r}"
        else:
            what = f"{collector!r} to complete"
        return AwaitTimeout(
            f"waited {round((seconds or 0.0) * 1000)} ms for {what} in {self!r}; "
            "nothing was taken from the mailbox"
        )


def _weight(message: object) -> int:
    """The payload bytes a message holds, for the high-water mark (0 for the rest)."""
    kind = type(message)
    if kind is GunData:
        return len(message.data)  # type: ignore[attr-defined]
    if kind is GunWs:
        frame = message.frame  # type: ignore[attr-defined]
        if type(frame) is Binary:
            return len(frame.data)
        if type(frame) is Text:
            return len(frame.text)
    return 0


def _call_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            _log.exception("a mailbox drain callback failed")


def _fire(monitors: list[_Monitor]) -> None:
    for monitor in monitors:
        try:
            monitor.callback()
        except Exception:
            _log.exception("mailbox monitor callback %r failed", monitor.callback)


class _ThreadOwner:
    """Lives in its thread's locals only; when the thread ends it dies and closes the mailbox."""

    __slots__ = ("__weakref__", "mailbox")

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox


_thread_owner = threading.local()


def current() -> Mailbox:
    """The calling thread's own mailbox (Erlang's `self()`), made on first use.

    It is the default owner and `reply_to` of calls made from a plain thread. Inside a
    Pykka actor's handler (or `on_start`) the default is that actor instead: its
    messages arrive in `on_receive`, as an Erlang process's do, and nobody has to read a
    thread mailbox for it.

    It is closed (monitors fire) when the thread ends: CPython clears a thread's locals
    then, which finalizes the `_ThreadOwner` kept there. The mailbox holds no reference
    to its thread. The main thread's mailbox is not closed at interpreter exit.

    Example:
        ```python
        conn = connection.open("localhost", 8080)      # owner: this thread's mailbox
        match mailbox.current().receive(timeout=5000):
            case GunUp(c, protocol) if c is conn: ...
        ```
    """
    owner: _ThreadOwner | None = getattr(_thread_owner, "owner", None)
    if owner is None:
        mailbox = Mailbox(f"current:{threading.current_thread().name}")
        owner = _ThreadOwner(mailbox)
        weakref.finalize(owner, mailbox.close).atexit = False
        _thread_owner.owner = owner
    return owner.mailbox

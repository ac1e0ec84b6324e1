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
from typing import Any, Final, TypeVar, overload

from pykka import Future

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

__all__ = [
    "GIVE_BACK_INSERT_LIMIT",
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

T = TypeVar("T")
M = TypeVar("M")

_now = time.monotonic


class _Monitor:
    """A monitor handle: its identity is the registration."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback


class Mailbox:
    """A thread-safe, ordered mailbox with selective receive (see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "_alive",
        "_lock",
        "_marks",
        "_monitors",
        "_name",
        "_next_seq",
        "_queue",
        "_waits",
    )

    def __init__(self, name: str | None = None) -> None:
        self._name = name
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
        """
        seconds = timeout_seconds(timeout)
        if match is None or isinstance(match, type):  # the head matches: take it at once
            with self._lock:
                queue = self._queue
                if queue and (match is None or isinstance(queue[0][1], match)):
                    return queue.popleft()[1]
        return self._await(One(match), seconds)

    @overload
    def receive_future(self, match: type[M]) -> Future[M]: ...

    @overload
    def receive_future(self, match: Match = None) -> Future[object]: ...

    def receive_future(self, match: Match = None) -> Future[Any]:
        """A future for the first message that matches; the message is taken when it resolves.

        Combine with `pykka.get_all`; give up with `cancel`, or the wait stays registered.
        """
        return self._start(One(match))

    def collect(
        self, collector: Collector[T], timeout: Timeout = Infinity, *, per_message: bool = False
    ) -> T:
        """Feed messages to `collector` until it is done and return its result.

        `timeout` bounds the whole wait, or with `per_message` each message: the wait gives
        up once that long has passed since the start or the last message it took (Gun's
        `await_body`). On timeout (`AwaitTimeout`) every message it took goes back to its
        place.
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
        """Remove the queued messages that match (all by default); return how many."""
        matches = predicate(match)
        with self._lock:
            keep = deque(entry for entry in self._queue if not matches(entry[1]))
            removed = len(self._queue) - len(keep)
            self._queue = keep
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
        if wait is None:
            return collector.result()
        try:
            resolved = wait.sleep(seconds)
            while not resolved and wait.sliding:  # a message since? wait that long after it
                assert seconds is not None
                with self._lock:
                    left = wait.progress_at + seconds - _now()
                if left <= 0 or wait.state is not WaitState.PENDING:
                    break
                resolved = wait.sleep(left)
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

    def _start(self, collector: Collector[T]) -> FutureWait[T]:
        """Scan, then register unless the queue already held enough; return the future."""
        wait = FutureWait(self, collector)
        with self._lock:
            done, indices = self._scan_locked(collector)
            wait.taken = self._take_locked(indices)
            if done:
                wait.state = WaitState.DONE
            else:
                wait.state = WaitState.PENDING
                self._waits[wait] = None
        if done:
            settle([(wait, None)])
        return wait

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
            return [queue.popleft() for _ in indices]
        taken = [queue[index] for index in indices]
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
        queue = self._queue
        if not queue or queue[-1][0] < entries[0][0]:
            queue.extend(entries)
        elif len(entries) <= GIVE_BACK_INSERT_LIMIT:
            for entry in entries:
                queue.insert(bisect_left(queue, entry[0], key=seq_of), entry)
        else:
            self._queue = deque(heapq.merge(queue, entries, key=seq_of))

    def _timeout_error(self, collector: Collector[Any], seconds: float | None) -> AwaitTimeout:
        if isinstance(collector, One):
            what = f"a message matching {collector.key!r}"
        else:
            what = f"{collector!r} to complete"
        return AwaitTimeout(
            f"waited {round((seconds or 0.0) * 1000)} ms for {what} in {self!r}; "
            "nothing was taken from the mailbox"
        )


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

    It is closed (monitors fire) when the thread ends: CPython clears a thread's locals
    then, which finalizes the `_ThreadOwner` kept there. The mailbox holds no reference
    to its thread. The main thread's mailbox is not closed at interpreter exit.
    """
    owner: _ThreadOwner | None = getattr(_thread_owner, "owner", None)
    if owner is None:
        mailbox = Mailbox(f"current:{threading.current_thread().name}")
        owner = _ThreadOwner(mailbox)
        weakref.finalize(owner, mailbox.close).atexit = False
        _thread_owner.owner = owner
    return owner.mailbox

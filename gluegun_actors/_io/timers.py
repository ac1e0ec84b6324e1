"""The reactor's timers: handles that cancel in O(1) and a heap ordered by deadline.

A `TimerHandle` is made by `Reactor.call_later` (or internally, for connect and flush
deadlines). Cancelling only marks it: the heap entry is skipped when it reaches the top,
and the heap is compacted once cancelled entries are at least `TIMER_COMPACT_MIN` and
half of it. Handles move through `_TimerState`::

    PENDING --due--> DUE --run--> FIRED
       |              |
       +--cancel------+--> CANCELLED

`TimerHeap` is not thread-safe on its own: its owner (the reactor) calls every method
with its lock held, except that the callbacks `take_callback` hands out run unlocked.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from gluegun_actors._io.reactor import Reactor

__all__ = ["TIMER_COMPACT_MIN", "TimerHandle", "TimerHeap"]

TIMER_COMPACT_MIN: Final = 1024
"""Cancelled timers are swept from the heap once there are this many and they are half of it."""


class _TimerState(enum.Enum):
    PENDING = "pending"  # in the heap
    DUE = "due"  # taken from the heap, about to run
    FIRED = "fired"
    CANCELLED = "cancelled"


def _noop() -> None:
    pass


class TimerHandle:
    """A scheduled callback. `cancel()` is O(1): the heap entry is skipped when reached."""

    __slots__ = ("_callback", "_internal", "_reactor", "_state", "when")

    def __init__(
        self, reactor: Reactor, callback: Callable[[], None], when: float, internal: bool
    ) -> None:
        self._reactor = reactor
        self._callback = callback
        self._internal = internal
        self._state = _TimerState.PENDING  # guarded by the reactor's lock
        self.when = when
        """The `time.monotonic()` deadline."""

    def cancel(self) -> None:
        """Make sure the callback does not run (a no-op once it ran). Thread-safe."""
        self._reactor._cancel_timer(self)

    @property
    def cancelled(self) -> bool:
        return self._state is _TimerState.CANCELLED

    @property
    def internal(self) -> bool:
        """An internal timer (a connect or flush deadline) survives the reactor's stop."""
        return self._internal

    def __repr__(self) -> str:
        return f"<TimerHandle {self._state.value} at {self.when:.3f}>"


class TimerHeap:
    """Pending timers by deadline (every method: the owner's lock held)."""

    __slots__ = ("_cancelled", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._cancelled = 0  # cancelled entries still in the heap

    def __len__(self) -> int:
        """Timers scheduled and neither fired nor cancelled."""
        return len(self._heap) - self._cancelled

    def push(self, handle: TimerHandle) -> bool:
        """Schedule `handle`; True when it is now the earliest timer."""
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
        return self._heap[0][2] is handle

    def cancel(self, handle: TimerHandle) -> None:
        state = handle._state
        if state is not _TimerState.PENDING and state is not _TimerState.DUE:
            return
        handle._state = _TimerState.CANCELLED
        handle._callback = _noop
        if state is _TimerState.PENDING:  # still in the heap: swept lazily
            self._cancelled += 1
            if self._cancelled >= TIMER_COMPACT_MIN and self._cancelled * 2 >= len(self._heap):
                self._compact()

    def next_deadline(self) -> float:
        """The earliest pending deadline (`math.inf` when none); drops cancelled heads."""
        heap = self._heap
        while heap and heap[0][2]._state is not _TimerState.PENDING:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else math.inf

    def pop_due(self, now: float) -> list[TimerHandle]:
        """Take the timers due by `now` off the heap, in deadline order, marked DUE."""
        due: list[TimerHandle] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if handle._state is _TimerState.CANCELLED:
                self._cancelled -= 1
                continue
            handle._state = _TimerState.DUE
            due.append(handle)
        return due

    @staticmethod
    def take_callback(handle: TimerHandle) -> Callable[[], None] | None:
        """Mark a DUE timer FIRED and return its callback; None if cancelled since."""
        if handle._state is not _TimerState.DUE:
            return None
        handle._state = _TimerState.FIRED
        callback, handle._callback = handle._callback, _noop
        return callback

    def keep_internal(self) -> None:
        """Cancel every timer but the internal ones (the reactor is stopping)."""
        kept = []
        for entry in self._heap:
            handle = entry[2]
            if handle._state is not _TimerState.PENDING:
                continue
            if handle._internal:
                kept.append(entry)
            else:
                handle._state = _TimerState.CANCELLED
        heapq.heapify(kept)
        self._heap = kept
        self._cancelled = 0

    def clear(self) -> None:
        """Cancel every timer."""
        for entry in self._heap:
            if entry[2]._state is _TimerState.PENDING:
                entry[2]._state = _TimerState.CANCELLED
        self._heap.clear()
        self._cancelled = 0

    def _compact(self) -> None:
        """Drop cancelled entries; amortised O(1) per cancel."""
        self._heap = [e for e in self._heap if e[2]._state is _TimerState.PENDING]
        heapq.heapify(self._heap)
        self._cancelled = 0

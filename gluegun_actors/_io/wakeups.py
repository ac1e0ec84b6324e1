"""Waking sleeping threads, held back on a busy thread until it is about to block.

A thread woken while the waker still runs Python code wakes only to sleep again on the
GIL, and the waker must wake it a second time when it lets go: two context switches,
and on a virtual machine each costs tens of microseconds. So the reactor thread holds
back the wakeups it causes (a message put into a sleeping caller's mailbox) and
releases them just before it blocks in the selector, or after a bounded batch of work:
the woken caller then finds the GIL free.

The holding is explicit: the reactor owns a `HeldWakeups`; a connection actor's turn
that runs on the reactor thread is handed it (`_runtime.pool.tell_holding`), and passes
it to the mailbox it delivers to, which calls `wake(signal, held)`. A thread that holds
wakeups must `release` them before any wait of its own, or it could wait for a thread it
has not woken yet.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["HeldWakeups", "Signal", "wake"]


class Signal(Protocol):
    """What a sleeper waits on: a `threading.Lock` it holds, or anything released alike."""

    def release(self) -> None: ...


class HeldWakeups:
    """Wakeups one busy thread holds back; used by that thread only."""

    __slots__ = ("_signals",)

    def __init__(self) -> None:
        self._signals: list[Signal] = []

    def hold(self, signal: Signal) -> None:
        self._signals.append(signal)

    def release(self) -> None:
        """Wake every sleeper whose wakeup was held back, in order."""
        signals = self._signals
        if signals:
            self._signals = []
            for signal in signals:
                signal.release()

    def __len__(self) -> int:
        return len(self._signals)


def wake(signal: Signal, held: HeldWakeups | None) -> None:
    """Release `signal` (a lock its sleeper waits to acquire): now, or when `held` is
    released, if the calling thread holds its wakeups back."""
    if held is None:
        signal.release()
    else:
        held.hold(signal)

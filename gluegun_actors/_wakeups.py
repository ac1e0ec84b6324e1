"""Waking sleeping threads, held back on a busy thread until it is about to block.

A thread woken while the waker still runs Python code wakes only to sleep again on the
GIL, and the waker must wake it a second time when it lets go: two context switches,
and on a virtual machine each costs tens of microseconds. The reactor thread holds back
the wakeups it causes (a message put into a sleeping caller's mailbox) and releases
them just before it blocks in the selector, or after a bounded batch of work: the
woken caller then finds the GIL free.

Only a thread that asked with `hold_on_this_thread` holds wakeups back; it must call
`release_held` before any wait of its own, or it could wait for a thread it has not
woken yet.
"""

from __future__ import annotations

import threading

__all__ = ["hold_on_this_thread", "release_held", "stop_holding", "wake"]


class _Held(threading.local):
    def __init__(self) -> None:
        self.locks: list[threading.Lock] | None = None


_held = _Held()


def wake(signal: threading.Lock) -> None:
    """Release `signal` (a lock its sleeper waits to acquire): now, or when the calling
    thread next calls `release_held`, if it holds wakeups back."""
    locks = _held.locks
    if locks is None:
        signal.release()
    else:
        locks.append(signal)


def hold_on_this_thread() -> None:
    """From now on, wakeups caused by the calling thread wait for its `release_held`."""
    if _held.locks is None:
        _held.locks = []


def release_held() -> None:
    """Wake every sleeper whose wakeup the calling thread held back, in order."""
    locks = _held.locks
    if locks:
        _held.locks = []
        for signal in locks:
            signal.release()


def stop_holding() -> None:
    """Release what is held and wake at once from now on."""
    release_held()
    _held.locks = None

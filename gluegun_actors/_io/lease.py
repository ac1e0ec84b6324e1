"""Reading on the waiting caller's thread: leader/follower for one connection's socket.

A caller that blocks for a message would otherwise sleep while the reactor thread reads,
parses and wakes it: two threads and a GIL handover per message. Instead a waiting
thread borrows the read side of the socket that last fed its mailbox (`sleep_reading`):
it polls that socket itself, reads it, and the connection actor's turn runs right there
(the pool's direct handoff), so the message it waits for is put into its mailbox by its
own thread, with no wakeup at all.

The actor is still the only code that handles the socket's bytes, one turn at a time:
the loan only moves the reactor's read to another thread, and the transport's rules
(`Transport._lend_reading`, the "Lending" part of `transport`) keep one reader at a time
and active-once reading. When the wait is over the loan is parked for the next wait,
and the reactor takes it back once it has gone unused (no wait, no message taken from the
mailbox) for `reactor.LOAN_GRACE`. The borrower
gives the socket back at once when reading pauses (a backlogged mailbox, no flow
credits, the actor's turn queued on another thread), when the connection closes, and
when another thread waits behind it. Messages from elsewhere (other connections, timers,
other threads) still reach the waiter at once: while it polls, its wait's wakeup also
pokes an event descriptor the borrower polls beside the socket (one per thread that has
borrowed, closed with the thread); the wait's `poker` field is that link.

A thread inside an actor's turn never borrows: a tell from it would only queue, so the
turn would not run there.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import threading
import time
import weakref
from typing import TYPE_CHECKING, Protocol

from gluegun_actors._runtime.pool import in_turn

if TYPE_CHECKING:
    from gluegun_actors._io.transport import Transport
    from gluegun_actors._waits import Poker

__all__ = ["Sleeper", "sleep_reading"]

_POLL_IN = select.POLLIN | select.POLLPRI


class Sleeper(Protocol):
    """A blocked wait as the borrower sees it (`_waits.BlockingWait`)."""

    signal: threading.Lock
    poker: Poker | None

    def sleep(self, seconds: float | None) -> bool: ...


def sleep_reading(wait: Sleeper, seconds: float | None, source: Transport) -> bool | None:
    """Sleep like `wait.sleep(seconds)`, reading `source` on this thread meanwhile.

    Returns whether `wait` was resolved in time, or None (having done nothing) when the
    socket could not be borrowed: the caller then sleeps as usual.
    """
    if in_turn():
        return None
    sock = source._lend_reading()
    if sock is None:
        if not source._wait_behind_borrower():
            return None
        try:  # another thread reads it and delivers what comes for this one
            return wait.sleep(seconds)
        finally:
            source._stop_waiting()
    deadline = None if seconds is None else time.monotonic() + seconds
    borrower = _borrower()
    fd = sock.fileno()
    poller = borrower.poller
    signal = wait.signal
    try:
        poller.register(fd, _POLL_IN)
        wait.poker = borrower  # before the signal is looked at (see `BlockingWait.release`)
        while not signal.acquire(blocking=False):
            if deadline is None:
                ready = poller.poll()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                ready = poller.poll(math.ceil(left * 1000))
            readable = False
            for ready_fd, _ in ready:
                if ready_fd == fd:
                    readable = True
                else:
                    borrower.drain()
            if readable and not source._read_lent(sock):
                break  # reading paused or ended: the reactor takes over
        else:
            return True
    finally:
        wait.poker = None
        poller.unregister(fd)
        source._end_loan()
    if deadline is None:
        return wait.sleep(None)
    return wait.sleep(max(0.0, deadline - time.monotonic()))


class _Borrower:
    """One thread's poll set and poke descriptor: made on its first loan, closed when the
    thread ends (its thread-local storage goes)."""

    __slots__ = ("__weakref__", "_read_fd", "_write_fd", "ident", "poller")

    def __init__(self) -> None:
        self.ident = threading.get_ident()
        if hasattr(os, "eventfd"):
            self._read_fd = self._write_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - platforms without eventfd
            self._read_fd, self._write_fd = os.pipe()
            os.set_blocking(self._read_fd, False)
            os.set_blocking(self._write_fd, False)
        weakref.finalize(self, _close, {self._read_fd, self._write_fd})
        self.poller = select.poll()
        self.poller.register(self._read_fd, select.POLLIN)

    def poke(self) -> None:
        """Interrupt this thread's poll, unless called from this thread (it looks at the
        signal after each read anyway)."""
        if threading.get_ident() == self.ident:
            return
        # OSError: full, a poke is already waiting.
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._read_fd, 4096)


def _close(fds: set[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class _Local(threading.local):
    borrower: _Borrower | None = None


_local = _Local()


def _borrower() -> _Borrower:
    borrower = _local.borrower
    if borrower is None:
        borrower = _local.borrower = _Borrower()
    return borrower

"""The reactor: one thread that owns every connection socket and a timer heap.

Theory of operation
-------------------
A runtime has one `Reactor`. Its thread waits in a `selectors.DefaultSelector` over every
connection socket plus the read end of a socketpair (the wakeup), with a timeout taken
from a heap of timers (`timers.py`). It never parses bytes: it reports what happened to
a socket by calling the callback given to `Reactor.connect` with a transport event
(`events.py`). A connection actor passes a callback that `tell`s itself the event, so
callbacks are quick; one that raises is logged and ignored, it never stops the reactor.

Threads. Only the reactor thread waits in the selector, and only it changes the
registrations, except that a caller thread borrowing a socket's read side (`lease`)
changes that socket's, under its transport lock. Other threads (actors' turns,
the resolver pool) queue commands (callables) under the reactor lock and write one byte
to the wakeup pair after releasing it. Every system call releases the GIL, and with
many threads busy each release may hand it away, so the connect path makes few: IP
literals are parsed without `getaddrinfo` (`addresses.py`), the local address is asked
for only when wanted, and an opened socket registers its read interest ahead of the
first `resume_reading`. How a transport guards its own state is in `transport.py`.

Wakeups of sleeping callers that the reactor thread causes (a message put into a
mailbox) are held back and released just before it blocks in the selector, or every
`WAKEUP_BATCH` ready sockets (`wakeups.py`).

`acquire_reactor` / `release_reactor` share one reactor per process with a reference
count; at zero it stops, so nothing lingers when no connection lives.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Final

from gluegun_actors._io import connecting
from gluegun_actors._io.addresses import numeric_addresses
from gluegun_actors._io.connecting import ConnectTimeouts
from gluegun_actors._io.events import TransportCallback
from gluegun_actors._io.timers import TimerHandle, TimerHeap
from gluegun_actors._io.transport import Transport
from gluegun_actors._io.wakeups import HeldWakeups

if TYPE_CHECKING:
    from gluegun_actors._proxy import Tunnel

log = logging.getLogger("gluegun_actors.reactor")

__all__ = [
    "DEFAULT_READ_SIZE",
    "DEFAULT_RESOLVER_THREADS",
    "Reactor",
    "acquire_reactor",
    "release_reactor",
]

DEFAULT_READ_SIZE: Final = 65536
"""Bytes asked of the kernel per read, while reads do not come back full."""

DEFAULT_RESOLVER_THREADS: Final = 4
"""Threads that may run `getaddrinfo` at once (created on demand, gone after `stop`)."""

STOP_LINGER_SHARE: Final = 0.5
"""Share of `stop(timeout)` granted to transports still flushing in `close_after_flush`."""

WAKEUP_BATCH: Final = 64
"""Ready sockets handled between two releases of the wakeups the reactor holds back
(see `wakeups`): it releases them before it blocks, and at least this often."""

LOAN_GRACE: Final = 0.01
"""Seconds a socket lent to a caller thread may stay parked (its wait over, and its
mailbox not read since) before the loan sweep gives it back to the reactor: taken back
after one to two of these."""

_READ: Final = selectors.EVENT_READ


class _Life(enum.Enum):
    """The reactor's own life."""

    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Reactor:
    """One thread, one selector over every transport's socket, one timer heap."""

    def __init__(
        self,
        *,
        name: str = "gluegun-reactor",
        read_size: int = DEFAULT_READ_SIZE,
        resolver_threads: int = DEFAULT_RESOLVER_THREADS,
        tcp_nodelay: bool = True,
    ) -> None:
        if read_size < 1:
            raise ValueError(f"read_size must be at least 1, got {read_size}")
        if resolver_threads < 1:
            raise ValueError(f"resolver_threads must be at least 1, got {resolver_threads}")
        self.name = name
        self.read_size = read_size
        self._resolver_threads = resolver_threads
        self._tcp_nodelay = tcp_nodelay
        # Guarded by `_lock` (any thread posts commands, schedules and cancels timers):
        self._lock = threading.Lock()
        self._life = _Life.NEW
        self._woken = False  # a wakeup byte is in flight this round
        self._commands: deque[Callable[[], None]] = deque()
        self._timers = TimerHeap()
        self._transports: dict[Transport, None] = {}
        self._lingering: set[Transport] = set()
        # Parked loans (see `transport`; each keeps the generation it was last used in):
        self._parked: dict[Transport, None] = {}
        self._loan_generation = 0
        self._sweeping = False  # a loan sweep is scheduled
        self._resolver: ThreadPoolExecutor | None = None
        self._stop_deadline = math.inf
        # Set by `start` before the thread runs, then read-only (closed at the very end):
        self._thread: threading.Thread | None = None
        self._ident: int | None = None
        self._selector: selectors.BaseSelector | None = None  # see "Threads" above
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._wake_lock = threading.Lock()  # orders `_send_wake` and closing the pair
        self.held_wakeups = HeldWakeups()
        """The wakeups the reactor thread holds back while it works (its own; see
        `wakeups`): a callback that delivers to a mailbox on this thread holds them here."""
        self._refs = 0  # acquire_reactor's count, guarded by _shared_lock

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread. A no-op when running; a stopped reactor cannot restart."""
        with self._lock:
            if self._life is _Life.RUNNING:
                return
            if self._life is not _Life.NEW:
                raise RuntimeError(f"{self!r} was stopped and cannot be started again")
            selector = selectors.DefaultSelector()
            wake_r, wake_w = socket.socketpair()
            wake_r.setblocking(False)
            wake_w.setblocking(False)
            selector.register(wake_r.fileno(), _READ, None)
            self._selector, self._wake_r, self._wake_w = selector, wake_r, wake_w
            thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread = thread
            self._life = _Life.RUNNING
            try:
                thread.start()
            except BaseException:
                self._life = _Life.STOPPED
                self._close_own_files()
                raise
            self._ident = thread.ident

    def stop(self, timeout: float = 5.0) -> None:
        """Close every transport (no callbacks), drop timers, end the threads.

        Transports in `close_after_flush` get up to half of `timeout` to finish. Joins the
        reactor thread (and through it the resolver pool) for up to `timeout` seconds;
        called on the reactor thread itself (from a callback), it returns at once and the
        thread ends after the current round. Safe to call twice.
        """
        pool: ThreadPoolExecutor | None = None
        orphans: list[Transport] = []
        wake = False
        with self._lock:
            life = self._life
            if life is _Life.NEW:
                self._life = _Life.STOPPED
                orphans = list(self._transports)
                self._transports.clear()
                self._commands.clear()
                self._timers.clear()
                pool, self._resolver = self._resolver, None
            elif life is _Life.RUNNING:
                self._life = _Life.STOPPING
                self._stop_deadline = time.monotonic() + max(0.0, timeout) * STOP_LINGER_SHARE
                self._commands.append(self._begin_stop)
                wake = self._claim_wake_locked()
            thread = self._thread
        if wake:
            self._send_wake()
        if life is _Life.NEW:
            for transport in orphans:
                transport._force_close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            return
        if thread is None or self._on_reactor_thread():
            return
        thread.join(timeout)
        if thread.is_alive():
            log.warning("%r did not stop within %.1f s", self, timeout)

    @property
    def running(self) -> bool:
        """True from `start()` until `stop()` is called."""
        return self._life is _Life.RUNNING

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    # -- API -------------------------------------------------------------------------------

    def connect(
        self,
        host: str,
        port: int,
        *,
        callback: TransportCallback,
        timeout: float | ConnectTimeouts | None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        tunnel: Tunnel | None = None,
    ) -> Transport:
        """Start connecting to `host:port` and return the transport at once.

        Names are resolved on a small resolver pool (IP literals are not); each address
        is tried in turn with a non-blocking connect; with `ssl_context` the TLS
        handshake follows, also non-blocking. Each phase is bounded by its own timeout
        (`ConnectTimeouts`; a number bounds each phase by that many seconds; None: no
        bound). With `tunnel`, `host:port` is a proxy's, asked for a tunnel to the server
        before the TLS handshake (`tunneling`). The outcome is `Connected` or `ConnectFailed`.
        """
        timeouts = (
            timeout if isinstance(timeout, ConnectTimeouts) else ConnectTimeouts.every(timeout)
        )
        transport = Transport(
            self, host, port, callback, timeouts, ssl_context, server_hostname, tunnel
        )
        numeric = numeric_addresses(host, port)
        if numeric is None and timeouts.lookup is not None:
            transport._deadline = self._schedule(
                timeouts.lookup, partial(connecting.on_deadline, transport), internal=False
            )
        wake = False
        with self._lock:
            if self._life not in (_Life.NEW, _Life.RUNNING):
                refused = True
            else:
                refused = False
                self._transports[transport] = None
                if numeric is not None:
                    self._commands.append(partial(connecting.begin, transport, numeric))
                    wake = not self._on_reactor_thread() and self._claim_wake_locked()
                else:
                    self._resolver_pool().submit(connecting.resolve_host, transport)
        if wake:
            self._send_wake()
        if refused:
            if transport._deadline is not None:
                transport._deadline.cancel()
            raise RuntimeError(f"{self!r} is stopped; it cannot connect")
        return transport

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` on the reactor thread after `delay` seconds. Thread-safe."""
        return self._schedule(delay, callback, internal=False)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the reactor thread soon, after those queued before. Thread-safe."""
        with self._lock:
            if self._life not in (_Life.NEW, _Life.RUNNING):
                raise RuntimeError(f"{self!r} is stopped")
            self._commands.append(callback)
            wake = not self._on_reactor_thread() and self._claim_wake_locked()
        if wake:
            self._send_wake()

    def transport_count(self) -> int:
        """Transports that still hold (or are about to hold) a socket."""
        with self._lock:
            return len(self._transports)

    def timer_count(self) -> int:
        """Timers scheduled and neither fired nor cancelled."""
        with self._lock:
            return len(self._timers)

    def __repr__(self) -> str:
        return (
            f"<Reactor {self.name} {self._life.value} transports={len(self._transports)}"
            f" timers={len(self._timers)}>"
        )

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        self._ident = threading.get_ident()
        crashed = False
        try:
            self._loop()
        except BaseException:
            crashed = True
            log.critical("%r: the loop failed; every transport is ended", self, exc_info=True)
        finally:
            self.held_wakeups.release()
            try:
                self._shutdown(crashed)  # a crash's callbacks may hold wakeups again
            finally:
                self.held_wakeups.release()

    def _loop(self) -> None:
        selector = self._selector
        assert selector is not None
        held = self.held_wakeups
        while True:
            timeout = self._poll_timeout()
            held.release()
            ready = selector.select(timeout)
            for count, (key, mask) in enumerate(ready, 1):
                transport = key.data
                if transport is None:
                    self._drain_wakeup()
                    continue
                try:
                    transport._on_ready(mask)
                except Exception as error:
                    self._transport_error(transport, error)
                if count % WAKEUP_BATCH == 0:
                    held.release()
            held.release()  # the sockets' work is done; commands and timers are short
            self._run_commands()
            self._run_timers()
            if self._life is _Life.STOPPING and self._stop_done():
                return

    def _poll_timeout(self) -> float | None:
        with self._lock:
            if self._commands:
                return 0.0
            deadline = self._timers.next_deadline()
            if self._life is _Life.STOPPING:
                deadline = min(deadline, self._stop_deadline)
        if deadline == math.inf:
            return None
        return max(0.0, deadline - time.monotonic())

    def _drain_wakeup(self) -> None:
        """Empty the wakeup pair, then let the next post write a byte again.

        Commands queued before `_woken` is cleared run in this round (commands come after
        events), so no wakeup is lost.
        """
        wake_r = self._wake_r
        assert wake_r is not None
        for _ in range(64):  # at most one byte is in flight per round; bounded anyway
            try:
                if not wake_r.recv(4096):
                    break
            except (BlockingIOError, InterruptedError):
                break
        with self._lock:
            self._woken = False

    def _run_commands(self) -> None:
        with self._lock:
            if not self._commands:
                return
            commands = self._commands
            self._commands = deque()
        for command in commands:
            try:
                command()
            except Exception:
                log.exception("%r: a queued callback raised; ignored", self)

    def _run_timers(self) -> None:
        with self._lock:
            due = self._timers.pop_due(time.monotonic())
        for handle in due:
            with self._lock:
                callback = self._timers.take_callback(handle)
            if callback is None:
                continue  # cancelled since it was taken from the heap
            try:
                callback()
            except Exception:
                log.exception("%r: a timer callback raised; ignored", self)

    def _transport_error(self, transport: Transport, error: Exception) -> None:
        log.exception("%r: handling %r failed; ending that transport", self, transport)
        try:
            transport._on_internal_error(error)
        except Exception:
            log.exception("%r: could not end %r cleanly", self, transport)

    def _begin_stop(self) -> None:
        """Command: close all but the flushing transports; keep only internal timers."""
        with self._lock:
            self._timers.keep_internal()
            victims = [t for t in self._transports if t not in self._lingering]
        for transport in victims:
            transport._force_close()
            self._forget(transport)

    def _stop_done(self) -> bool:
        with self._lock:
            return not self._lingering or time.monotonic() >= self._stop_deadline

    def _shutdown(self, crashed: bool) -> None:
        with self._lock:
            self._life = _Life.STOPPED
            self._commands.clear()
            self._timers.clear()
            transports = list(self._transports)
            pool, self._resolver = self._resolver, None
        for transport in transports:
            try:
                if crashed:
                    transport._on_internal_error(OSError("the reactor stopped after an error"))
                transport._force_close()
            except Exception:
                log.exception("%r: could not close %r", self, transport)
        with self._lock:
            self._transports.clear()
            self._lingering.clear()
            self._close_own_files()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- internals shared with transports --------------------------------------------------

    def _on_reactor_thread(self) -> bool:
        return threading.get_ident() == self._ident

    def _claim_wake_locked(self) -> bool:
        """Whether the caller must `_send_wake` once it releases the reactor lock.

        At most one wakeup byte is in flight per round (`_drain_wakeup` clears the claim).
        The byte is sent outside the lock: the send releases the GIL, and a thread that
        takes the GIL then would only block on the lock.
        """
        if self._woken or self._wake_w is None:
            return False
        self._woken = True
        return True

    def _send_wake(self) -> None:
        """Write the wakeup byte (reactor lock not held; see `_claim_wake_locked`)."""
        with self._wake_lock:  # never races `_close_own_files`, so never a reused descriptor
            wake_w = self._wake_w
            if wake_w is not None:
                # OSError: the pair is full (a byte is already waiting).
                with contextlib.suppress(OSError):
                    wake_w.send(b"\0")

    def _post(self, command: Callable[[], None]) -> bool:
        """Queue `command` for the reactor thread; False once the reactor has stopped."""
        with self._lock:
            if self._life is _Life.STOPPED:
                return False
            self._commands.append(command)
            wake = not self._on_reactor_thread() and self._claim_wake_locked()
        if wake:
            self._send_wake()
        return True

    def _schedule(
        self, delay: float, callback: Callable[[], None], *, internal: bool
    ) -> TimerHandle:
        if math.isnan(delay):
            raise ValueError("a timer delay cannot be NaN")
        handle = TimerHandle(self, callback, time.monotonic() + max(0.0, delay), internal)
        with self._lock:
            if self._life is _Life.STOPPED or (self._life is _Life.STOPPING and not internal):
                raise RuntimeError(f"{self!r} is stopped; it cannot schedule timers")
            wake = (
                self._timers.push(handle)
                and not self._on_reactor_thread()
                and self._claim_wake_locked()
            )
        if wake:
            self._send_wake()
        return handle

    def _schedule_internal(self, delay: float, callback: Callable[[], None]) -> TimerHandle | None:
        try:
            return self._schedule(delay, callback, internal=True)
        except RuntimeError:
            return None

    def _cancel_timer(self, handle: TimerHandle) -> None:
        with self._lock:
            self._timers.cancel(handle)

    def _forget(self, transport: Transport) -> None:
        with self._lock:
            self._transports.pop(transport, None)
            self._lingering.discard(transport)
            self._parked.pop(transport, None)

    def _park_loan(self, transport: Transport) -> bool:
        """A borrower parks its loan of `transport` (transport lock held); False when the
        reactor cannot sweep it (stopping), so the loan must go back now."""
        with self._lock:
            if self._life is not _Life.RUNNING:
                return False
            self._parked[transport] = None
            if self._sweeping:
                return True
            self._sweeping = True
        if self._schedule_internal(LOAN_GRACE, self._sweep_loans) is None:
            with self._lock:
                self._parked.pop(transport, None)
                self._sweeping = False
            return False
        return True

    def _unpark_loan(self, transport: Transport) -> None:
        with self._lock:
            self._parked.pop(transport, None)

    @property
    def loan_generation(self) -> int:
        """The loan sweep's count: a parked loan last used before the current one is
        taken back by the next sweep."""
        return self._loan_generation

    def _sweep_loans(self) -> None:
        """Timer: take back the loans not used since before the last sweep."""
        with self._lock:
            generation = self._loan_generation
            self._loan_generation = generation + 1
            stale = [t for t in self._parked if t._loan_used < generation]
            again = len(stale) < len(self._parked)
            self._sweeping = again
        for transport in stale:
            transport._reclaim()
        if again and self._schedule_internal(LOAN_GRACE, self._sweep_loans) is None:
            with self._lock:
                self._sweeping = False

    def _linger(self, transport: Transport) -> None:
        with self._lock:
            self._lingering.add(transport)

    def _resolver_pool(self) -> ThreadPoolExecutor:
        """The resolver threads, made on first need (reactor lock held)."""
        if self._resolver is None:
            self._resolver = ThreadPoolExecutor(
                max_workers=self._resolver_threads, thread_name_prefix=f"{self.name}-resolver"
            )
        return self._resolver

    def _close_own_files(self) -> None:
        with self._wake_lock:
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._wake_r = self._wake_w = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None


# -- the shared reactor ---------------------------------------------------------------------

_shared_lock = threading.Lock()
_shared: Reactor | None = None


def acquire_reactor() -> Reactor:
    """The process's shared reactor, started on first use; pair with `release_reactor`."""
    global _shared
    with _shared_lock:
        reactor = _shared
        if reactor is None or not reactor.running:
            reactor = Reactor()
            reactor.start()
            _shared = reactor
        reactor._refs += 1
        return reactor


def release_reactor(reactor: Reactor) -> None:
    """Give back one `acquire_reactor`; the last one stops the reactor.

    Safe from the reactor thread itself (a callback): the stop then does not wait for
    the thread, which ends after its current round.
    """
    global _shared
    with _shared_lock:
        if reactor._refs <= 0:
            raise RuntimeError(f"release_reactor({reactor!r}) without a matching acquire")
        reactor._refs -= 1
        if reactor._refs:
            return
        if _shared is reactor:
            _shared = None
    reactor.stop()

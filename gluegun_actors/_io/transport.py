"""A transport: one client socket owned by the reactor, TCP or TLS.

Theory of operation
-------------------
`Reactor.connect` makes a transport and starts connecting it (`connecting.py`).
Once open, the reactor thread reports what happens to the socket by calling the
transport's callback with a transport event (`events.py`); the states are the tables
in `state.py`.

Locks. Each transport has a re-entrant lock, `_lock`, that guards its state and
serialises all I/O on its socket (an `ssl.SSLSocket` must not be read and written at
once), so `write` can send at once from whichever thread runs the actor's turn. The
reactor thread queues the events it finds under that lock and calls the callback after
releasing it (`state.delivers_after`), so a writer never waits for a callback to end. A
plain socket's read and its report take no transport lock at all (`_on_ready`).
Callbacks run under a second re-entrant lock, `_delivering`, which `close` takes too:
once `close` returns no callback runs. A callback may call the same transport's
methods; it must not wait on a thread that is itself closing that transport. Lock order
is delivering, transport, reactor.

Reading is active-once, as Erlang's ``{active, once}``: after a `Received` the socket is
not read again until `resume_reading`, so a slow consumer leaves bytes in the kernel and
TCP pushes back on the peer. The read interest is dropped lazily: it stays registered
until the socket turns readable while paused, so a consumer that resumes quickly costs
no selector calls. With TLS, bytes already decrypted inside the SSL object are delivered
on resume without waiting for the socket.

Lending the read side. A caller thread that waits for a message may borrow the read
side of an armed plain socket (`lease`): it polls and reads the socket itself and
delivers on its own thread. The loan (`Loan`) is ACTIVE while the borrower polls; when
its wait ends the loan is PARKED, the read interest still off, so the caller's next wait
(or another thread's) takes it up again with no system call, and bytes that arrive in
between do not wake the reactor to race the caller for them. The reactor takes a parked
loan back once it has not been used (waited on, or its mailbox read) for `LOAN_GRACE` to
`2 * LOAN_GRACE` (its loan sweep), so data that nobody waits for is read within that
time of the caller's last receive. A loan is never parked while another thread waits
behind it (`_waiting_readers`): it goes back to the reactor at once, which serves that
thread. One reader at a time is the `_reader` lock: an active borrower holds it, the
reactor's unlocked read takes it without waiting and reads only when nothing is lent.
Whoever holds the transport lock may change this socket's selector registration: a
borrower drops the read interest when it borrows from the reactor and restores it when
it gives the socket back. `resume_reading` posts nothing while lent. A close while the
loan is active shuts the socket down instead of closing it (the borrower's poll wakes)
and leaves the descriptor to the borrower, so a descriptor it polls is never reused
under it.

Writing tries a non-blocking send at once when nothing is parked; what the kernel does
not take is parked, in order, and sent when the socket turns writable. A write failure
is reported (`Broken`) even while reading is paused.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import selectors
import socket
import ssl
import threading
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Final

from gluegun_actors._io import connecting, tunneling
from gluegun_actors._io.addresses import Address, AddrInfo
from gluegun_actors._io.connecting import ConnectTimeouts
from gluegun_actors._io.events import (
    Broken,
    ConnectFailed,
    Eof,
    Received,
    TransportCallback,
    TransportEvent,
)
from gluegun_actors._io.state import (
    CONNECTING_PHASES,
    PHASE_TRANSITIONS,
    Loan,
    Phase,
    Reading,
    delivers_after,
)

if TYPE_CHECKING:
    from gluegun_actors._io.reactor import Reactor
    from gluegun_actors._io.timers import TimerHandle
    from gluegun_actors._io.tunneling import Handshake
    from gluegun_actors._proxy import Tunnel

log = logging.getLogger("gluegun_actors.reactor")

__all__ = ["MAX_READ_SIZE", "TLS_WRITE_CHUNK", "WRITE_BACKLOG_LIMIT", "Transport"]

MAX_READ_SIZE: Final = 1 << 20
"""A transport whose reads come back full doubles its read size up to this (the largest
`Received.data`); a short read sets it back to the reactor's `read_size`."""

TLS_WRITE_CHUNK: Final = 256 * 1024
"""Largest slice handed to one `SSLSocket.send`; a retry after WANT_WRITE repeats it exactly."""
WRITE_BACKLOG_LIMIT: Final = 1 << 20
"""Bytes parked for sending past which the socket is not read: a peer that sends (pings,
requests for answers) and never reads is held back by TCP, not by our memory."""

_READ: Final = selectors.EVENT_READ
_WRITE: Final = selectors.EVENT_WRITE

_transport_ids = itertools.count(1)


class Transport:
    """One client socket owned by the reactor. Its public methods are thread-safe.

    Made by `Reactor.connect`; reports through the callback given there.
    """

    __slots__ = (
        "__weakref__",
        "_address",
        "_addresses",
        "_callback",
        "_deadline",
        "_delivering",
        "_failure",
        "_fd",
        "_handshake",
        "_id",
        "_last_error",
        "_loan",
        "_loan_used",
        "_lock",
        "_muted",
        "_orphan",
        "_out",
        "_out_bytes",
        "_peername",
        "_pending",
        "_phase",
        "_reactor",
        "_read_size",
        "_reader",
        "_reading",
        "_registered",
        "_server_hostname",
        "_sock",
        "_sockname",
        "_ssl_context",
        "_sync_posted",
        "_timeouts",
        "_tls_want",
        "_tunnel",
        "_waiting_readers",
        "host",
        "port",
    )

    def __init__(
        self,
        reactor: Reactor,
        host: str,
        port: int,
        callback: TransportCallback,
        timeouts: ConnectTimeouts,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        tunnel: Tunnel | None = None,
    ) -> None:
        self._reactor = reactor
        self._id = next(_transport_ids)
        self.host = host
        self.port = port
        self._callback = callback
        self._timeouts = timeouts
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname or (tunnel.host if tunnel else None)
        self._tunnel = tunnel  # through a proxy: `host:port` is the proxy's
        self._handshake: Handshake | None = None  # with the proxy, while TUNNELING
        # Guarded by `_delivering` (any thread may close; the reactor thread delivers):
        self._delivering = threading.RLock()
        self._muted = False  # closed by its user: nothing more is delivered
        # Guarded by `_lock`; `_reading` is the holder of `_reader`'s own while ARMED on a
        # plain socket (its unlocked read):
        self._lock = threading.RLock()
        self._pending: deque[TransportEvent] = deque()  # found under _lock, not yet delivered
        self._phase = Phase.RESOLVING
        self._reading = Reading.PAUSED
        self._sock: socket.socket | None = None
        self._fd = -1
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0  # read unlocked by `pending_write_bytes` (a snapshot)
        self._failure: OSError | None = None  # the write error, in FAILING
        self._sync_posted = False
        self._loan = Loan.NONE  # the read side lent to caller threads (see `_lend_reading`)
        self._waiting_readers = 0  # threads sleeping while the loan is active elsewhere
        self._loan_used = 0  # the reactor's loan generation when a parked loan was last used
        self._orphan: socket.socket | None = None  # closed while lent: the borrower closes it
        # Held by whoever reads the socket: the reactor for one read, a borrower for a loan.
        self._reader = threading.Lock()
        self._deadline: TimerHandle | None = None  # connect or flush deadline
        # The reactor thread's own (resolution hands its result over through a command):
        self._read_size = reactor.read_size
        self._registered = 0  # selector events registered for _fd; 0 = not registered
        self._tls_want = _READ  # what the TLS handshake waits for
        self._addresses: deque[AddrInfo] = deque()
        self._address: Address | None = None  # the one being connected to
        self._last_error: BaseException | None = None
        # Written once by the reactor thread when the connection opens, read by any:
        self._peername: Address | None = None
        self._sockname: Address | None = None  # cached on first read

    # -- public API (any thread) ------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send `data` after everything written before, without blocking.

        Sends at once when nothing is parked; the rest is parked with the reactor and sent
        when the socket is writable. Before `Connected` everything is parked. After
        `close()`, a failure or `close_after_flush()`, writes are dropped. A failed send
        is reported as `Broken` from the reactor thread.
        """
        if not data:
            return
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        with self._lock:
            phase = self._phase
            if phase in CONNECTING_PHASES:
                self._park(view)
                return
            if phase is not Phase.OPEN:
                return
            if self._out:
                self._park(view)
                return  # the reactor is already waiting to send what is parked
            sock = self._sock
            if sock is not None and self._ssl_context is None:  # the common case: one send
                try:
                    sent = sock.send(view)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError as failure:
                    self._failure = failure
                    self._set_phase(Phase.FAILING)
                    self._request_sync()
                    return
                if sent >= len(view):
                    return
                view = view[sent:]
            self._park(view)
            error = self._flush_out()
            if error is not None:
                self._failure = error
                self._set_phase(Phase.FAILING)
                self._request_sync()
            elif self._out:
                self._request_sync()

    def resume_reading(self) -> None:
        """Read once more: deliver at most one more `Received`, `Eof` or `Broken`.

        Erlang's ``{active, once}``. May be called from the callback of the `Received` it
        follows. Before `Connected` it takes effect once the connection is up; after `Eof`
        it does nothing.
        """
        with self._lock:
            if self._reading is not Reading.PAUSED:
                return
            self._reading = Reading.ARMED
            if (
                self._phase is Phase.OPEN
                and self._loan is Loan.NONE
                and (not self._registered & _READ or self._tls_pending())
            ):
                self._request_sync()

    def close(self) -> None:
        """Close now: unregister and close the socket, drop parked writes.

        Safe twice and from any thread, also while connecting (then no `Connected`
        follows). When it returns, no callback for this transport runs or will run: a
        callback already running on the reactor thread is waited for (the lock), unless
        `close` is called from inside it. Called off the reactor thread on a registered
        socket, the file descriptor itself is closed by the reactor a moment later.
        """
        with self._delivering, self._lock:
            self._mute()
            if self._phase is Phase.CLOSED:
                return
            self._become_closed()
            if self._sock is None:
                self._reactor._forget(self)
            elif not self._registered or self._reactor._on_reactor_thread():
                self._release()
            else:
                self._request_sync()

    def close_after_flush(self, timeout: float) -> None:
        """Close once parked writes are sent, or after `timeout` seconds at the latest.

        No callback runs after it returns and further writes are dropped, as after
        `close()`; only the socket lingers. Closes at once when nothing is parked or the
        connection is not up.
        """
        with self._delivering, self._lock:
            self._mute()
            if self._phase is Phase.FLUSHING:
                return
            if self._phase is not Phase.OPEN or not self._out:
                self.close()
                return
            deadline = self._reactor._schedule_internal(
                timeout, partial(connecting.on_deadline, self)
            )
            if deadline is None:  # the reactor has stopped: nothing can be flushed
                self.close()
                return
            self._set_phase(Phase.FLUSHING)
            self._reading = Reading.ENDED
            self._deadline = deadline
            self._reactor._linger(self)
            self._request_sync()

    @property
    def pending_write_bytes(self) -> int:
        """Bytes written but not yet handed to the kernel."""
        return self._out_bytes

    @property
    def closed(self) -> bool:
        """True once `close()` or `close_after_flush()` was called or the transport failed.

        From then on no callback runs and writes are dropped (a socket in
        `close_after_flush` may still be sending what was parked).
        """
        return self._phase in (Phase.CLOSED, Phase.FLUSHING)

    @property
    def peername(self) -> Address | None:
        """The peer's address, known from `Connected` on (the address connected to)."""
        return self._peername

    @property
    def sockname(self) -> Address | None:
        """The local address, known from `Connected` on while the socket is open.

        Asked of the kernel on first use, not on every connect: the call releases the GIL.
        """
        if self._sockname is None and self._peername is not None:
            sock = self._sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    self._sockname = sock.getsockname()
        return self._sockname

    @property
    def tls(self) -> bool:
        """True when the transport was asked for TLS (`ssl_context` given)."""
        return self._ssl_context is not None

    def __repr__(self) -> str:
        scheme = "tls" if self._ssl_context is not None else "tcp"
        return (
            f"<Transport #{self._id} {scheme}://{self.host}:{self.port} {self._phase.value}"
            f" reading={self._reading.value} fd={self._fd} parked={self._out_bytes}B>"
        )

    # -- readiness and commands (reactor thread) -------------------------------------------

    def _on_ready(self, mask: int) -> None:
        """The selector says the socket is ready for `mask`.

        A plain socket's read takes no transport lock (the kernel keeps a send from
        another thread apart from it), and its bytes are reported under the delivery lock
        alone, so neither waits for an actor that holds the transport lock through a send.
        While reading is armed the read side's state is the reactor's own; `close` takes
        the delivery lock too, so nothing is reported after it returns.
        """
        if (
            mask == _READ
            and self._ssl_context is None
            and self._phase is Phase.OPEN
            and self._reading is Reading.ARMED
            and self._out_bytes <= WRITE_BACKLOG_LIMIT
        ):
            reader = self._reader
            if not reader.acquire(blocking=False):
                return  # lent to a caller thread, which drops the read interest
            try:
                # Re-checked with the read side held: a borrower may have read meanwhile.
                sock = self._sock
                if sock is not None and self._reading is Reading.ARMED and self._loan is Loan.NONE:
                    self._read_unlocked(sock)
            finally:
                reader.release()
            return
        self._on_ready_locked(mask)

    def _read_unlocked(self, sock: socket.socket) -> bool:
        """One read of an armed plain socket by the holder of `_reader` (the reactor or a
        borrower), reported on the calling thread. False once reading has ended."""
        size = self._read_size
        try:
            data = sock.recv(size)
        except BlockingIOError:
            return True
        except OSError as error:
            self._after_unlocked_read(size, b"", error)
            return False
        if not data:
            self._after_unlocked_read(size, data, None)
            return False
        with self._delivering:
            if not self._muted and self._phase is Phase.OPEN and self._reading is Reading.ARMED:
                self._took(size, data)
                self._deliver_pending()
        return True

    @delivers_after
    def _after_unlocked_read(self, size: int, data: bytes, error: OSError | None) -> None:
        if self._phase is not Phase.OPEN or self._reading is not Reading.ARMED:
            return  # closed meanwhile: what was read is dropped with the connection
        if error is not None:
            self._break(error)
            return
        self._took(size, data)
        self._apply_interest(lazy=True)

    @delivers_after
    def _on_ready_locked(self, mask: int) -> None:
        match self._phase:
            case Phase.CONNECTING:
                connecting.finish_connect(self)
            case Phase.TUNNELING:
                if tunneling.on_ready(self, mask):
                    connecting.tcp_connected(self)
            case Phase.HANDSHAKING:
                connecting.tls_handshake(self)
            case Phase.OPEN:
                self._serve(mask)
            case Phase.FLUSHING | Phase.FAILING | Phase.CLOSED:
                self._wind_down()
            case Phase.RESOLVING:
                pass

    def _serve(self, mask: int) -> None:
        lazy = True
        if mask & _WRITE and self._out:
            error = self._flush_out()
            if error is not None:
                self._break(error)
                return
        if mask & _READ:
            if (
                self._reading is Reading.ARMED
                and self._loan is Loan.NONE
                and self._out_bytes <= WRITE_BACKLOG_LIMIT
            ):
                self._read()
            else:
                lazy = False  # readable while paused: now drop the read interest
        self._apply_interest(lazy=lazy)

    @delivers_after
    def _sync(self) -> None:
        """Command: bring the selector in line with what other threads asked for."""
        self._sync_posted = False
        match self._phase:
            case Phase.OPEN:
                if self._reading is Reading.ARMED and self._tls_pending():
                    self._read()
                self._apply_interest(lazy=True)
            case Phase.FLUSHING | Phase.FAILING | Phase.CLOSED:
                self._wind_down()
            case Phase.RESOLVING | Phase.CONNECTING | Phase.TUNNELING | Phase.HANDSHAKING:
                pass

    def _wind_down(self) -> None:
        """FLUSHING, FAILING or CLOSED, on readiness or a command: flush what is parked,
        report the write failure, or let the socket go."""
        match self._phase:
            case Phase.FLUSHING:
                self._drain()
            case Phase.FAILING:
                assert self._failure is not None
                self._break(self._failure)
            case Phase.CLOSED:
                self._release()

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        size = self._read_size
        try:
            data = sock.recv(size)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as error:
            self._break(error)
            return
        self._took(size, data)

    def _took(self, size: int, data: bytes) -> None:
        """A read of `size` bytes gave `data`: pause reading and report it."""
        # A full read means more is waiting: read bigger next time (fewer reads and fewer
        # messages split across reads); a short one goes back to the cheaper default.
        if len(data) == size:
            self._read_size = min(size * 2, MAX_READ_SIZE)
        elif size > self._reactor.read_size:
            self._read_size = self._reactor.read_size
        if data:
            self._reading = Reading.PAUSED
            self._deliver(Received(self, data))
        else:
            self._reading = Reading.ENDED
            self._deliver(Eof(self))

    def _drain(self) -> None:
        """FLUSHING: send what is parked; close when all is sent or sending failed."""
        error = self._flush_out()
        if error is not None or not self._out:
            self._finish(None)
            return
        self._apply_interest(lazy=True)

    @delivers_after
    def _on_internal_error(self, error: BaseException) -> None:
        """The reactor's own handling failed: end this transport, keep the others."""
        if self._phase in CONNECTING_PHASES:
            self._fail(error)
        elif self._phase is not Phase.CLOSED:
            self._break(OSError(f"reactor error on this transport: {error!r}"))

    def _force_close(self) -> None:
        """Reactor shutdown: close without callbacks."""
        with self._lock:
            self._mute()
            if self._phase is not Phase.CLOSED:
                self._become_closed()
            self._drop_socket()

    # -- the read side lent to a caller thread (see `lease`) -------------------------------

    def _lend_reading(self) -> socket.socket | None:
        """Lend the read side to the calling thread, which then reads with `_read_lent`
        until `_end_loan`. None when it cannot be lent: not open and armed, TLS (the SSL
        object is shared with writers), backlogged, or being read right now."""
        if self._ssl_context is not None:
            return None
        with self._lock:
            sock = self._sock
            if (
                sock is None
                or self._phase is not Phase.OPEN
                or self._reading is not Reading.ARMED
                or self._out_bytes > WRITE_BACKLOG_LIMIT
                or self._reactor._selector is None
                or not self._reader.acquire(blocking=False)
            ):
                return None
            self._unpark()
            self._loan = Loan.ACTIVE
            self._apply_interest(lazy=False)
            return sock

    def _wait_behind_borrower(self) -> bool:
        """Count the calling thread as waiting while another thread's loan is active, so
        that loan goes back to the reactor instead of being parked; True if counted (then
        call `_stop_waiting` once the wait is over)."""
        with self._lock:
            if self._loan is not Loan.ACTIVE:
                return False
            self._waiting_readers += 1
            return True

    def _stop_waiting(self) -> None:
        with self._lock:
            self._waiting_readers -= 1

    def _read_lent(self, sock: socket.socket) -> bool:
        """The borrower's read: at most one `Received` (or `Eof`, `Broken`), delivered on
        the calling thread. False when the borrower should give the socket back: reading
        paused or ended, or the connection is closing."""
        if (
            self._reading is not Reading.ARMED
            or self._phase is not Phase.OPEN
            or self._out_bytes > WRITE_BACKLOG_LIMIT
        ):
            return False
        return self._read_unlocked(sock) and self._reading is Reading.ARMED

    def _end_loan(self) -> None:
        """The borrower's wait is over: park the loan if reading goes on and nobody waits
        behind it, else give the socket back to the reactor (or close it, if it was closed
        meanwhile)."""
        with self._lock:
            orphan, self._orphan = self._orphan, None
            if (
                orphan is None
                and self._phase is Phase.OPEN
                and self._reading is Reading.ARMED
                and not self._waiting_readers
                and self._out_bytes <= WRITE_BACKLOG_LIMIT
                and self._park_loan()
            ):
                self._loan = Loan.PARKED
            else:
                self._loan = Loan.NONE
                if orphan is None:
                    self._apply_interest(lazy=True)
            self._reader.release()
        if orphan is not None:
            with contextlib.suppress(OSError):
                orphan.close()

    def _park_loan(self) -> bool:
        self._loan_used = self._reactor.loan_generation
        return self._reactor._park_loan(self)

    def _keep_loan(self, *, steal: bool) -> None:
        """A mailbox this socket feeds was read without waiting: its reader is at work on
        what was read, so a parked loan stays a while longer (no lock: a benign race).
        With `steal` (the socket is that mailbox's only recent feeder) a socket the
        reactor reads is parked for that reader instead: it reads itself when its queue
        runs dry, and the reactor does not race it for the GIL meanwhile."""
        loan = self._loan
        if loan is Loan.PARKED:
            self._loan_used = self._reactor.loan_generation
        elif (
            steal
            and loan is Loan.NONE
            and self._reading is Reading.ARMED
            and self._lend_reading() is not None
        ):
            self._end_loan()

    def _reclaim(self) -> None:
        """The reactor's loan sweep: a loan parked since the last sweep comes back."""
        with self._lock:
            if self._loan is Loan.PARKED:
                self._unpark()
                self._apply_interest(lazy=True)

    def _unpark(self) -> None:
        """Lock held: end a parked loan's place in the reactor's sweep."""
        if self._loan is Loan.PARKED:
            self._loan = Loan.NONE
            self._reactor._unpark_loan(self)

    # -- helpers (lock held) ---------------------------------------------------------------

    def _set_phase(self, phase: Phase) -> None:
        if phase not in PHASE_TRANSITIONS[self._phase]:
            raise AssertionError(f"{self!r}: no transition {self._phase.value} -> {phase.value}")
        self._phase = phase

    def _park(self, view: memoryview) -> None:
        self._out.append(view)
        self._out_bytes += len(view)

    def _flush_out(self) -> OSError | None:
        """Send parked bytes until the kernel refuses; return the error that broke it."""
        sock = self._sock
        assert sock is not None
        tls = self._ssl_context is not None
        out = self._out
        while out:
            head = out[0]
            piece = head[:TLS_WRITE_CHUNK] if tls else head
            try:
                sent = sock.send(piece)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return None
            except OSError as error:
                return error
            if sent <= 0:
                return None
            self._out_bytes -= sent
            if sent >= len(head):
                out.popleft()
            else:
                out[0] = head[sent:]
        return None

    def _tls_pending(self) -> bool:
        sock = self._sock
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def _apply_interest(self, *, lazy: bool, read_ahead: bool = False) -> None:
        """Register the events the current state waits for (transport lock held: the
        reactor thread, or a borrower lending or giving back the read side).

        With `lazy`, a read interest left over from before a pause is kept; `read_ahead`
        registers one while paused, on the same terms.
        """
        if self._sock is None:
            return
        match self._phase:
            case Phase.CONNECTING:
                desired = _WRITE
            case Phase.TUNNELING:
                desired = tunneling.interest(self)
            case Phase.HANDSHAKING:
                desired = self._tls_want
            case Phase.OPEN:
                desired = _WRITE if self._out else 0
                if self._out_bytes > WRITE_BACKLOG_LIMIT:
                    pass  # backlogged: read again once the peer has taken enough
                elif self._reading is Reading.ARMED and self._loan is Loan.NONE:
                    desired |= _READ
                elif self._reading is Reading.PAUSED and lazy:
                    desired |= _READ if read_ahead else self._registered & _READ
            case Phase.FLUSHING:
                desired = _WRITE if self._out else 0
            case Phase.RESOLVING | Phase.FAILING | Phase.CLOSED:
                return
        if desired == self._registered:
            return
        selector = self._reactor._selector
        assert selector is not None
        if not self._registered:
            selector.register(self._fd, desired, self)
        elif not desired:
            selector.unregister(self._fd)
        else:
            selector.modify(self._fd, desired, self)
        self._registered = desired

    def _unregister(self) -> None:
        if self._registered:
            self._registered = 0
            selector = self._reactor._selector
            if selector is not None:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    selector.unregister(self._fd)

    def _drop_socket(self) -> None:
        """Unregister and close the socket (reactor thread, or any thread if unregistered).

        While lent, shut it down instead: the borrower's poll wakes, and the borrower
        closes it when it gives it back (`_take_back`).
        """
        sock = self._sock
        if sock is None:
            return
        self._unregister()
        self._sock = None
        self._fd = -1
        if self._loan is Loan.ACTIVE:
            self._orphan = sock
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            return
        self._unpark()
        with contextlib.suppress(OSError):
            sock.close()

    def _release(self) -> None:
        self._drop_socket()
        self._reactor._forget(self)

    def _become_closed(self) -> None:
        self._set_phase(Phase.CLOSED)
        self._reading = Reading.ENDED
        self._out.clear()
        self._out_bytes = 0
        self._failure = None
        self._cancel_deadline()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _finish(self, event: TransportEvent | None) -> None:
        """Close for good, then report `event` (if any): the socket is gone first."""
        self._become_closed()
        self._release()
        if event is not None:
            self._deliver(event)

    def _fail(self, error: BaseException) -> None:
        if self._tunnel is not None:
            error = tunneling.failure(self, error)  # named after the proxy, by phase
        self._finish(ConnectFailed(self, error))

    def _break(self, error: OSError) -> None:
        self._finish(Broken(self, error))

    def _deliver(self, event: TransportEvent) -> None:
        """Queue `event` for the callback, which runs once the transport lock is released."""
        self._pending.append(event)

    def _mute(self) -> None:
        """Closed by its user (delivery lock held): drop the events not yet delivered."""
        self._muted = True
        self._pending.clear()

    def _deliver_pending(self) -> None:
        """Call the callback with the queued events (reactor thread, transport lock free)."""
        with self._delivering:
            pending = self._pending
            while pending and not self._muted:
                event = pending.popleft()
                try:
                    self._callback(event)
                except BaseException:
                    log.exception(
                        "the callback of %r raised on %s; ignored", self, type(event).__name__
                    )

    def _request_sync(self) -> None:
        if self._sync_posted:
            return
        self._sync_posted = True
        if not self._reactor._post(self._sync):
            self._sync_posted = False

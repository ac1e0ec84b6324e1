"""The reactor: one thread that owns every connection socket and a timer heap.

Theory of operation
-------------------
A runtime has one `Reactor`. Its thread waits in a `selectors.DefaultSelector` over every
connection socket plus the read end of a socketpair (the wakeup), with a timeout taken
from a heap of timers. It never parses bytes: it reports what happened to a socket by
calling the callback given to `Reactor.connect` with a `TransportEvent`. A connection
actor passes a callback that `tell`s itself the event, so callbacks are quick; one that
raises is logged and ignored, it never stops the reactor.

Threads. Only the reactor thread touches the selector. Other threads (actors, the
resolver pool) queue commands (callables) and write one byte to the wakeup pair, after
releasing the reactor lock. Every system call releases the GIL, and with many threads
busy each release may hand it away, so the connect path makes few: IP literals are
parsed without `getaddrinfo`, the local address is asked for only when wanted, and an
opened socket registers its read interest ahead of the first `resume_reading`.
Each `Transport` has a re-entrant lock that guards its state and serialises all I/O on
its socket (an `ssl.SSLSocket` must not be read and written at once), so `write` can
send at once from the actor's thread. The reactor thread queues the events it finds
under that lock and calls the callback after releasing it, so an actor writing from
another thread never waits for a callback to end; a plain socket's read and its report
take no transport lock at all (`Transport._on_ready`). Callbacks run under a second
re-entrant lock, the delivery lock, which `close` takes too: once `close` returns no
callback runs. A callback may call the same transport's methods; it must not wait on a
thread that is itself closing that transport. Lock order is delivery, transport, reactor.

Reading is active-once, as Erlang's ``{active, once}``: after a `Received` the socket is
not read again until `Transport.resume_reading`, so a slow consumer leaves bytes in the
kernel and TCP pushes back on the peer. The read interest is dropped lazily: it stays
registered until the socket turns readable while paused, so a consumer that resumes
quickly costs no selector calls. With TLS, bytes already decrypted inside the SSL object
are delivered on resume without waiting for the socket.

Writing tries a non-blocking send at once when nothing is parked; what the kernel does
not take is parked, in order, and sent when the socket turns writable.

Transport states (`_Phase`; the allowed moves are the `_PHASE_TRANSITIONS` table)::

    RESOLVING -> CONNECTING -> HANDSHAKING -> OPEN -> FLUSHING -> CLOSED
                 (again per address) (TLS only)  |
                                                 +--> FAILING --> CLOSED

Every state moves to CLOSED on `close()`, on a failure and on the connect timeout.

and the read side (`_Reading`): PAUSED --resume--> ARMED --Received--> PAUSED, and
ARMED --Eof / Broken--> ENDED.

Events: `Connected` (TCP and TLS done), `ConnectFailed` (resolution, refusal, timeout or
TLS failure; the socket is closed), `Received` (one read; reading pauses), `Eof` (the peer
closed its side; reading ends, writing may go on), `Broken` (reset or a failed write; the
socket is closed). A write failure is reported even while reading is paused.

`acquire_reactor` / `release_reactor` share one reactor per process with a reference
count; at zero it stops, so nothing lingers when no connection lives.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import functools
import heapq
import ipaddress
import itertools
import logging
import math
import os
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeAlias, TypeVar, cast

from gluegun_actors import _wakeups

log = logging.getLogger("gluegun_actors.reactor")

DEFAULT_READ_SIZE: Final = 65536
"""Bytes asked of the kernel per read, while reads do not come back full."""
MAX_READ_SIZE: Final = 1 << 20
"""A transport whose reads come back full doubles its read size up to this (the largest
`Received.data`); a short read sets it back to the reactor's `read_size`."""

DEFAULT_RESOLVER_THREADS: Final = 4
"""Threads that may run `getaddrinfo` at once (created on demand, gone after `stop`)."""

TLS_WRITE_CHUNK: Final = 256 * 1024
"""Largest slice handed to one `SSLSocket.send`; a retry after WANT_WRITE repeats it exactly."""

STOP_LINGER_SHARE: Final = 0.5
"""Share of `stop(timeout)` granted to transports still flushing in `close_after_flush`."""

WAKEUP_BATCH: Final = 64
"""Ready sockets handled between two releases of the wakeups the reactor holds back
(see `_wakeups`): it releases them before it blocks, and at least this often."""

TIMER_COMPACT_MIN: Final = 1024
"""Cancelled timers are swept from the heap once there are this many and they are half of it."""

_READ: Final = selectors.EVENT_READ
_WRITE: Final = selectors.EVENT_WRITE
_CONNECT_PENDING: Final = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY})

_transport_ids = itertools.count(1)

Address: TypeAlias = tuple[Any, ...]
"""A socket address as `getaddrinfo` gives it: (host, port) or (host, port, flow, scope)."""

_AddrInfo: TypeAlias = tuple[socket.AddressFamily, socket.SocketKind, int, Address]


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """The TCP connection (and the TLS handshake, if any) is done."""

    transport: Transport


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """No connection: resolution failed, every address refused, timeout or TLS failure.

    The socket is already closed; nothing more comes from this transport.
    """

    transport: Transport
    error: BaseException


@dataclass(frozen=True, slots=True, repr=False)
class Received:
    """One read's worth of bytes. Reading is paused until `resume_reading()`."""

    transport: Transport
    data: bytes

    def __repr__(self) -> str:
        return f"Received({self.transport!r}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class Eof:
    """The peer closed its side. Reading has ended; writing may go on until `close()`."""

    transport: Transport


@dataclass(frozen=True, slots=True)
class Broken:
    """The connection was reset or a write failed. The socket is already closed."""

    transport: Transport
    error: OSError


TransportEvent: TypeAlias = Connected | ConnectFailed | Received | Eof | Broken
TransportCallback: TypeAlias = Callable[[TransportEvent], None]


# -- states ---------------------------------------------------------------------------------


class _Phase(enum.Enum):
    """Where a transport is in its life (see the module docstring)."""

    RESOLVING = "resolving"
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    OPEN = "open"
    FLUSHING = "flushing"  # close_after_flush: sending what is parked, then closing
    FAILING = "failing"  # a write failed off the reactor thread; Broken is on its way
    CLOSED = "closed"


_PHASE_TRANSITIONS: Final[dict[_Phase, frozenset[_Phase]]] = {
    _Phase.RESOLVING: frozenset({_Phase.CONNECTING, _Phase.CLOSED}),
    _Phase.CONNECTING: frozenset(
        {_Phase.CONNECTING, _Phase.HANDSHAKING, _Phase.OPEN, _Phase.CLOSED}
    ),
    _Phase.HANDSHAKING: frozenset({_Phase.OPEN, _Phase.CLOSED}),
    _Phase.OPEN: frozenset({_Phase.FLUSHING, _Phase.FAILING, _Phase.CLOSED}),
    _Phase.FLUSHING: frozenset({_Phase.CLOSED}),
    _Phase.FAILING: frozenset({_Phase.CLOSED}),
    _Phase.CLOSED: frozenset(),
}

_CONNECTING_PHASES: Final = frozenset({_Phase.RESOLVING, _Phase.CONNECTING, _Phase.HANDSHAKING})


class _Reading(enum.Enum):
    """The read side, active-once."""

    PAUSED = "paused"  # a Received was delivered (or nothing asked yet): do not read
    ARMED = "armed"  # resume_reading() was called: read once when data comes
    ENDED = "ended"  # Eof, Broken or closed: never read again


class _Life(enum.Enum):
    """The reactor's own life."""

    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class _TimerState(enum.Enum):
    PENDING = "pending"  # in the heap
    DUE = "due"  # taken from the heap, about to run
    FIRED = "fired"
    CANCELLED = "cancelled"


# -- timers ---------------------------------------------------------------------------------


class TimerHandle:
    """A scheduled callback. `cancel()` is O(1): the heap entry is skipped when reached."""

    __slots__ = ("_callback", "_internal", "_reactor", "_state", "when")

    def __init__(
        self, reactor: Reactor, callback: Callable[[], None], when: float, internal: bool
    ) -> None:
        self._reactor = reactor
        self._callback = callback
        self._internal = internal
        self._state = _TimerState.PENDING
        self.when = when
        """The `time.monotonic()` deadline."""

    def cancel(self) -> None:
        """Make sure the callback does not run (a no-op once it ran). Thread-safe."""
        self._reactor._cancel_timer(self)

    @property
    def cancelled(self) -> bool:
        return self._state is _TimerState.CANCELLED

    def __repr__(self) -> str:
        return f"<TimerHandle {self._state.value} at {self.when:.3f}>"


def _noop() -> None:
    pass


# -- transports -----------------------------------------------------------------------------


_Method = TypeVar("_Method", bound=Callable[..., None])


def _delivers_after(method: _Method) -> _Method:
    """A reactor-thread entry point of `Transport`: runs under the transport lock, then
    delivers the events it found with the lock released."""

    @functools.wraps(method)
    def entry(self: Transport, *args: Any) -> None:
        try:
            with self._lock:
                method(self, *args)
        finally:
            if self._pending:
                self._deliver_pending()

    return cast(_Method, entry)


class Transport:
    """One client socket owned by the reactor. Its public methods are thread-safe.

    Made by `Reactor.connect`; reports through the callback given there.
    """

    __slots__ = (
        "_address",
        "_addresses",
        "_callback",
        "_deadline",
        "_delivering",
        "_failure",
        "_fd",
        "_id",
        "_last_error",
        "_lock",
        "_muted",
        "_out",
        "_out_bytes",
        "_peername",
        "_pending",
        "_phase",
        "_reactor",
        "_read_size",
        "_reading",
        "_registered",
        "_server_hostname",
        "_sock",
        "_sockname",
        "_ssl_context",
        "_sync_posted",
        "_timeout",
        "_tls_want",
        "host",
        "port",
    )

    def __init__(
        self,
        reactor: Reactor,
        host: str,
        port: int,
        callback: TransportCallback,
        timeout: float | None,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> None:
        self._reactor = reactor
        self._id = next(_transport_ids)
        self.host = host
        self.port = port
        self._callback = callback
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname
        self._lock = threading.RLock()
        self._delivering = threading.RLock()
        self._pending: deque[TransportEvent] = deque()  # found under _lock, not yet delivered
        self._muted = False  # closed by its user: nothing more is delivered
        self._phase = _Phase.RESOLVING
        self._reading = _Reading.PAUSED
        self._read_size = reactor.read_size
        self._sock: socket.socket | None = None
        self._fd = -1
        self._registered = 0  # selector events registered for _fd; 0 = not registered
        self._tls_want = _READ  # what the TLS handshake waits for
        self._addresses: deque[_AddrInfo] = deque()
        self._address: Address | None = None  # the one being connected to
        self._last_error: BaseException | None = None
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0
        self._failure: OSError | None = None  # the write error, in FAILING
        self._sync_posted = False
        self._deadline: TimerHandle | None = None  # connect or flush deadline
        self._peername: Address | None = None
        self._sockname: Address | None = None

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
            if phase in _CONNECTING_PHASES:
                self._park(view)
                return
            if phase is not _Phase.OPEN:
                return
            was_idle = not self._out
            self._park(view)
            if not was_idle:
                return  # the reactor is already waiting to send what is parked
            error = self._flush_out()
            if error is not None:
                self._failure = error
                self._set_phase(_Phase.FAILING)
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
            if self._reading is not _Reading.PAUSED:
                return
            self._reading = _Reading.ARMED
            if self._phase is _Phase.OPEN and (not self._registered & _READ or self._tls_pending()):
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
            if self._phase is _Phase.CLOSED:
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
            if self._phase is _Phase.FLUSHING:
                return
            if self._phase is not _Phase.OPEN or not self._out:
                self.close()
                return
            deadline = self._reactor._schedule_internal(timeout, self._on_deadline)
            if deadline is None:  # the reactor has stopped: nothing can be flushed
                self.close()
                return
            self._set_phase(_Phase.FLUSHING)
            self._reading = _Reading.ENDED
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
        return self._phase in (_Phase.CLOSED, _Phase.FLUSHING)

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

    # -- connecting (reactor thread unless said otherwise) ---------------------------------

    def _resolve(self) -> None:
        """Resolver thread: look the host up and hand the addresses to the reactor."""
        if self._phase is not _Phase.RESOLVING:
            return
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except Exception as error:
            self._reactor._post(partial(self._resolve_failed, error))
            return
        self._reactor._post(partial(self._begin, _addresses_of(infos)))

    @_delivers_after
    def _resolve_failed(self, error: BaseException) -> None:
        if self._phase is _Phase.RESOLVING:
            self._fail(error)

    @_delivers_after
    def _begin(self, addresses: list[_AddrInfo]) -> None:
        if self._phase is not _Phase.RESOLVING:
            return
        self._addresses.extend(addresses)
        self._try_next_address()

    def _try_next_address(self) -> None:
        """Start a non-blocking connect to the next address; fail when none is left."""
        while self._addresses:
            family, kind, proto, address = self._addresses.popleft()
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as error:
                self._last_error = error
                continue
            self._sock = sock
            self._fd = sock.fileno()
            self._address = address
            self._set_phase(_Phase.CONNECTING)
            try:
                sock.setblocking(False)
                if self._reactor._tcp_nodelay and family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                code = sock.connect_ex(address)
            except Exception as error:  # a bad address raises TypeError/OverflowError too
                self._drop_socket()
                self._last_error = error
                continue
            if code == 0:
                self._tcp_connected()
                return
            if code in _CONNECT_PENDING:
                self._apply_interest(lazy=True)
                return
            self._drop_socket()
            self._last_error = OSError(code, os.strerror(code))
        self._fail(self._last_error or OSError(f"no address found for {self.host}:{self.port}"))

    def _finish_connect(self) -> None:
        assert self._sock is not None
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            self._tcp_connected()
            return
        self._drop_socket()
        self._last_error = OSError(code, os.strerror(code))
        self._try_next_address()

    def _tcp_connected(self) -> None:
        if self._ssl_context is None:
            self._on_open()
            return
        raw = self._sock
        assert raw is not None
        # Wrapping moves the descriptor into a new object that closes it on failure:
        # take it out of the selector first.
        self._unregister()
        try:
            self._sock = self._ssl_context.wrap_socket(
                raw,
                server_hostname=self._server_hostname or self.host,
                do_handshake_on_connect=False,
            )
        except Exception as error:
            raw.close()
            self._sock = None
            self._fd = -1
            self._fail(error)
            return
        self._set_phase(_Phase.HANDSHAKING)
        self._handshake()

    def _handshake(self) -> None:
        sock = self._sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._tls_want = _READ
            self._apply_interest(lazy=True)
            return
        except ssl.SSLWantWriteError:
            self._tls_want = _WRITE
            self._apply_interest(lazy=True)
            return
        except Exception as error:
            self._fail(error)
            return
        self._on_open()

    def _on_open(self) -> None:
        sock = self._sock
        assert sock is not None
        self._set_phase(_Phase.OPEN)
        self._cancel_deadline()
        self._peername = self._address
        self._deliver(Connected(self))
        if self._out:
            error = self._flush_out()
            if error is not None:
                self._break(error)
                return
        if self._reading is _Reading.ARMED and self._tls_pending():
            self._request_sync()
        # The read interest goes in now, as if left from a read (dropped if the socket turns
        # readable before the first `resume_reading`, which then needs no selector call).
        self._apply_interest(lazy=True, read_ahead=True)

    @_delivers_after
    def _on_deadline(self) -> None:
        """Timer: the connect attempt or the flush took too long."""
        self._deadline = None
        phase = self._phase
        if phase in _CONNECTING_PHASES:
            step = {
                _Phase.RESOLVING: "resolving the name",
                _Phase.CONNECTING: "connecting",
                _Phase.HANDSHAKING: "in the TLS handshake",
            }[phase]
            self._fail(
                TimeoutError(
                    f"connecting to {self.host}:{self.port} took longer than "
                    f"{self._timeout:g} s (gave up while {step})"
                )
            )
        elif phase is _Phase.FLUSHING:
            log.debug("%r: parked writes not sent in time; closing", self)
            self._finish(None)

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
            and self._phase is _Phase.OPEN
            and self._reading is _Reading.ARMED
        ):
            sock = self._sock
            assert sock is not None
            size = self._read_size
            try:
                data = sock.recv(size)
            except BlockingIOError:
                return
            except OSError as error:
                self._after_unlocked_read(size, b"", error)
                return
            if not data:
                self._after_unlocked_read(size, data, None)
                return
            with self._delivering:
                if (
                    not self._muted
                    and self._phase is _Phase.OPEN
                    and self._reading is _Reading.ARMED
                ):
                    self._took(size, data)
                    self._deliver_pending()
            return
        self._on_ready_locked(mask)

    @_delivers_after
    def _after_unlocked_read(self, size: int, data: bytes, error: OSError | None) -> None:
        if self._phase is not _Phase.OPEN or self._reading is not _Reading.ARMED:
            return  # closed meanwhile: what was read is dropped with the connection
        if error is not None:
            self._break(error)
            return
        self._took(size, data)
        self._apply_interest(lazy=True)

    @_delivers_after
    def _on_ready_locked(self, mask: int) -> None:
        match self._phase:
            case _Phase.CONNECTING:
                self._finish_connect()
            case _Phase.HANDSHAKING:
                self._handshake()
            case _Phase.OPEN:
                self._serve(mask)
            case _Phase.FLUSHING | _Phase.FAILING | _Phase.CLOSED:
                self._wind_down()
            case _Phase.RESOLVING:
                pass

    def _serve(self, mask: int) -> None:
        lazy = True
        if mask & _WRITE and self._out:
            error = self._flush_out()
            if error is not None:
                self._break(error)
                return
        if mask & _READ:
            if self._reading is _Reading.ARMED:
                self._read()
            else:
                lazy = False  # readable while paused: now drop the read interest
        self._apply_interest(lazy=lazy)

    @_delivers_after
    def _sync(self) -> None:
        """Command: bring the selector in line with what other threads asked for."""
        self._sync_posted = False
        match self._phase:
            case _Phase.OPEN:
                if self._reading is _Reading.ARMED and self._tls_pending():
                    self._read()
                self._apply_interest(lazy=True)
            case _Phase.FLUSHING | _Phase.FAILING | _Phase.CLOSED:
                self._wind_down()
            case _Phase.RESOLVING | _Phase.CONNECTING | _Phase.HANDSHAKING:
                pass

    def _wind_down(self) -> None:
        """FLUSHING, FAILING or CLOSED, on readiness or a command: flush what is parked,
        report the write failure, or let the socket go."""
        match self._phase:
            case _Phase.FLUSHING:
                self._drain()
            case _Phase.FAILING:
                assert self._failure is not None
                self._break(self._failure)
            case _Phase.CLOSED:
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
            self._reading = _Reading.PAUSED
            self._deliver(Received(self, data))
        else:
            self._reading = _Reading.ENDED
            self._deliver(Eof(self))

    def _drain(self) -> None:
        """FLUSHING: send what is parked; close when all is sent or sending failed."""
        error = self._flush_out()
        if error is not None or not self._out:
            self._finish(None)
            return
        self._apply_interest(lazy=True)

    @_delivers_after
    def _on_internal_error(self, error: BaseException) -> None:
        """The reactor's own handling failed: end this transport, keep the others."""
        if self._phase in _CONNECTING_PHASES:
            self._fail(error)
        elif self._phase is not _Phase.CLOSED:
            self._break(OSError(f"reactor error on this transport: {error!r}"))

    def _force_close(self) -> None:
        """Reactor shutdown: close without callbacks."""
        with self._lock:
            self._mute()
            if self._phase is not _Phase.CLOSED:
                self._become_closed()
            self._drop_socket()

    # -- helpers (lock held) ---------------------------------------------------------------

    def _set_phase(self, phase: _Phase) -> None:
        if phase not in _PHASE_TRANSITIONS[self._phase]:
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
        """Register the events the current state waits for (reactor thread only).

        With `lazy`, a read interest left over from before a pause is kept; `read_ahead`
        registers one while paused, on the same terms.
        """
        if self._sock is None:
            return
        match self._phase:
            case _Phase.CONNECTING:
                desired = _WRITE
            case _Phase.HANDSHAKING:
                desired = self._tls_want
            case _Phase.OPEN:
                desired = _WRITE if self._out else 0
                if self._reading is _Reading.ARMED:
                    desired |= _READ
                elif self._reading is _Reading.PAUSED and lazy:
                    desired |= _READ if read_ahead else self._registered & _READ
            case _Phase.FLUSHING:
                desired = _WRITE if self._out else 0
            case _Phase.RESOLVING | _Phase.FAILING | _Phase.CLOSED:
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
        """Unregister and close the socket (reactor thread, or any thread if unregistered)."""
        sock = self._sock
        if sock is None:
            return
        self._unregister()
        self._sock = None
        self._fd = -1
        with contextlib.suppress(OSError):
            sock.close()

    def _release(self) -> None:
        self._drop_socket()
        self._reactor._forget(self)

    def _become_closed(self) -> None:
        self._set_phase(_Phase.CLOSED)
        self._reading = _Reading.ENDED
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


def _addresses_of(infos: list[tuple[Any, ...]]) -> list[_AddrInfo]:
    return [(family, kind, proto, address) for family, kind, proto, _, address in infos]


# -- the reactor ----------------------------------------------------------------------------


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
        self._lock = threading.Lock()
        self._life = _Life.NEW
        self._thread: threading.Thread | None = None
        self._ident: int | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._wake_lock = threading.Lock()  # orders `_send_wake` and closing the pair
        self._woken = False
        self._commands: deque[Callable[[], None]] = deque()
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._timer_seq = itertools.count()
        self._cancelled_in_heap = 0
        self._transports: dict[Transport, None] = {}
        self._lingering: set[Transport] = set()
        self._resolver: ThreadPoolExecutor | None = None
        self._stop_deadline = math.inf
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
                self._clear_heap()
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
        timeout: float | None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Transport:
        """Start connecting to `host:port` and return the transport at once.

        Names are resolved on a small resolver pool (IP literals are not); each address
        is tried in turn with a non-blocking connect; with `ssl_context` the TLS
        handshake follows, also non-blocking. The whole attempt is bounded by `timeout`
        seconds (None: no bound). The outcome is `Connected` or `ConnectFailed`.
        """
        transport = Transport(self, host, port, callback, timeout, ssl_context, server_hostname)
        if timeout is not None:
            transport._deadline = self._schedule(timeout, transport._on_deadline, internal=False)
        numeric = _numeric_addresses(host, port)
        wake = False
        with self._lock:
            if self._life not in (_Life.NEW, _Life.RUNNING):
                refused = True
            else:
                refused = False
                self._transports[transport] = None
                if numeric is not None:
                    self._commands.append(partial(transport._begin, numeric))
                    wake = not self._on_reactor_thread() and self._claim_wake_locked()
                else:
                    self._resolver_pool().submit(transport._resolve)
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
            return len(self._heap) - self._cancelled_in_heap

    def __repr__(self) -> str:
        return (
            f"<Reactor {self.name} {self._life.value} transports={len(self._transports)}"
            f" timers={len(self._heap) - self._cancelled_in_heap}>"
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
            _wakeups.stop_holding()
            self._shutdown(crashed)

    def _loop(self) -> None:
        selector = self._selector
        assert selector is not None
        _wakeups.hold_on_this_thread()
        while True:
            timeout = self._poll_timeout()
            _wakeups.release_held()
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
                    _wakeups.release_held()
            _wakeups.release_held()  # the sockets' work is done; commands and timers are short
            self._run_commands()
            self._run_timers()
            if self._life is _Life.STOPPING and self._stop_done():
                return

    def _poll_timeout(self) -> float | None:
        with self._lock:
            if self._commands:
                return 0.0
            heap = self._heap
            while heap and heap[0][2]._state is not _TimerState.PENDING:
                heapq.heappop(heap)
                self._cancelled_in_heap -= 1
            deadline = heap[0][0] if heap else math.inf
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
        now = time.monotonic()
        due: list[TimerHandle] = []
        with self._lock:
            heap = self._heap
            while heap and heap[0][0] <= now:
                handle = heapq.heappop(heap)[2]
                if handle._state is _TimerState.CANCELLED:
                    self._cancelled_in_heap -= 1
                    continue
                handle._state = _TimerState.DUE
                due.append(handle)
        for handle in due:
            with self._lock:
                if handle._state is not _TimerState.DUE:
                    continue  # cancelled since it was taken from the heap
                handle._state = _TimerState.FIRED
                callback, handle._callback = handle._callback, _noop
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
            self._cancelled_in_heap = 0
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
            self._clear_heap()
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
            heapq.heappush(self._heap, (handle.when, next(self._timer_seq), handle))
            wake = (
                self._heap[0][2] is handle
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
            state = handle._state
            if state is not _TimerState.PENDING and state is not _TimerState.DUE:
                return
            handle._state = _TimerState.CANCELLED
            handle._callback = _noop
            if state is _TimerState.PENDING:  # still in the heap: swept lazily
                self._cancelled_in_heap += 1
                if (
                    self._cancelled_in_heap >= TIMER_COMPACT_MIN
                    and self._cancelled_in_heap * 2 >= len(self._heap)
                ):
                    self._compact_heap()

    def _compact_heap(self) -> None:
        """Drop cancelled entries (reactor lock held); amortised O(1) per cancel."""
        self._heap = [e for e in self._heap if e[2]._state is _TimerState.PENDING]
        heapq.heapify(self._heap)
        self._cancelled_in_heap = 0

    def _clear_heap(self) -> None:
        for entry in self._heap:
            if entry[2]._state is _TimerState.PENDING:
                entry[2]._state = _TimerState.CANCELLED
        self._heap.clear()
        self._cancelled_in_heap = 0

    def _forget(self, transport: Transport) -> None:
        with self._lock:
            self._transports.pop(transport, None)
            self._lingering.discard(transport)

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


def _numeric_addresses(host: str, port: int) -> list[_AddrInfo] | None:
    """The addresses of an IP literal, without a lookup; None for a name to resolve.

    Plain IPv4 and IPv6 literals are parsed here: `getaddrinfo` releases the GIL, and with
    thousands of connects in flight every release hands it to another thread. Other forms
    (a scope id, "127.1") go through `getaddrinfo` with `AI_NUMERICHOST`.
    """
    if not 0 <= port <= 65535:
        return None
    if "%" not in host:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            literal = socket.inet_ntop(family, ip.packed)  # the form getaddrinfo gives
            address: Address = (literal, port) if ip.version == 4 else (literal, port, 0, 0)
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, address)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, TypeError, ValueError, OverflowError):
        return None
    return _addresses_of(infos)


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


__all__ = [
    "DEFAULT_READ_SIZE",
    "DEFAULT_RESOLVER_THREADS",
    "MAX_READ_SIZE",
    "Broken",
    "ConnectFailed",
    "Connected",
    "Eof",
    "Reactor",
    "Received",
    "TimerHandle",
    "Transport",
    "TransportCallback",
    "TransportEvent",
    "acquire_reactor",
    "release_reactor",
]

"""The threaded TCP server under both test servers.

Theory of operation: one acceptor thread waits on the listening socket, and each
accepted client gets its own thread that runs the subclass's `_serve_client`. Every
blocking call a client thread makes (read, write, sleep) goes through a `_Channel`,
which waits on two things at once: its socket and the server's *stop signal*, a socket
pair that becomes readable (and stays readable) when `stop()` or `kill()` is called.
So no thread ever needs polling to notice the end, and only the thread that owns a
socket closes it: gracefully (FIN) after `stop()`, or with a reset (SO_LINGER 0, RST)
after `kill()`.

Each `start()` opens a new `_Generation` (listener, stop signal, threads); `stop()`
and `kill()` end it and join every one of its threads. `restart()` opens a new
generation on the port the previous one had, with SO_REUSEADDR.

Durations given to Python calls are seconds (as in `threading`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self

logger: Final = logging.getLogger("gluegun_actors.testing")

RECV_SIZE: Final = 65536
"""Bytes asked for by one `recv`."""

DEFAULT_MAX_CONNECTIONS: Final = 256
"""Clients served at once; later ones are closed at once (one thread each)."""

JOIN_TIMEOUT: Final = 10.0
"""Longest wait for one thread in `stop()`; a thread still alive then is logged."""

_LOOPBACK: Final = "127.0.0.1"


class _Stop(Exception):
    """The server is stopping: the client thread must end now."""


class Ending(enum.Enum):
    """How a generation ends: what its client threads do with their sockets."""

    GRACEFUL = "graceful"  # stop(): close with FIN
    ABORT = "abort"  # kill(): reset with RST


class ServerState(enum.Enum):
    """The life of a test server."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"
    KILLED = "killed"


_STOP_TRANSITIONS: Final[dict[ServerState, ServerState]] = {
    ServerState.NEW: ServerState.NEW,
    ServerState.RUNNING: ServerState.STOPPED,
    ServerState.STOPPED: ServerState.STOPPED,
    ServerState.KILLED: ServerState.STOPPED,
}
_KILL_TRANSITIONS: Final[dict[ServerState, ServerState]] = {
    ServerState.NEW: ServerState.NEW,
    ServerState.RUNNING: ServerState.KILLED,
    ServerState.STOPPED: ServerState.STOPPED,
    ServerState.KILLED: ServerState.KILLED,
}


class _Generation:
    """One listening period: its listener, stop signal and threads."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.ending: Ending | None = None
        self.ended = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self.acceptor: threading.Thread | None = None
        self.clients: set[threading.Thread] = set()
        self.refusing = False
        """The listener is shut down: no more accepts."""

    @property
    def wake_fd(self) -> socket.socket:
        """Readable once the generation ends; never drained, so it stays readable."""
        return self._wake_reader

    def signal(self, ending: Ending) -> None:
        if self.ending is not None:
            return
        self.ending = ending
        self.ended.set()
        try:
            self._wake_writer.send(b"x")
        except OSError:  # pragma: no cover - a socketpair with room cannot fail here
            logger.exception("could not wake the server threads")

    def close_signal(self) -> None:
        self._wake_reader.close()
        self._wake_writer.close()


class _Channel:
    """A client socket whose every wait also ends when the server stops."""

    def __init__(self, sock: socket.socket, generation: _Generation) -> None:
        self.sock = sock
        self._generation = generation
        self._selector = selectors.DefaultSelector()
        self._selector.register(generation.wake_fd, selectors.EVENT_READ)
        self._selector.register(sock, selectors.EVENT_READ)
        self._interest = selectors.EVENT_READ
        self.closed = False

    @property
    def ending(self) -> Ending | None:
        return self._generation.ending

    def _check(self) -> None:
        if self._generation.ending is not None:
            raise _Stop

    def _wait(self, interest: int, deadline: float | None) -> None:
        """Wait until the socket is ready for `interest`, the server stops, or the deadline."""
        if interest != self._interest:
            self._selector.modify(self.sock, interest)
            self._interest = interest
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("timed out")
        ready = self._selector.select(remaining)
        self._check()
        if not ready:
            raise TimeoutError("timed out")

    def recv(self, timeout: float | None) -> bytes:
        """Bytes from the peer (b"" at end of stream); `TimeoutError` after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check()
            try:
                return self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                self._wait(selectors.EVENT_READ, deadline)

    def send(self, data: bytes, timeout: float | None) -> None:
        """Write all of `data`; `TimeoutError` if the peer does not read for `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        while view:
            self._check()
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                self._wait(selectors.EVENT_WRITE, deadline)
            else:
                view = view[sent:]

    def try_send(self, data: bytes) -> None:
        """Write what the socket takes now, ignoring errors (last words before closing)."""
        with contextlib.suppress(OSError):
            self.sock.send(data)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake with `_Stop` when the server stops."""
        if self._generation.ended.wait(max(0.0, seconds)):
            raise _Stop

    def close_gracefully(
        self, linger: float, on_data: Callable[[bytes], None] | None = None
    ) -> None:
        """Send FIN, read until the peer's FIN (at most `linger` s), then close.

        Closing a socket with unread bytes makes the kernel send RST instead of FIN;
        reading them first keeps the close a clean FIN as seen by the peer.
        """
        if self.closed:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + linger
            while True:
                data = self.recv(max(0.0, deadline - time.monotonic()))
                if not data:
                    break
                if on_data is not None:
                    on_data(data)
        except (OSError, _Stop):
            pass
        self.close()

    def close(self) -> None:
        """Close now (FIN, or RST if unread bytes remain)."""
        if self.closed:
            return
        self.closed = True
        self._selector.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def reset(self) -> None:
        """Close with RST (SO_LINGER on, 0 s)."""
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()


class ThreadedTcpServer:
    """A TCP server on 127.0.0.1 with one thread per client; see the module docstring."""

    _kind: str = "server"

    def __init__(
        self,
        host: str = _LOOPBACK,
        port: int = 0,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._host = host
        self._configured_port = port
        self._bound_port: int | None = None
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = ServerState.NEW
        self._generation: _Generation | None = None
        self._accepted = 0
        self._live = 0

    # -- public surface ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the same across `restart()`)."""
        if self._bound_port is None:
            raise RuntimeError("the server has not been started")
        return self._bound_port

    @property
    def thread_name_prefix(self) -> str:
        """Every thread of this server (on its port) has a name that starts with this."""
        return f"gluegun-testing-{self._kind}-{self.port}-"

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def connections_accepted(self) -> int:
        """Connections accepted since construction (across restarts)."""
        with self._lock:
            return self._accepted

    @property
    def live_connections(self) -> int:
        """Client connections open right now."""
        with self._lock:
            return self._live

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until `n` connections have been accepted in all; False after `timeout` s."""
        with self._changed:
            return self._changed.wait_for(lambda: self._accepted >= n, timeout)

    def wait_live_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until exactly `n` connections are open; False after `timeout` s."""
        with self._changed:
            return self._changed.wait_for(lambda: self._live == n, timeout)

    def start(self) -> Self:
        """Listen (on the configured port, 0 for any) and start accepting."""
        self._listen(self._configured_port)
        return self

    def restart(self) -> Self:
        """Listen again on the same port as before (for reconnect tests)."""
        if self._bound_port is None:
            raise RuntimeError("restart() needs a server that was started before")
        self.stop()
        self._listen(self._bound_port)
        return self

    def stop(self) -> None:
        """Close the listener and every client (FIN); join every thread."""
        self._end(Ending.GRACEFUL, _STOP_TRANSITIONS)

    def kill(self) -> None:
        """Reset every client (RST) and stop listening; join every thread."""
        self._end(Ending.ABORT, _KILL_TRANSITIONS)

    def __enter__(self) -> Self:
        if self._state is not ServerState.RUNNING:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- for subclasses ---------------------------------------------------------------

    def _serve_client(self, channel: _Channel, index: int) -> None:
        """Serve one client; `index` counts accepted connections from 0."""
        raise NotImplementedError

    def _end_client(self, channel: _Channel) -> None:
        """Close a client socket when its thread ends, as the generation's ending says."""
        if channel.ending is Ending.ABORT:
            channel.reset()
        else:
            channel.close()

    # -- machinery --------------------------------------------------------------------

    def _listen(self, port: int) -> None:
        with self._lock:
            if self._state is ServerState.RUNNING:
                raise RuntimeError("the server is already running")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        generation = _Generation(listener)
        self._bound_port = listener.getsockname()[1]
        acceptor = threading.Thread(
            target=self._accept_loop,
            args=(generation,),
            name=f"{self.thread_name_prefix}acceptor",
            daemon=True,
        )
        generation.acceptor = acceptor
        with self._lock:
            self._generation = generation
            self._state = ServerState.RUNNING
        acceptor.start()
        logger.debug("%s listening on %s:%d", self._kind, self._host, self._bound_port)

    def _end(self, ending: Ending, transitions: dict[ServerState, ServerState]) -> None:
        with self._lock:
            generation = self._generation
            self._generation = None
            self._state = transitions[self._state]
        if generation is None:
            return
        # Stop accepting before the clients are closed, as a server does: a client that
        # reconnects at once is refused, not left in the backlog of a closing listener.
        generation.refusing = True
        with contextlib.suppress(OSError):
            generation.listener.shutdown(socket.SHUT_RDWR)
        generation.signal(ending)
        if generation.acceptor is not None:
            generation.acceptor.join(JOIN_TIMEOUT)
        while True:
            with self._lock:
                clients = list(generation.clients)
            if not clients:
                break
            for thread in clients:
                thread.join(JOIN_TIMEOUT)
                if thread.is_alive():  # pragma: no cover - every wait is stop-aware
                    logger.error("thread %s did not stop", thread.name)
                    with self._lock:
                        generation.clients.discard(thread)
        generation.close_signal()
        logger.debug("%s on port %s ended (%s)", self._kind, self._bound_port, ending.value)

    def _accept_loop(self, generation: _Generation) -> None:
        selector = selectors.DefaultSelector()
        selector.register(generation.listener, selectors.EVENT_READ)
        selector.register(generation.wake_fd, selectors.EVENT_READ)
        try:
            while generation.ending is None:
                selector.select()
                if generation.ending is not None:
                    break
                try:
                    sock, _address = generation.listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue  # nothing to accept, or the client gave up before accept
                except OSError as exc:  # e.g. out of file descriptors: back off briefly
                    if generation.refusing:
                        break  # the listener was shut down: the server is ending
                    logger.warning("accept failed: %s", exc)
                    generation.ended.wait(0.05)
                    continue
                self._admit(generation, sock)
        finally:
            selector.close()
            generation.listener.close()

    def _admit(self, generation: _Generation, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._changed:
            index = self._accepted
            self._accepted += 1
            self._changed.notify_all()
            if self._live >= self._max_connections:
                logger.warning("too many connections (%d): closing a new one", self._live)
                sock.close()
                return
            self._live += 1
            thread = threading.Thread(
                target=self._client_main,
                args=(generation, sock, index),
                name=f"{self.thread_name_prefix}client-{index}",
                daemon=True,
            )
            generation.clients.add(thread)
        thread.start()

    def _client_main(self, generation: _Generation, sock: socket.socket, index: int) -> None:
        channel: _Channel | None = None
        try:
            channel = _Channel(sock, generation)
            self._serve_client(channel, index)
        except _Stop:
            pass
        except (OSError, TimeoutError) as exc:
            logger.debug("connection %d ended: %r", index, exc)
        except Exception:
            logger.exception("connection %d failed", index)
        finally:
            if channel is None:
                sock.close()
            else:
                self._end_client(channel)
            with self._changed:
                self._live -= 1
                generation.clients.discard(threading.current_thread())
                self._changed.notify_all()

"""The reactor, over real sockets on 127.0.0.1: connecting, active-once reading, parked
writes, closing, timers, and the shared reactor's lifecycle."""

from __future__ import annotations

import hashlib
import os
import queue
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import open_fds, wait_until

from gluegun_actors import _io as rx
from gluegun_actors._io.addresses import addresses_of, numeric_addresses

WAIT = 5.0
"""Upper bound for anything that should happen soon; reached only when a test fails."""

QUIET = 0.1
"""How long a test watches for an event that must not come."""

LOOPBACK = "127.0.0.1"
FAKE_HOST = "gluegun.test"


# -- helpers --------------------------------------------------------------------------------


class Recorder:
    """A transport callback that queues events; with `auto_resume`, it re-arms reading."""

    def __init__(self, *, auto_resume: bool = False) -> None:
        self.events: queue.Queue[rx.TransportEvent] = queue.Queue()
        self.auto_resume = auto_resume
        self.threads: set[str] = set()

    def __call__(self, event: rx.TransportEvent) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.put(event)
        if self.auto_resume and isinstance(event, rx.Connected | rx.Received):
            event.transport.resume_reading()

    def next(self, timeout: float = WAIT) -> rx.TransportEvent:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no transport event within {timeout} s") from None

    def expect(self, kind: type[Any], timeout: float = WAIT) -> Any:
        event = self.next(timeout)
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event

    def assert_quiet(self, duration: float = QUIET) -> None:
        with pytest.raises(queue.Empty):
            event = self.events.get(timeout=duration)
            raise AssertionError(f"unexpected {event!r}")

    def collect(self, size: int, timeout: float = WAIT) -> bytes:
        """Bytes of `Received` events until `size` arrived (needs auto_resume)."""
        chunks: list[bytes] = []
        total = 0
        deadline = time.monotonic() + timeout
        while total < size:
            event = self.expect(rx.Received, max(0.0, deadline - time.monotonic()))
            chunks.append(event.data)
            total += len(event.data)
        return b"".join(chunks)


def gluegun_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gluegun")]


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < size:
        chunk = sock.recv(min(1 << 20, size - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def recv_to_eof(sock: socket.socket, limit: int = 1 << 26) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def pattern(size: int) -> bytes:
    """Random bytes: any loss, duplication or reordering shows when compared."""
    return os.urandom(size)


def fake_resolver(monkeypatch: pytest.MonkeyPatch, answer: Callable[[int], list[Any]]) -> list[str]:
    """Make FAKE_HOST resolve to `answer(port)`; returns the names of the calling threads."""
    real = socket.getaddrinfo
    callers: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != FAKE_HOST:
            return real(host, port, *args, **kwargs)
        if kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "not a numeric host")
        callers.append(threading.current_thread().name)
        return answer(port)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return callers


def loopback_info(port: int) -> list[Any]:
    return socket.getaddrinfo(LOOPBACK, port, type=socket.SOCK_STREAM)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def reactor() -> Iterator[rx.Reactor]:
    r = rx.Reactor(name="gluegun-test-reactor")
    r.start()
    yield r
    r.stop()
    assert r.thread is not None and not r.thread.is_alive()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server((LOOPBACK, 0), backlog=256)
    sock.settimeout(WAIT)
    yield sock
    sock.close()


@pytest.fixture
def peers() -> Iterator[list[socket.socket]]:
    """Server-side sockets a test accepted; closed afterwards."""
    accepted: list[socket.socket] = []
    yield accepted
    for sock in accepted:
        sock.close()


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port whose accept queue is full, so a new connect gets no answer at all."""
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen(0)
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(server.getsockname())
            fillers.append(filler)
            if not wait_until(lambda f=filler: _connected(f), 0.05):  # type: ignore[misc]
                break
        else:
            pytest.skip("could not fill a listen backlog on this system")
        yield int(server.getsockname()[1])
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def open_transport(
    reactor: rx.Reactor,
    listener: socket.socket,
    peers: list[socket.socket],
    recorder: Recorder,
) -> tuple[rx.Transport, socket.socket]:
    transport = reactor.connect(
        LOOPBACK, listener.getsockname()[1], callback=recorder, timeout=WAIT
    )
    recorder.expect(rx.Connected)
    peer, _ = listener.accept()
    peer.settimeout(WAIT)
    peers.append(peer)
    return transport, peer


# -- connecting -----------------------------------------------------------------------------


def test_connect_reports_connected_with_both_addresses(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    assert transport.peername == listener.getsockname()
    assert transport.sockname == peer.getpeername()
    assert reactor.transport_count() == 1
    assert recorder.threads == {reactor.name}


def test_the_local_address_is_asked_for_once_and_kept(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    transport, peer = open_transport(reactor, listener, peers, Recorder())
    assert transport._sockname is None  # not asked at connect: that call releases the GIL
    assert transport.sockname == peer.getpeername()
    transport.close()
    assert transport.sockname == peer.getpeername()  # still known once the socket is gone


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "::1", "::ffff:1.2.3.4", "0:0:0:0:0:0:0:1", "127.1", "fe80::1%1", "10.0.0.255"],
)
def test_ip_literals_are_read_as_getaddrinfo_reads_them(host: str) -> None:
    expected = socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    assert numeric_addresses(host, 80) == addresses_of(expected)


@pytest.mark.parametrize("host", ["localhost", "example.invalid", "1.2.3.4.5", " 127.0.0.1"])
def test_names_are_left_to_the_resolver(host: str) -> None:
    assert numeric_addresses(host, 80) is None


def test_the_first_resume_after_connect_needs_no_reactor_command(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    # The read interest is registered ahead when the connection opens.
    transport, peer = open_transport(reactor, listener, peers, recorder := Recorder())
    assert wait_until(lambda: transport._registered & selectors.EVENT_READ)
    transport.resume_reading()
    assert not transport._sync_posted
    peer.sendall(b"hello")
    assert recorder.expect(rx.Received).data == b"hello"


def test_refused_port_reports_connect_failed_quickly(reactor: rx.Reactor) -> None:
    recorder = Recorder()
    started = time.monotonic()
    transport = reactor.connect(LOOPBACK, unused_port(), callback=recorder, timeout=WAIT)
    event = recorder.expect(rx.ConnectFailed)
    assert isinstance(event.error, ConnectionRefusedError)
    assert event.transport is transport
    assert time.monotonic() - started < 1.0
    assert transport.closed
    assert wait_until(lambda: reactor.transport_count() == 0)


def test_connect_gives_up_after_the_timeout(reactor: rx.Reactor, hanging_port: int) -> None:
    recorder = Recorder()
    started = time.monotonic()
    reactor.connect(LOOPBACK, hanging_port, callback=recorder, timeout=0.15)
    event = recorder.expect(rx.ConnectFailed)
    elapsed = time.monotonic() - started
    assert isinstance(event.error, TimeoutError)
    assert 0.14 <= elapsed < 2.0
    assert wait_until(lambda: reactor.transport_count() == 0 and reactor.timer_count() == 0)


def test_tls_handshake_to_a_silent_server_times_out(
    reactor: rx.Reactor, listener: socket.socket
) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    recorder = Recorder()
    reactor.connect(
        LOOPBACK, listener.getsockname()[1], callback=recorder, timeout=0.15, ssl_context=context
    )
    event = recorder.expect(rx.ConnectFailed)
    assert isinstance(event.error, TimeoutError)
    assert "TLS handshake" in str(event.error)


def test_each_connect_phase_has_its_own_timeout(
    reactor: rx.Reactor, listener: socket.socket
) -> None:
    """A quick TCP connect does not spend the TLS handshake's budget, and the error
    names the phase that ran out."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    recorder = Recorder()
    timeouts = rx.ConnectTimeouts(lookup=None, connect=5.0, tls=0.15)
    started = time.monotonic()
    reactor.connect(
        LOOPBACK,
        listener.getsockname()[1],
        callback=recorder,
        timeout=timeouts,
        ssl_context=context,
    )
    event = recorder.expect(rx.ConnectFailed)
    assert isinstance(event.error, TimeoutError)
    assert "tls_handshake_timeout" in str(event.error)
    assert time.monotonic() - started < 2.0  # the 5 s connect budget played no part
    assert wait_until(lambda: reactor.transport_count() == 0 and reactor.timer_count() == 0)


def test_a_name_lookup_that_hangs_runs_out_of_its_own_timeout(
    reactor: rx.Reactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def hang(port: int) -> list[Any]:
        release.wait(5.0)
        return loopback_info(port)

    fake_resolver(monkeypatch, hang)
    recorder = Recorder()
    try:
        timeouts = rx.ConnectTimeouts(lookup=0.15, connect=5.0, tls=None)
        reactor.connect(FAKE_HOST, unused_port(), callback=recorder, timeout=timeouts)
        event = recorder.expect(rx.ConnectFailed)
        assert isinstance(event.error, TimeoutError)
        assert "domain_lookup_timeout" in str(event.error)
    finally:
        release.set()
    assert wait_until(lambda: reactor.transport_count() == 0)


def test_close_while_connecting_suppresses_every_callback(
    reactor: rx.Reactor, hanging_port: int
) -> None:
    recorder = Recorder()
    transport = reactor.connect(LOOPBACK, hanging_port, callback=recorder, timeout=0.05)
    transport.close()
    recorder.assert_quiet(0.15)  # past the connect timeout: no ConnectFailed either
    assert transport.closed
    assert wait_until(lambda: reactor.transport_count() == 0)


def test_names_are_resolved_on_the_resolver_pool(
    reactor: rx.Reactor,
    listener: socket.socket,
    peers: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    callers = fake_resolver(monkeypatch, loopback_info)
    recorder = Recorder()
    reactor.connect(FAKE_HOST, listener.getsockname()[1], callback=recorder, timeout=WAIT)
    recorder.expect(rx.Connected)
    assert len(callers) == 1
    assert callers[0].startswith(f"{reactor.name}-resolver")


def test_each_address_is_tried_in_turn(
    reactor: rx.Reactor,
    listener: socket.socket,
    peers: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = unused_port()
    fake_resolver(monkeypatch, lambda port: loopback_info(refused) + loopback_info(port))
    recorder = Recorder()
    transport = reactor.connect(
        FAKE_HOST, listener.getsockname()[1], callback=recorder, timeout=WAIT
    )
    recorder.expect(rx.Connected)
    assert transport.peername == listener.getsockname()


def test_resolution_failure_reports_connect_failed(
    reactor: rx.Reactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(port: int) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fake_resolver(monkeypatch, fail)
    recorder = Recorder()
    reactor.connect(FAKE_HOST, 80, callback=recorder, timeout=WAIT)
    event = recorder.expect(rx.ConnectFailed)
    assert isinstance(event.error, socket.gaierror)
    assert wait_until(lambda: reactor.transport_count() == 0)


def test_writes_made_before_connected_are_sent_in_order(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport = reactor.connect(
        LOOPBACK, listener.getsockname()[1], callback=recorder, timeout=WAIT
    )
    transport.write(b"first ")
    transport.write(bytearray(b"second"))
    recorder.expect(rx.Connected)
    peer, _ = listener.accept()
    peers.append(peer)
    peer.settimeout(WAIT)
    assert recv_exactly(peer, 12) == b"first second"


def test_many_connections_share_the_reactor_thread(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    threads_before = set(threading.enumerate())
    recorder = Recorder()
    transports = [
        reactor.connect(LOOPBACK, listener.getsockname()[1], callback=recorder, timeout=WAIT)
        for _ in range(200)
    ]
    for _ in transports:
        recorder.expect(rx.Connected)
    assert reactor.transport_count() == 200
    assert set(threading.enumerate()) <= threads_before
    for transport in transports:
        transport.close()
    assert wait_until(lambda: reactor.transport_count() == 0)


# -- reading --------------------------------------------------------------------------------


def test_nothing_is_read_before_the_first_resume(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    peer.sendall(b"early")
    recorder.assert_quiet()
    transport.resume_reading()
    assert recorder.expect(rx.Received).data == b"early"


def test_a_second_chunk_waits_for_resume_reading(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    transport.resume_reading()
    peer.sendall(b"one")
    assert recorder.expect(rx.Received).data == b"one"
    peer.sendall(b"two")
    recorder.assert_quiet()
    transport.resume_reading()
    assert recorder.expect(rx.Received).data == b"two"


def test_paused_reading_pushes_back_on_the_sender(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    transport.resume_reading()
    peer.sendall(b"first")
    assert recorder.expect(rx.Received).data == b"first"
    peer.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    blocked = False
    for _ in range(4096):  # 256 MiB at most; loopback buffers hold a few MiB
        try:
            sent += peer.send(chunk)
        except BlockingIOError:
            blocked = True
            break
    assert blocked, "the sender was never blocked"
    recorder.assert_quiet()  # nothing was read while paused
    recorder.auto_resume = True
    transport.resume_reading()
    assert len(recorder.collect(sent)) == sent


def test_resume_inside_the_received_callback_reads_everything_in_order(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder(auto_resume=True)
    transport, peer = open_transport(reactor, listener, peers, recorder)
    transport.resume_reading()
    payload = pattern(1 << 20)
    peer.sendall(payload)
    peer.close()
    assert recorder.collect(len(payload)) == payload
    recorder.expect(rx.Eof)


def test_eof_when_the_peer_closes_its_side_and_writing_goes_on(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    transport.resume_reading()
    peer.shutdown(socket.SHUT_WR)
    assert recorder.expect(rx.Eof).transport is transport
    assert not transport.closed
    transport.write(b"still here")
    assert recv_exactly(peer, 10) == b"still here"


def test_peer_reset_reports_broken(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    transport.resume_reading()
    reset(peer)
    event = recorder.expect(rx.Broken)
    assert isinstance(event.error, ConnectionResetError)
    assert transport.closed
    assert wait_until(lambda: reactor.transport_count() == 0)


def test_write_to_a_reset_peer_reports_broken_while_paused(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    reset(peer)
    transport.write(b"into the void")
    event = recorder.expect(rx.Broken)
    assert isinstance(event.error, ConnectionResetError | BrokenPipeError)
    assert wait_until(lambda: reactor.transport_count() == 0)


def test_a_raising_callback_is_logged_and_the_reactor_goes_on(
    reactor: rx.Reactor,
    listener: socket.socket,
    peers: list[socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(event: rx.TransportEvent) -> None:
        raise RuntimeError("callback bug")

    reactor.connect(LOOPBACK, listener.getsockname()[1], callback=explode, timeout=WAIT)
    assert wait_until(lambda: any("raised" in r.getMessage() for r in caplog.records))
    assert any(r.name == "gluegun_actors.reactor" and r.exc_info for r in caplog.records)
    recorder = Recorder()
    open_transport(reactor, listener, peers, recorder)
    assert reactor.running


# -- writing --------------------------------------------------------------------------------


def test_a_big_write_is_parked_and_arrives_whole_and_in_order(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    payload = pattern(10 << 20)
    transport.write(payload)
    assert transport.pending_write_bytes > 0
    transport.write(b"tail-1")
    transport.write(b"tail-2")
    received = recv_exactly(peer, len(payload) + 12)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload + b"tail-1tail-2").digest()
    assert wait_until(lambda: transport.pending_write_bytes == 0)


def test_writes_from_several_threads_keep_each_threads_order(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    records = 2000

    def writer(tag: int) -> None:
        for i in range(records):
            transport.write(struct.pack(">BI", tag, i) + b"." * 1019)  # 1024-byte records

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in range(3)]
    for thread in threads:
        thread.start()
    data = recv_exactly(peer, 3 * records * 1024)
    for thread in threads:
        thread.join(WAIT)
    seen = {0: -1, 1: -1, 2: -1}
    for offset in range(0, len(data), 1024):
        tag, index = struct.unpack(">BI", data[offset : offset + 5])
        assert index == seen[tag] + 1
        seen[tag] = index
    assert seen == {0: records - 1, 1: records - 1, 2: records - 1}


def test_close_after_flush_sends_everything_then_closes(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    payload = pattern(8 << 20)
    transport.write(payload)
    transport.close_after_flush(WAIT)
    assert transport.closed
    assert recv_to_eof(peer) == payload
    assert wait_until(lambda: reactor.transport_count() == 0)
    recorder.assert_quiet(0.0)


def test_close_after_flush_gives_up_after_its_timeout(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, _peer = open_transport(reactor, listener, peers, recorder)
    transport.write(pattern(16 << 20))  # the peer never reads: this cannot all be sent
    started = time.monotonic()
    transport.close_after_flush(0.1)
    assert wait_until(lambda: reactor.transport_count() == 0)
    assert time.monotonic() - started >= 0.09
    assert reactor.timer_count() == 0


def test_close_after_flush_with_nothing_parked_closes_at_once(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    transport.close_after_flush(WAIT)
    assert transport.closed
    assert peer.recv(10) == b""
    assert wait_until(lambda: reactor.transport_count() == 0 and reactor.timer_count() == 0)


def test_close_twice_and_from_another_thread_is_safe(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    closer = threading.Thread(target=transport.close)
    closer.start()
    closer.join(WAIT)
    transport.close()
    transport.close()
    assert transport.closed
    assert peer.recv(10) == b""
    assert wait_until(lambda: reactor.transport_count() == 0)


def test_no_callback_after_close_returns(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    transport.resume_reading()
    transport.close()
    peer.sendall(b"too late")
    transport.write(b"dropped")
    recorder.assert_quiet()


def test_a_write_from_another_thread_does_not_wait_for_a_running_callback(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    """The callback runs with the transport lock released: while it blocks, another
    thread still writes (with the lock held during callbacks, this write would hang)."""
    in_callback = threading.Event()
    written = threading.Event()
    seen: list[bool] = []

    def callback(event: rx.TransportEvent) -> None:
        if isinstance(event, rx.Received):
            in_callback.set()
            seen.append(written.wait(WAIT))

    transport = reactor.connect(
        LOOPBACK, listener.getsockname()[1], callback=callback, timeout=WAIT
    )
    peer, _ = listener.accept()
    peer.settimeout(WAIT)
    peers.append(peer)
    transport.resume_reading()
    peer.sendall(b"ping")
    assert in_callback.wait(WAIT)
    writer = threading.Thread(target=lambda: (transport.write(b"pong"), written.set()))
    writer.start()
    writer.join(WAIT)
    assert written.is_set()
    assert recv_exactly(peer, 4) == b"pong"
    assert wait_until(lambda: seen == [True])
    transport.close()


def test_a_plain_read_is_reported_while_a_writer_holds_the_transport_lock(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    """An actor holds the transport lock through its send; the reactor's read of a plain
    socket, and its report, do not wait for it."""
    recorder = Recorder()
    transport, peer = open_transport(reactor, listener, peers, recorder)
    transport.resume_reading()
    peer.sendall(b"one")
    assert recorder.expect(rx.Received).data == b"one"
    with transport._lock:  # what `write` holds while the kernel takes its bytes
        transport.resume_reading()
        peer.sendall(b"two")
        assert recorder.expect(rx.Received).data == b"two"
    transport.close()


def test_close_from_another_thread_waits_for_the_running_callback_then_silences(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    """`close` waits for a callback in progress; nothing is delivered after it returns,
    not even an event the reactor had already found."""
    release = threading.Event()
    calls: list[str] = []

    def callback(event: rx.TransportEvent) -> None:
        calls.append(type(event).__name__)
        if isinstance(event, rx.Received):
            event.transport.resume_reading()
            release.wait(WAIT)

    transport = reactor.connect(
        LOOPBACK, listener.getsockname()[1], callback=callback, timeout=WAIT
    )
    peer, _ = listener.accept()
    peers.append(peer)
    assert wait_until(lambda: calls == ["Connected"])
    transport.resume_reading()
    peer.sendall(b"first")
    assert wait_until(lambda: calls == ["Connected", "Received"])
    peer.sendall(b"second")
    closer = threading.Thread(target=transport.close)
    closer.start()
    closer.join(QUIET)
    assert closer.is_alive(), "close returned while a callback was running"
    release.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    count = len(calls)
    time.sleep(QUIET)
    assert len(calls) == count


def test_repr_names_the_peer_and_the_state(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    transport, _peer = open_transport(reactor, listener, peers, Recorder())
    text = repr(transport)
    assert f"{LOOPBACK}:{listener.getsockname()[1]}" in text
    assert "open" in text and "reading=paused" in text


# -- timers and calls -----------------------------------------------------------------------


def test_timers_fire_in_deadline_order(reactor: rx.Reactor) -> None:
    fired: queue.Queue[str] = queue.Queue()
    for name, delay in (("d", 0.04), ("b", 0.02), ("c", 0.03), ("a", 0.0)):
        reactor.call_later(delay, lambda name=name: fired.put(name))  # type: ignore[misc]
    assert [fired.get(timeout=WAIT) for _ in range(4)] == ["a", "b", "c", "d"]
    assert reactor.timer_count() == 0


def test_a_cancelled_timer_never_fires(reactor: rx.Reactor) -> None:
    fired: list[str] = []
    done = threading.Event()
    handle = reactor.call_later(0.01, lambda: fired.append("cancelled"))
    handle.cancel()
    handle.cancel()
    reactor.call_later(0.03, done.set)
    assert handle.cancelled
    assert done.wait(WAIT)
    assert fired == []
    assert reactor.timer_count() == 0


def test_ten_thousand_timers_fire_in_order_and_cancel_in_bulk() -> None:
    reactor = rx.Reactor(name="gluegun-timers")  # not started: nothing fires while we cancel
    fired: list[int] = []
    done = threading.Event()
    handles = [
        reactor.call_later(0.001 + (i % 97) / 5000, lambda i=i: fired.append(i))  # type: ignore[misc]
        for i in range(10_000)
    ]
    for handle in handles[::2]:
        handle.cancel()
    assert reactor.timer_count() == 5_000
    reactor.call_later(0.05, done.set)
    reactor.start()
    try:
        assert done.wait(WAIT)
        assert sorted(fired) == list(range(1, 10_000, 2))
        deadlines = [handles[i].when for i in fired]
        assert deadlines == sorted(deadlines)
        assert reactor.timer_count() == 0
    finally:
        reactor.stop()


def test_a_raising_timer_does_not_stop_the_reactor(reactor: rx.Reactor) -> None:
    done = threading.Event()

    def explode() -> None:
        raise RuntimeError("timer bug")

    reactor.call_later(0.0, explode)
    reactor.call_later(0.01, done.set)
    assert done.wait(WAIT)
    assert reactor.running


def test_call_soon_from_another_thread_runs_in_order_on_the_reactor_thread(
    reactor: rx.Reactor,
) -> None:
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def post_all() -> None:
        for i in range(100):
            reactor.call_soon(
                lambda i=i: seen.append((i, threading.current_thread().name))  # type: ignore[misc]
            )
        reactor.call_soon(done.set)

    poster = threading.Thread(target=post_all)
    poster.start()
    poster.join(WAIT)
    assert done.wait(WAIT)
    assert [i for i, _ in seen] == list(range(100))
    assert {name for _, name in seen} == {reactor.name}


def test_a_stopped_reactor_refuses_new_work() -> None:
    reactor = rx.Reactor(name="gluegun-stopped")
    reactor.start()
    reactor.stop()
    with pytest.raises(RuntimeError):
        reactor.call_later(0.1, lambda: None)
    with pytest.raises(RuntimeError):
        reactor.call_soon(lambda: None)
    with pytest.raises(RuntimeError):
        reactor.connect(LOOPBACK, 1, callback=Recorder(), timeout=None)
    with pytest.raises(RuntimeError):
        reactor.start()


# -- lifecycle ------------------------------------------------------------------------------


def test_stop_closes_everything_and_leaves_no_thread_or_socket(
    listener: socket.socket, peers: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_resolver(monkeypatch, loopback_info)
    fds_before = open_fds()
    reactor = rx.Reactor(name="gluegun-stop-test")
    reactor.start()
    recorder = Recorder()
    transports = [open_transport(reactor, listener, peers, recorder)[0] for _ in range(3)]
    reactor.connect(FAKE_HOST, listener.getsockname()[1], callback=recorder, timeout=WAIT)
    recorder.expect(rx.Connected)
    transports[0].write(pattern(16 << 20))
    transports[0].close_after_flush(WAIT)  # the peer never reads: stop must not wait it out
    reactor.call_later(60.0, lambda: None)
    started = time.monotonic()
    reactor.stop(timeout=0.5)
    assert time.monotonic() - started < 1.0
    assert not reactor.running
    assert reactor.transport_count() == 0 and reactor.timer_count() == 0
    assert gluegun_threads() == []
    recorder.assert_quiet(0.0)
    for peer in peers:
        peer.close()
    peers.clear()
    listener.accept()[0].close()  # the connection made through the resolver
    assert open_fds() == fds_before


def test_stop_lets_a_flushing_transport_finish(
    reactor: rx.Reactor, listener: socket.socket, peers: list[socket.socket]
) -> None:
    transport, peer = open_transport(reactor, listener, peers, Recorder())
    payload = pattern(4 << 20)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(recv_to_eof(peer)))
    transport.write(payload)
    transport.close_after_flush(WAIT)
    reader.start()
    reactor.stop()
    reader.join(WAIT)
    assert received == [payload]


def test_stopping_a_reactor_that_never_ran_drops_its_queued_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_resolver(monkeypatch, loopback_info)
    reactor = rx.Reactor(name="gluegun-never-started")
    recorder = Recorder()
    numeric = reactor.connect(LOOPBACK, 1, callback=recorder, timeout=WAIT)
    named = reactor.connect(FAKE_HOST, 1, callback=recorder, timeout=WAIT)
    reactor.stop()
    assert numeric.closed and named.closed
    assert reactor.transport_count() == 0 and reactor.timer_count() == 0
    assert gluegun_threads() == []
    recorder.assert_quiet(0.0)


def test_acquire_shares_one_reactor_and_the_last_release_stops_it(
    listener: socket.socket, peers: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_resolver(monkeypatch, loopback_info)
    fds_before = open_fds()
    first = rx.acquire_reactor()
    second = rx.acquire_reactor()
    try:
        assert first is second and first.running
        recorder = Recorder()
        first.connect(FAKE_HOST, listener.getsockname()[1], callback=recorder, timeout=WAIT)
        recorder.expect(rx.Connected)
        first.call_later(60.0, lambda: None)
    finally:
        rx.release_reactor(first)
    assert second.running
    rx.release_reactor(second)
    assert not second.running
    assert gluegun_threads() == []
    listener.accept()[0].close()
    assert open_fds() == fds_before
    third = rx.acquire_reactor()
    try:
        assert third is not first and third.running
    finally:
        rx.release_reactor(third)


def test_release_from_inside_a_callback_stops_without_deadlock(
    listener: socket.socket, peers: list[socket.socket]
) -> None:
    reactor = rx.acquire_reactor()
    released = threading.Event()

    def on_event(event: rx.TransportEvent) -> None:
        if isinstance(event, rx.Connected):
            rx.release_reactor(reactor)
            released.set()

    reactor.connect(LOOPBACK, listener.getsockname()[1], callback=on_event, timeout=WAIT)
    assert released.wait(WAIT)
    thread = reactor.thread
    assert thread is not None
    thread.join(WAIT)
    assert not thread.is_alive()
    assert reactor.transport_count() == 0
    assert gluegun_threads() == []


def test_release_without_acquire_is_refused() -> None:
    with pytest.raises(RuntimeError):
        rx.release_reactor(rx.Reactor(name="gluegun-never-acquired"))


# -- TLS ------------------------------------------------------------------------------------


class TlsServer:
    """Accepts one connection in a thread, does the TLS handshake, runs `handler`."""

    def __init__(
        self,
        listener: socket.socket,
        certificate: tuple[Path, Path],
        handler: Callable[[ssl.SSLSocket], None],
    ) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*certificate)
        self.listener = listener
        self.handler = handler
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.listener.accept()
            raw.settimeout(WAIT)
            with self.context.wrap_socket(raw, server_side=True) as conn:
                self.handler(conn)
        except (OSError, ssl.SSLError) as error:
            self.error = error

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


def echo(conn: ssl.SSLSocket) -> None:
    for _ in range(100_000):
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def test_tls_handshake_then_echo(
    reactor: rx.Reactor, listener: socket.socket, certificate: tuple[Path, Path]
) -> None:
    server = TlsServer(listener, certificate, echo)
    recorder = Recorder(auto_resume=True)
    transport = reactor.connect(
        LOOPBACK,
        listener.getsockname()[1],
        callback=recorder,
        timeout=WAIT,
        ssl_context=client_context(certificate),
        server_hostname="localhost",
    )
    recorder.expect(rx.Connected)
    assert transport.tls
    transport.write(b"hello over tls")
    assert recorder.collect(14) == b"hello over tls"
    transport.close()
    server.join()
    assert server.error is None


def test_tls_big_write_arrives_whole(
    reactor: rx.Reactor, listener: socket.socket, certificate: tuple[Path, Path]
) -> None:
    payload = pattern(4 << 20)
    digests: list[bytes] = []

    def digest(conn: ssl.SSLSocket) -> None:
        digests.append(hashlib.sha256(recv_exactly(conn, len(payload))).digest())

    server = TlsServer(listener, certificate, digest)
    recorder = Recorder()
    transport = reactor.connect(
        LOOPBACK,
        listener.getsockname()[1],
        callback=recorder,
        timeout=WAIT,
        ssl_context=client_context(certificate),
    )
    transport.write(payload)
    recorder.expect(rx.Connected)
    server.join()
    assert digests == [hashlib.sha256(payload).digest()]
    transport.close()


def test_tls_bytes_held_by_the_ssl_object_are_delivered_on_resume(
    listener: socket.socket, certificate: tuple[Path, Path]
) -> None:
    # With 16-byte reads, one 1000-byte TLS record is read off the socket at once and
    # the rest waits inside the SSL object, where the selector cannot see it.
    payload = pattern(1000)

    def send_then_wait(conn: ssl.SSLSocket) -> None:
        conn.sendall(payload)
        conn.recv(1)  # until the client closes

    server = TlsServer(listener, certificate, send_then_wait)
    reactor = rx.Reactor(name="gluegun-small-reads", read_size=16)
    reactor.start()
    try:
        recorder = Recorder(auto_resume=True)
        transport = reactor.connect(
            LOOPBACK,
            listener.getsockname()[1],
            callback=recorder,
            timeout=WAIT,
            ssl_context=client_context(certificate),
        )
        recorder.expect(rx.Connected)
        assert recorder.collect(len(payload)) == payload
        transport.close()
        server.join()
    finally:
        reactor.stop()


def test_tls_untrusted_certificate_reports_connect_failed(
    reactor: rx.Reactor, listener: socket.socket, certificate: tuple[Path, Path]
) -> None:
    server = TlsServer(listener, certificate, echo)
    recorder = Recorder()
    reactor.connect(
        LOOPBACK,
        listener.getsockname()[1],
        callback=recorder,
        timeout=WAIT,
        ssl_context=ssl.create_default_context(),
    )
    event = recorder.expect(rx.ConnectFailed)
    assert isinstance(event.error, ssl.SSLCertVerificationError)
    server.join()
    assert wait_until(lambda: reactor.transport_count() == 0)


def test_full_reads_grow_the_read_size_and_short_ones_reset_it() -> None:
    reactor = rx.Reactor(read_size=1024)
    reactor.start()
    server = socket.socket()
    try:
        server.bind(("127.0.0.1", 0))
        server.listen()
        events: queue.Queue[object] = queue.Queue()
        transport = reactor.connect(
            "127.0.0.1", server.getsockname()[1], callback=events.put, timeout=5.0
        )
        peer, _ = server.accept()
        assert isinstance(events.get(timeout=5), rx.Connected)
        peer.sendall(b"x" * 100_000)
        sizes = []
        received = 0
        while received < 100_000:
            transport.resume_reading()
            event = events.get(timeout=5)
            assert isinstance(event, rx.Received)
            sizes.append(len(event.data))
            received += len(event.data)
        assert max(sizes) > 1024, "full reads doubled the read size"
        peer.sendall(b"y" * 10)
        transport.resume_reading()
        assert events.get(timeout=5).data == b"y" * 10  # type: ignore[attr-defined]
        peer.sendall(b"z" * 5000)
        transport.resume_reading()
        assert len(events.get(timeout=5).data) <= 1024  # type: ignore[attr-defined]
        peer.close()
        transport.close()
    finally:
        server.close()
        reactor.stop()

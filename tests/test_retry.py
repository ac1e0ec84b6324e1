"""Reconnection by policy (Gun's retry suite)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from gluegun_actors import connection, http, mailbox
from gluegun_actors._options import Options
from gluegun_actors.errors import ConnectionTerminated, StreamError
from gluegun_actors.events import Down, GunDown
from gluegun_actors.testing import EmbeddedServer

T = 5000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Events:
    """An event handler that records (name, fields) from the connection's thread."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, object], float]] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, fields: object) -> None:
        with self.lock:
            self.seen.append((name, dict(fields), time.monotonic()))  # type: ignore[call-overload]

    def names(self, name: str) -> list[dict[str, object]]:
        with self.lock:
            return [fields for seen, fields, _ in self.seen if seen == name]

    def times(self, name: str) -> list[float]:
        with self.lock:
            return [at for seen, _, at in self.seen if seen == name]


def test_nothing_listening_with_no_retry_raises_at_once_with_the_reason() -> None:
    conn = connection.open("127.0.0.1", _free_port(), connection.options(retry=0))
    started = time.monotonic()
    with pytest.raises(ConnectionTerminated) as caught:
        connection.await_up(conn, 10_000)
    assert time.monotonic() - started < 2.0
    assert isinstance(caught.value.reason, ConnectionRefusedError)
    assert "ConnectionRefusedError" in str(caught.value)
    down = mailbox.current().receive(Down, T)
    assert down.conn is conn and isinstance(down.reason, ConnectionRefusedError)


def test_retry_two_makes_exactly_three_attempts() -> None:
    events = _Events()
    options = connection.options(retry=2, retry_timeout=20, event_handler=events)
    conn = connection.open("127.0.0.1", _free_port(), options)
    with pytest.raises(ConnectionTerminated):
        connection.await_up(conn, T)
    assert len(events.names("connect_start")) == 3
    assert all("error" in fields for fields in events.names("connect_end"))
    assert not [m for m in mailbox.current().messages() if isinstance(m, GunDown)]
    mailbox.current().flush(Down)


def test_first_retry_is_immediate_and_later_ones_wait() -> None:
    events = _Events()
    options = connection.options(retry=2, retry_timeout=300, event_handler=events)
    conn = connection.open("127.0.0.1", _free_port(), options)
    with pytest.raises(ConnectionTerminated):
        connection.await_up(conn, T)
    starts = events.times("connect_start")
    assert len(starts) == 3
    assert starts[1] - starts[0] < 0.15
    assert starts[2] - starts[1] >= 0.29
    mailbox.current().flush(Down)


def test_retry_delays_follow_backoff_and_cap() -> None:
    options = Options(retry=6, retry_timeout=100, retry_backoff=2.0, retry_max_timeout=500)
    delays = [options.retry_delay(attempt, 6)[1] for attempt in range(1, 7)]
    assert delays == [0, 100, 200, 400, 500, 500]


def test_retry_jitter_stays_within_its_fraction() -> None:
    options = Options(retry_timeout=1000, retry_jitter=0.2)
    delays = {options.retry_delay(3, 5)[1] for _ in range(200)}
    assert min(delays) >= 800 and max(delays) <= 1200 and len(delays) > 1


def test_retry_fun_decides_count_and_delay() -> None:
    calls: list[int] = []

    def policy(retries: int, opts: Options) -> tuple[int, int]:
        calls.append(retries)
        return retries - 1, 10

    conn = connection.open("127.0.0.1", _free_port(), connection.options(retry=3, retry_fun=policy))
    with pytest.raises(ConnectionTerminated):
        connection.await_up(conn, T)
    assert calls == [3, 2, 1]
    mailbox.current().flush(Down)


def test_a_crashing_retry_fun_stops_the_actor_and_wakes_waiters() -> None:
    def broken(retries: int, opts: Options) -> tuple[int, int]:
        raise RuntimeError("policy bug")

    conn = connection.open("127.0.0.1", _free_port(), connection.options(retry_fun=broken))
    with pytest.raises(ConnectionTerminated) as caught:
        connection.await_up(conn, T)
    assert isinstance(caught.value.reason, RuntimeError)
    assert mailbox.current().receive(Down, T).conn is conn


def test_server_loss_kills_live_streams_then_reconnects(embedded_server) -> None:
    options = connection.options(retry=20, retry_timeout=50)
    conn = connection.open("127.0.0.1", embedded_server.port, options)
    try:
        connection.await_up(conn, T)
        done = http.get(conn, "/")
        http.await_body(conn, done, T)
        slow = [http.get(conn, "/delay?ms=3000"), http.get(conn, "/")]
        time.sleep(0.2)
        embedded_server.kill()
        for stream in slow:
            with pytest.raises(StreamError):
                http.await_response(conn, stream, T)
        down = mailbox.current().receive(GunDown, T)
        assert down.conn is conn
        assert down.killed_streams == tuple(slow)
        assert done not in down.killed_streams
        embedded_server.restart()
        assert connection.await_up(conn, T) is connection.Protocol.HTTP1
        again = http.get(conn, "/")
        assert http.await_body(conn, again, T) == b"hello from gluegun_actors"
    finally:
        connection.close(conn)


def test_requests_made_while_down_wait_for_the_next_up() -> None:
    port = _free_port()
    options = connection.options(retry=100, retry_timeout=30)
    conn = connection.open("127.0.0.1", port, options)  # nothing listens yet
    try:
        stream = http.get(conn, "/")
        time.sleep(0.1)
        with EmbeddedServer(port=port):
            assert connection.await_up(conn, T) is connection.Protocol.HTTP1
            assert http.await_body(conn, stream, T) == b"hello from gluegun_actors"
            connection.close(conn)
        assert [m for m in mailbox.current().messages() if isinstance(m, GunDown)] == []
    finally:
        connection.close(conn)

"""Connect failures say why: in `info()`, in one WARNING per outage, and in the error a
wait raises (its message names the failure, its `__cause__` is the attempt's exception).

Each kind of failure is made for real on 127.0.0.1: a closed port (refused), a name in
the reserved `.invalid` domain (DNS), a listener whose accept queue is full (connect
timeout: the kernel drops the SYN), a TLS server with a self-signed certificate
(verification) and TLS to the embedded plain HTTP server.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from peers import server_tls_context
from polling import wait_until

from gluegun_actors import connection, http, mailbox
from gluegun_actors.errors import (
    AwaitTimeout,
    ConnectFailed,
    ConnectionTerminated,
    InvalidOptions,
)
from gluegun_actors.events import Down
from gluegun_actors.testing import EmbeddedServer

T = 5000
LOGGER = "gluegun_actors.connection"


@dataclass(frozen=True)
class Failure:
    """Where to connect to fail one way, and what the failure must be called."""

    host: str
    port: int
    error: type[BaseException]
    says: str
    """A piece of the explanation every report of it carries."""
    options: dict[str, Any] = field(default_factory=dict)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _full_listener(stack: ExitStack) -> int:
    """A listener whose accept queue is full: Linux drops further SYNs, so a connect to it
    waits until the client's own timeout."""
    listener = stack.enter_context(socket.socket())
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    for _ in range(2):  # a backlog of 0 still queues one; the second makes sure
        filler = stack.enter_context(socket.socket())
        filler.settimeout(0.2)
        try:
            filler.connect(("127.0.0.1", port))
        except TimeoutError:
            break
    return port


def _tls_listener(stack: ExitStack, certificate: tuple[Path, Path]) -> int:
    """A TLS server with a self-signed certificate: it handshakes each client, then closes."""
    context = server_tls_context(certificate)
    listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with client:
                client.settimeout(2.0)
                # The client refuses our certificate: that is the point.
                with contextlib.suppress(OSError, ssl.SSLError):
                    context.wrap_socket(client, server_side=True).close()

    thread = threading.Thread(target=serve, name="tls-self-signed", daemon=True)
    thread.start()
    stack.callback(thread.join, 5)
    stack.callback(stop.set)
    return int(listener.getsockname()[1])


KINDS = ["refused", "dns", "connect_timeout", "tls_verify", "tls_to_plain"]


@pytest.fixture(params=KINDS)
def failure(request: pytest.FixtureRequest, certificate: tuple[Path, Path]) -> Iterator[Failure]:
    with ExitStack() as stack:
        match request.param:
            case "refused":
                yield Failure("127.0.0.1", _closed_port(), ConnectionRefusedError, "refused")
            case "dns":
                yield Failure(
                    "nonexistent.invalid",
                    80,
                    socket.gaierror,
                    "DNS lookup of 'nonexistent.invalid' failed",
                    {"domain_lookup_timeout": 3000},
                )
            case "connect_timeout":
                if not sys.platform.startswith("linux"):
                    pytest.skip("a full accept queue drops SYNs on Linux only")
                yield Failure(
                    "127.0.0.1",
                    _full_listener(stack),
                    TimeoutError,
                    "timed out after 100 ms (connect_timeout)",
                    {"connect_timeout": 100},
                )
            case "tls_verify":
                yield Failure(
                    "localhost",
                    _tls_listener(stack, certificate),
                    ssl.SSLCertVerificationError,
                    "TLS certificate verification failed: self-signed certificate",
                    # Retried here only because it is asked for (see the test below).
                    {"transport": "tls", "retry_permanent": True},
                )
            case "tls_to_plain":
                server = stack.enter_context(EmbeddedServer())
                yield Failure(
                    "127.0.0.1",
                    server.port,
                    ssl.SSLError,
                    "TLS handshake failed: the server answered in plain text?",
                    {"transport": "tls"},
                )


def _open(failure: Failure, **options: Any) -> connection.Connection:
    return connection.open(
        failure.host, failure.port, connection.options(**failure.options, **options)
    )


def _warnings(caplog: pytest.LogCaptureFixture, conn: connection.Connection) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER
        and record.levelno == logging.WARNING
        and record.getMessage().startswith(repr(conn))
    ]


@pytest.mark.parametrize("retry", [0, 2])
def test_when_attempts_run_out_the_wait_raises_connect_failed_with_the_cause(
    failure: Failure, retry: int, caplog: pytest.LogCaptureFixture
) -> None:
    conn = _open(failure, retry=retry, retry_timeout=20)
    started = time.monotonic()
    with pytest.raises(ConnectFailed) as caught:
        connection.await_up(conn, 10_000)
    assert time.monotonic() - started < 4.0, "it should raise once the attempts ran out"
    error = caught.value
    assert isinstance(error.__cause__, failure.error)
    assert error.reason is error.__cause__
    assert error.attempts == retry + 1
    times = "once" if retry == 0 else f"{retry + 1} times"
    assert f"failed {times}" in str(error)
    assert failure.says in str(error)
    assert "no retries left" in str(error)
    warnings = _warnings(caplog, conn)
    assert len(warnings) == 1, warnings  # once per outage, not once per attempt
    assert failure.says in warnings[0]
    down = mailbox.current().receive(Down, T)
    assert down.conn is conn and down.reason is error.__cause__
    with pytest.raises(ConnectFailed, match="could not connect") as again:
        http.get(conn, "/")  # every later call says the same
    assert again.value.__cause__ is error.__cause__
    with pytest.raises(ConnectFailed):
        connection.info(conn)


def test_while_retrying_a_timed_out_wait_names_the_last_error(
    failure: Failure, caplog: pytest.LogCaptureFixture
) -> None:
    conn = _open(failure, retry=3, retry_timeout=10_000)  # two quick failures, then a pause
    try:
        assert wait_until(lambda: "2 times" in str(conn.outage), 5.0), conn.outage
        started = time.monotonic()
        with pytest.raises(AwaitTimeout) as caught:
            connection.await_up(conn, 300)
        assert time.monotonic() - started >= 0.29  # it waited its time: retries are left
        error = caught.value
        assert isinstance(error.__cause__, failure.error)
        text = str(error)
        assert "not up" in text and "failed 2 times" in text, text
        assert failure.says in text
        assert "(retrying in" in text and "then 1 more retry)" in text, text
        snapshot = connection.info(conn)
        assert snapshot.last_error is error.__cause__
        assert snapshot.state_name == "not_connected"
        assert len(_warnings(caplog, conn)) == 1
    finally:
        connection.close(conn)


def test_a_request_waiting_for_the_connection_times_out_naming_the_outage() -> None:
    conn = connection.open("127.0.0.1", _closed_port(), connection.options(retry_timeout=10_000))
    try:
        stream = http.get(conn, "/")  # queued for the next GunUp, which will not come
        assert wait_until(lambda: conn.outage is not None)
        with pytest.raises(
            AwaitTimeout, match=r"no response .* it is not up, connect to"
        ) as caught:
            http.await_response(conn, stream, 200)
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    finally:
        connection.close(conn)


def test_each_outage_warns_once_and_a_recovery_is_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    port = _closed_port()
    conn = connection.open("127.0.0.1", port, connection.options(retry=100, retry_timeout=50))
    try:
        assert wait_until(lambda: "3 times" in str(conn.outage))
        with EmbeddedServer(port=port):
            assert connection.await_up(conn, T) is connection.Protocol.HTTP1
            assert conn.outage is None
            assert isinstance(connection.info(conn).last_error, ConnectionRefusedError)  # kept
            recovered = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
            assert any("connected after" in text and "refused" in text for text in recovered)
        # The server is gone: the connection is lost, and a second outage begins.
        assert wait_until(lambda: "3 times" in str(conn.outage))
        warnings = _warnings(caplog, conn)
        assert len(warnings) == 2, warnings
        assert all("refused" in text for text in warnings)
        assert "cannot connect to" in warnings[0] and "cannot reconnect to" in warnings[1]
    finally:
        connection.close(conn)
        mailbox.current().flush()


def test_a_connect_timeout_names_the_option_that_bounds_it() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("a full accept queue drops SYNs on Linux only")
    with ExitStack() as stack:
        port = _full_listener(stack)
        options = connection.options(retry=0, connect_timeout=150)
        conn = connection.open("127.0.0.1", port, options)
        with pytest.raises(ConnectFailed) as caught:
            connection.await_up(conn, T)
        cause = caught.value.__cause__
        assert isinstance(cause, TimeoutError)
        assert str(cause) == (
            f"connecting to 127.0.0.1:{port} timed out after 150 ms (connect_timeout): "
            "nothing answered"
        )
        mailbox.current().flush(Down)


def test_a_closed_connection_is_not_reported_as_a_connect_failure() -> None:
    conn = connection.open("127.0.0.1", _closed_port(), connection.options(retry_timeout=10_000))
    assert wait_until(lambda: conn.outage is not None)
    connection.close(conn)
    with pytest.raises(ConnectionTerminated, match="is closed") as caught:
        http.get(conn, "/")
    assert not isinstance(caught.value, ConnectFailed)  # closed on purpose, not a failure


def test_a_request_queued_on_a_connection_that_gives_up_fails_with_the_cause() -> None:
    conn = connection.open("127.0.0.1", _closed_port(), connection.options(retry=1))
    stream = http.get(conn, "/")  # queued for a GunUp that never comes
    with pytest.raises(ConnectFailed, match="failed 2 times") as caught:
        http.await_response(conn, stream, T)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    mailbox.current().flush(Down)


def test_a_certificate_that_does_not_verify_is_reported_at_once_not_retried(
    certificate: tuple[Path, Path],
) -> None:
    with ExitStack() as stack:
        port = _tls_listener(stack, certificate)
        conn = connection.open(
            "localhost", port, connection.options(transport="tls", retry=5, retry_timeout=20)
        )
        with pytest.raises(ConnectFailed) as caught:
            connection.await_up(conn, 10_000)
    assert caught.value.attempts == 1  # six handshakes before: the same answer each time
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert "certificate verification failed" in str(caught.value)
    assert mailbox.current().receive(Down, T).conn is conn


def test_retry_permanent_must_be_a_bool() -> None:
    with pytest.raises(InvalidOptions, match="retry_permanent"):
        connection.options(retry_permanent="yes")

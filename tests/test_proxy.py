"""Connections through proxies, over real sockets: pproxy (HTTP CONNECT and SOCKS5, with and
without credentials) in front of the embedded server and the `websockets` server, TLS
inside the tunnel, refusals, a proxy that is down, reconnects, and the environment.

Every proxied connection checks that it really went through the proxy: the socket's peer
(`connection.info(conn).peer_port`) is the proxy, not the server.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from proxy_server import Pproxy, pproxy_server
from websockets.sync.server import ServerConnection, serve

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors.errors import (
    ConnectionTerminated,
    InvalidOptions,
    ProxyAuthenticationError,
    ProxyError,
)
from gluegun_actors.events import Down, GunDown, GunUp
from gluegun_actors.message import Text
from gluegun_actors.testing import EmbeddedServer, Expect, Hold, ScriptedServer, Send

T = 5000
KINDS = ("http", "socks5")
SECRET = "s3cr3t-pa55"
HELLO = b"hello from gluegun_actors"


@pytest.fixture(scope="module")
def proxy() -> Iterator[Pproxy]:
    """pproxy without credentials, HTTP CONNECT and SOCKS5 on one port."""
    with pproxy_server() as running:
        yield running


@pytest.fixture(scope="module")
def guarded_proxy() -> Iterator[Pproxy]:
    """pproxy that asks every connection for `user:SECRET`."""
    with pproxy_server(f"user:{SECRET}") as running:
        yield running


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer() as embedded:
        yield embedded


def _open(host: str, port: int, **options: Any) -> connection.Connection:
    return connection.open(host, port, connection.options(retry=0, **options))


def _up_failure(conn: connection.Connection) -> ConnectionTerminated:
    """Awaits `conn` up, which must fail, closes it and returns the failure."""
    try:
        with pytest.raises(ConnectionTerminated) as caught:
            connection.await_up(conn, T)
    finally:
        connection.close(conn)
    return caught.value


def _peer_port(port: int, **options: Any) -> int | None:
    """GETs "/" from the embedded server on `port` at "localhost" and returns the port of
    the socket's peer: the server's own, or the proxy's."""
    conn = _open("localhost", port, **options)
    try:
        connection.await_up(conn, T)
        stream = http.get(conn, "/")
        assert http.await_response(conn, stream, T).status == 200
        assert http.await_body(conn, stream, T) == HELLO
        return connection.info(conn).peer_port
    finally:
        connection.close(conn)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- HTTP and WebSocket through each kind of proxy ---------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_get_goes_through_the_proxy(kind: str, proxy: Pproxy, server: EmbeddedServer) -> None:
    assert _peer_port(server.port, proxy=proxy.url(kind)) == proxy.port


@pytest.mark.parametrize("kind", KINDS)
def test_post_goes_through_the_proxy(kind: str, proxy: Pproxy, server: EmbeddedServer) -> None:
    body = b"x" * 200_000
    conn = _open("127.0.0.1", server.port, proxy=proxy.url(kind))
    try:
        connection.await_up(conn, T)
        stream = http.post(conn, "/echo", [("content-type", "application/octet-stream")], body)
        assert http.await_response(conn, stream, T).status == 200
        assert http.await_body(conn, stream, T) == body
        assert connection.info(conn).peer_port == proxy.port
    finally:
        connection.close(conn)


@pytest.mark.parametrize("kind", KINDS)
def test_credentials_open_the_tunnel(
    kind: str, guarded_proxy: Pproxy, server: EmbeddedServer
) -> None:
    assert _peer_port(server.port, proxy=guarded_proxy.url(kind)) == guarded_proxy.port


def _echo_twice(socket: websocket.Socket) -> list[object]:
    replies = []
    for text in ("one", "two"):
        websocket.send_text(socket, text)
        replies.append(websocket.receive_app_frame(socket, T))
    replies.append(connection.info(socket.connection).peer_port)
    return replies


@pytest.mark.parametrize("kind", KINDS)
def test_websocket_echo_through_the_proxy_to_the_embedded_server(
    kind: str, guarded_proxy: Pproxy, server: EmbeddedServer
) -> None:
    options = websocket.options(connection=connection.options(proxy=guarded_proxy.url(kind)))
    replies = websocket.with_socket(
        host="localhost", port=server.port, path="/echo", options=options, callback=_echo_twice
    )
    assert replies == [Text("one"), Text("two"), guarded_proxy.port]


@pytest.mark.parametrize("kind", KINDS)
def test_websocket_echo_through_the_proxy_to_the_websockets_server(
    kind: str, proxy: Pproxy, websockets_port: int
) -> None:
    options = websocket.options(connection=connection.options(proxy=proxy.url(kind)))
    replies = websocket.with_socket(
        url=f"ws://localhost:{websockets_port}/", options=options, callback=_echo_twice
    )
    assert replies == [Text("one"), Text("two"), proxy.port]


# -- TLS inside the tunnel --------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def wss_server(authority: trustme.CA) -> Iterator[tuple[int, list[str | None]]]:
    """A `websockets` echo server on 127.0.0.1 with a certificate for "localhost" only;
    yields its port and the server names (SNI) its clients asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("localhost").configure_cert(context)
    names: list[str | None] = []
    context.sni_callback = lambda _socket, name, _context: names.append(name)

    def echo(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0, ssl=context) as running:
        thread = threading.Thread(target=running.serve_forever, name="wss-peer", daemon=True)
        thread.start()
        yield running.socket.getsockname()[1], names
        running.shutdown()
        thread.join(5)


def _trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


@pytest.mark.parametrize("kind", KINDS)
def test_wss_through_the_tunnel_verifies_the_server_not_the_proxy(
    kind: str,
    proxy: Pproxy,
    authority: trustme.CA,
    wss_server: tuple[int, list[str | None]],
) -> None:
    port, names = wss_server
    names.clear()
    # The proxy is 127.0.0.1, which the certificate does not name: only a check against
    # the server's name ("localhost") passes.
    options = websocket.options(
        connection=connection.options(proxy=proxy.url(kind), tls_context=_trusting(authority))
    )
    replies = websocket.with_socket(
        url=f"wss://localhost:{port}/", options=options, callback=_echo_twice
    )
    assert replies == [Text("one"), Text("two"), proxy.port]
    assert names == ["localhost"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_certificate_that_does_not_name_the_server_fails_inside_the_tunnel(
    kind: str,
    proxy: Pproxy,
    authority: trustme.CA,
    wss_server: tuple[int, list[str | None]],
) -> None:
    port, _ = wss_server
    conn = _open(
        "127.0.0.1", port, proxy=proxy.url(kind), transport="tls", tls_context=_trusting(authority)
    )
    reason = _up_failure(conn).reason
    assert isinstance(reason, ssl.SSLCertVerificationError)
    assert not isinstance(reason, ProxyError)  # the tunnel itself was fine


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_credentials_stop_at_once_without_showing_them(
    kind: str, guarded_proxy: Pproxy, server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []
    options = connection.options(
        proxy=guarded_proxy.url(kind, f"user:{SECRET}-wrong"),
        retry=5,
        retry_timeout=100,
        event_handler=lambda name, fields: events.append(name),
    )
    with caplog.at_level(logging.DEBUG, logger="gluegun_actors"):
        conn = connection.open("localhost", server.port, options)
        failure = _up_failure(conn)
        down = mailbox.current().receive(Down, T)
    reason = failure.reason
    assert isinstance(reason, ProxyAuthenticationError)
    assert down.reason is reason
    assert "the proxy refused the tunnel" in str(reason)
    assert "check the proxy credentials" in str(reason)
    assert f"127.0.0.1:{guarded_proxy.port}" in str(reason)
    assert events.count("connect_start") == 1, "a refused tunnel is not retried"
    shown = [str(failure), str(reason), repr(options), repr(conn), caplog.text]
    assert all(SECRET not in text for text in shown)
    assert "***@" in repr(options)


def test_http_407_names_the_status(guarded_proxy: Pproxy, server: EmbeddedServer) -> None:
    conn = _open("localhost", server.port, proxy=guarded_proxy.url("http", f"user:{SECRET}x"))
    reason = _up_failure(conn).reason
    assert isinstance(reason, ProxyAuthenticationError)
    assert reason.reply == 407
    assert str(reason).startswith(
        "the proxy refused the tunnel: 407 Proxy Authentication Required "
        "(check the proxy credentials)"
    )


def test_missing_credentials_say_how_to_give_them(
    guarded_proxy: Pproxy, server: EmbeddedServer
) -> None:
    conn = _open("localhost", server.port, proxy=guarded_proxy.url("http", ""))
    reason = _up_failure(conn).reason
    assert isinstance(reason, ProxyAuthenticationError)
    assert "proxy='http://user:password@host:port'" in str(reason)


def test_a_proxy_that_is_down_is_named_and_retried(server: EmbeddedServer) -> None:
    port = _free_port()
    events: list[str] = []
    conn = connection.open(
        "localhost",
        server.port,
        connection.options(
            proxy=f"socks5://user:{SECRET}@127.0.0.1:{port}",
            retry=2,
            retry_timeout=10,
            event_handler=lambda name, fields: events.append(name),
        ),
    )
    failure = _up_failure(conn)
    reason = failure.reason
    assert type(reason) is ProxyError
    assert str(reason) == f"cannot reach the proxy 127.0.0.1:{port}: connection refused"
    assert isinstance(reason.__cause__, ConnectionRefusedError)
    assert events.count("connect_start") == 3, "a proxy that is down is retried"
    assert SECRET not in str(failure)


def test_socks5_reply_codes_are_explained_and_retried() -> None:
    greeting_and_request = [
        Expect(n=3),  # 05 01 00
        Send(b"\x05\x00"),
        Expect(n=4 + 1 + len(b"origin.test") + 2),
        Send(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"),
    ]
    events: list[str] = []
    with ScriptedServer([greeting_and_request]) as fake:
        conn = connection.open(
            "origin.test",
            8080,
            connection.options(
                proxy=f"socks5://127.0.0.1:{fake.port}",
                retry=1,
                event_handler=lambda name, fields: events.append(name),
            ),
        )
        reason = _up_failure(conn).reason
        request = fake.received[0][3:]
    assert type(reason) is ProxyError
    assert reason.reply == 5
    assert "SOCKS5 reply 5, connection refused" in str(reason)
    assert "tunnel to origin.test:8080" in str(reason)
    assert events.count("connect_start") == 2
    # The name travels to the proxy (ATYP 3), which resolves it.
    assert request == b"\x05\x01\x00\x03\x0borigin.test\x1f\x90"


def test_an_http_refusal_is_a_proxy_error_with_its_status() -> None:
    script = [Expect(), Send(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")]
    with ScriptedServer([script]) as fake:
        conn = _open("origin.test", 443, proxy=f"http://127.0.0.1:{fake.port}")
        reason = _up_failure(conn).reason
        request = fake.received[0]
    assert type(reason) is ProxyError
    assert reason.reply == 502
    assert str(reason).startswith("the proxy refused the tunnel: 502 Bad Gateway")
    assert request == b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n"


def test_a_silent_proxy_is_bounded_by_the_connect_timeout() -> None:
    with ScriptedServer([[Hold()]]) as fake:
        conn = _open("origin.test", 80, proxy=f"http://127.0.0.1:{fake.port}", connect_timeout=200)
        reason = _up_failure(conn).reason
    assert isinstance(reason, ProxyError)
    assert str(reason).startswith(
        f"the proxy 127.0.0.1:{fake.port} did not open the tunnel to origin.test:80: "
    )
    assert "timed out after 200 ms (connect_timeout)" in str(reason)


def test_a_tls_handshake_timeout_inside_the_tunnel_names_the_server(proxy: Pproxy) -> None:
    with ScriptedServer([[Hold()]]) as silent:
        conn = _open(
            "localhost",
            silent.port,
            proxy=proxy.url("http"),
            transport="tls",
            tls_handshake_timeout=300,
        )
        reason = _up_failure(conn).reason
    assert isinstance(reason, TimeoutError) and not isinstance(reason, ProxyError)
    assert f"localhost:{silent.port} through the proxy timed out after 300 ms" in str(reason)


def test_bytes_after_the_reply_before_the_client_spoke_fail_the_attempt() -> None:
    script = [Expect(), Send(b"HTTP/1.1 200 OK\r\n\r\nunsolicited")]
    with ScriptedServer([script]) as fake:
        conn = _open("origin.test", 80, proxy=f"http://127.0.0.1:{fake.port}")
        reason = _up_failure(conn).reason
    assert isinstance(reason, ProxyError)
    assert "sent 11 bytes after opening the tunnel" in str(reason)


# -- reconnects -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_reconnect_redoes_the_tunnel(kind: str, guarded_proxy: Pproxy) -> None:
    with EmbeddedServer() as origin:
        options = connection.options(
            proxy=guarded_proxy.url(kind),
            retry=20,
            # Leaves the test time to restart the server before the first retry: pproxy's
            # SOCKS5 says "opened" before it reaches the server, so a retry into the
            # downtime would come up and go down again.
            retry_fun=lambda left, _options: (left - 1, 300),
        )
        conn = connection.open("localhost", origin.port, options)
        try:
            connection.await_up(conn, T)
            first = http.get(conn, "/")
            assert http.await_body(conn, first, T) == HELLO
            origin.stop()
            down = mailbox.current().receive(GunDown, T)
            assert down.conn is conn
            origin.restart()
            up = mailbox.current().receive(GunUp, T)
            assert up.conn is conn
            again = http.get(conn, "/")
            assert http.await_body(conn, again, T) == HELLO
            assert connection.info(conn).peer_port == guarded_proxy.port
            assert origin.connections_accepted == 2
        finally:
            connection.close(conn)


# -- the environment, on request only ---------------------------------------------------------

_PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_environment_is_used_only_when_asked(
    clean_environment: pytest.MonkeyPatch, proxy: Pproxy, server: EmbeddedServer
) -> None:
    clean_environment.setenv("http_proxy", proxy.url("http"))
    assert _peer_port(server.port) == server.port
    assert _peer_port(server.port, proxy_from_env=True) == proxy.port


def test_no_proxy_bypasses_the_environment_proxy(
    clean_environment: pytest.MonkeyPatch, proxy: Pproxy, server: EmbeddedServer
) -> None:
    clean_environment.setenv("all_proxy", proxy.url("socks5"))
    clean_environment.setenv("no_proxy", "example.com,localhost")
    assert _peer_port(server.port, proxy_from_env=True) == server.port


def test_a_bad_environment_proxy_is_refused_by_open(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("http_proxy", f"ftp://user:{SECRET}@127.0.0.1:21")
    with pytest.raises(InvalidOptions, match="http_proxy environment variable") as caught:
        connection.open("localhost", 80, connection.options(proxy_from_env=True))
    assert SECRET not in str(caught.value)

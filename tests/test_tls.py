"""HTTP and WebSocket over TLS (`transport="tls"`), against independent TLS servers."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import HELLO, server_tls_context, stdlib_server
from websockets.sync.server import ServerConnection, serve

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors.errors import ConnectionTerminated
from gluegun_actors.events import Down
from gluegun_actors.message import Text

T = 5000


def _client_options(certificate: tuple[Path, Path], **more: object) -> connection.Options:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    return connection.options(transport="tls", tls_context=context, retry=0, **more)


@pytest.fixture
def https_port(certificate: tuple[Path, Path]) -> Iterator[int]:
    with stdlib_server(server_tls_context(certificate)) as server:
        yield server.server_port


@pytest.fixture
def wss_port(certificate: tuple[Path, Path]) -> Iterator[int]:
    def echo(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0, ssl=server_tls_context(certificate)) as server:
        thread = threading.Thread(target=server.serve_forever, name="tls-ws-peer", daemon=True)
        thread.start()
        yield server.socket.getsockname()[1]
        server.shutdown()
        thread.join(5)


def test_https_get(https_port: int, certificate: tuple[Path, Path]) -> None:
    conn = connection.open("localhost", https_port, _client_options(certificate))
    try:
        assert connection.await_up(conn, T) is connection.Protocol.HTTP1
        stream = http.get(conn, "/")
        assert http.await_body(conn, stream, T) == HELLO
        assert connection.info(conn).transport == "tls"
    finally:
        connection.close(conn)


def test_an_untrusted_certificate_fails_the_connect(https_port: int) -> None:
    options = connection.options(transport="tls", retry=0)
    conn = connection.open("localhost", https_port, options)
    with pytest.raises(ConnectionTerminated) as caught:
        connection.await_up(conn, T)
    assert isinstance(caught.value.reason, ssl.SSLError)
    assert mailbox.current().receive(Down, T).conn is conn


def test_websocket_over_tls(wss_port: int, certificate: tuple[Path, Path]) -> None:
    options = websocket.options(connection=_client_options(certificate))
    with websocket.connect(host="localhost", port=wss_port, path="/", options=options) as socket:
        websocket.send_text(socket, "secret")
        assert websocket.receive_app_frame(socket) == Text("secret")

"""HTTP and WebSocket over TLS (`transport="tls"`), against independent TLS servers."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from websockets.sync.server import ServerConnection, serve

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors.errors import ConnectionTerminated
from gluegun_actors.events import Down
from gluegun_actors.message import Text

T = 5000


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"hello over tls"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def _client_options(certificate: tuple[Path, Path], **more: object) -> connection.Options:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    return connection.options(transport="tls", tls_context=context, retry=0, **more)


@pytest.fixture
def https_port(certificate: tuple[Path, Path]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.daemon_threads = True
    server.socket = _server_context(certificate).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="tls-http-peer", daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def wss_port(certificate: tuple[Path, Path]) -> Iterator[int]:
    def echo(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0, ssl=_server_context(certificate)) as server:
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
        assert http.await_body(conn, stream, T) == b"hello over tls"
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

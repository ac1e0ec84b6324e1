"""Every error says what happened and what to do: a closed connection says it is closed,
a Socket whose connection came back as plain HTTP says to reopen it, a refused upgrade
hints at the cause, and `close()` ends an upgraded WebSocket with a close frame."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from peers import stdlib_server
from polling import wait_until
from websockets.sync.server import ServerConnection, serve

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors.errors import (
    BadStateError,
    ConnectionDown,
    ConnectionTerminated,
    UpgradeFailed,
)
from gluegun_actors.message import Text
from gluegun_actors.testing import (
    Close,
    EmbeddedServer,
    Expect,
    Hold,
    ScriptedServer,
    Send,
    WsAccept,
)

T = 5000


@pytest.fixture
def close_codes() -> Iterator[tuple[int, list[tuple[int | None, str | None]]]]:
    """A `websockets` echo server that records the close code each client ended with."""
    seen: list[tuple[int | None, str | None]] = []

    def echo(ws: ServerConnection) -> None:
        try:
            for message in ws:
                ws.send(message)
        finally:
            seen.append((ws.close_code, ws.close_reason))

    with serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, name="close-codes", daemon=True)
        thread.start()
        yield server.socket.getsockname()[1], seen
        server.shutdown()
        thread.join(5)


def test_close_on_an_upgraded_connection_sends_a_close_frame(
    close_codes: tuple[int, list[tuple[int | None, str | None]]],
) -> None:
    port, seen = close_codes
    socket = websocket.connect(host="127.0.0.1", port=port)
    websocket.send_text(socket, "hi")
    assert websocket.receive_app_frame(socket) == Text("hi")
    started = time.monotonic()
    connection.close(socket.connection)
    assert time.monotonic() - started < 0.5  # still "close at once": no wait for the peer
    assert wait_until(lambda: bool(seen))
    assert seen == [(1001, "going away")]  # a clean close, not 1006 (abnormal)


def test_a_request_on_a_closed_connection_says_it_is_closed(
    close_codes: tuple[int, list[tuple[int | None, str | None]]],
) -> None:
    port, _ = close_codes
    socket = websocket.connect(host="127.0.0.1", port=port)
    connection.close(socket.connection)
    with pytest.raises(ConnectionTerminated, match="is closed") as caught:
        http.get(socket.connection, "/")
    assert "WebSocket" not in str(caught.value)
    with pytest.raises(ConnectionTerminated, match="is closed"):
        websocket.send_text(socket, "late")


def test_a_socket_whose_connection_came_back_as_plain_http_says_to_reopen_it(
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    server = scripted_server([[Expect(), WsAccept(), Close()], [Hold()]])  # then a "restart"
    options = websocket.options(connection=connection.options(retry=3, retry_timeout=50))
    socket = websocket.connect(host="127.0.0.1", port=server.port, options=options)
    try:
        conn = socket.connection
        assert wait_until(lambda: conn.protocol is connection.Protocol.HTTP1 and conn.alive)
        with pytest.raises(BadStateError) as sending:
            websocket.send_text(socket, "anyone?")
        text = str(sending.value)
        assert "lost" in text and "is back as plain HTTP" in text, text
        assert "websocket.connect" in text and "reupgrade=True" in text
        assert "await_upgrade" not in text
        with pytest.raises(ConnectionDown) as receiving:
            websocket.receive_app_frame(socket, 1000)
        text = str(receiving.value)
        assert "was lost" in text and "plain HTTP" in text and "reupgrade=True" in text, text
    finally:
        socket.__exit__(None, None, None)
        mailbox.current().flush()


def test_an_upgrade_answered_with_200_asks_whether_the_path_is_a_websocket_endpoint() -> None:
    with stdlib_server() as server:
        with pytest.raises(UpgradeFailed) as caught:
            websocket.connect(host="127.0.0.1", port=server.server_port, path="/status")
        error = caught.value
        assert error.status == 200
        text = str(error)
        assert "is '/status' a WebSocket endpoint?" in text, text
        assert "'hello from gluegun_actors'" in text  # a short body is quoted


def test_the_low_level_refusal_hints_without_knowing_the_path(
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    refusal = b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found"
    server = scripted_server([[Expect(), Send(refusal), Hold()]])
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=0))
    try:
        stream = websocket.upgrade(conn, "/chat")
        with pytest.raises(UpgradeFailed) as caught:
            websocket.await_upgrade(conn, stream, T)
        text = str(caught.value)
        assert "status 404" in text and "the upgrade's path was not found" in text, text
        assert "'not found'" in text
    finally:
        connection.close(conn)


def test_a_long_refusal_body_is_not_quoted(scripted_server: Callable[..., ScriptedServer]) -> None:
    body = b"x" * 5000
    refusal = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 5000\r\n\r\n" + body
    server = scripted_server([[Expect(), Send(refusal), Hold()]])
    with pytest.raises(UpgradeFailed) as caught:
        websocket.connect(host="127.0.0.1", port=server.port, path="/ws")
    text = str(caught.value)
    assert "authorization" in text and "(5000 bytes) is in .body" in text, text
    assert "xxxx" not in text
    assert caught.value.body == body


def test_tls_to_the_plain_embedded_server_names_the_mistake() -> None:
    with EmbeddedServer() as server:
        options = websocket.options(connection=connection.options(transport="tls", retry=0))
        with pytest.raises(ConnectionTerminated) as caught:
            websocket.connect(host="127.0.0.1", port=server.port, options=options)
    text = str(caught.value)
    assert "the server answered in plain text?" in text and "transport='tcp'" in text, text

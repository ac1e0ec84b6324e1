"""WebSocket peers that misbehave, played byte for byte; and flow control."""

from __future__ import annotations

import threading
import time

import pytest

from gluegun_actors import connection, mailbox, websocket
from gluegun_actors.errors import (
    AwaitTimeout,
    ClosingTimeout,
    ConnectionDown,
    MessageTooBig,
    PongTimeout,
    RemoteProtocolError,
)
from gluegun_actors.events import Down, GunDown, GunError, GunWs, Shutdown
from gluegun_actors.message import Close, Text
from gluegun_actors.testing import Close as CloseSocket
from gluegun_actors.testing import Expect, Hold, ScriptedServer, Send, WsAccept

T = 5000
TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8
frame = ScriptedServer.ws_frame


def _upgrade(server: ScriptedServer, options: websocket.Options | None = None, **conn: object):
    c = connection.open("127.0.0.1", server.port, connection.options(retry=0, **conn))
    protocol = connection.await_up(c, T)
    stream = websocket.upgrade_with_protocol(c, protocol, "/", [], options)
    return c, stream


def test_wrong_accept_key_fails_the_upgrade() -> None:
    bad = (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
        b"sec-websocket-accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n"
    )
    with ScriptedServer([[Expect(), Send(bad), Hold()]]) as server:
        conn, stream = _upgrade(server)
        try:
            with pytest.raises(RemoteProtocolError, match=r"(?i)accept"):
                websocket.await_upgrade(conn, stream, T)
            down = mailbox.current().receive(GunDown, T)
            assert down.killed_streams == (stream,)
        finally:
            connection.close(conn)


def test_a_101_that_never_comes_times_out_and_loses_nothing() -> None:
    with ScriptedServer([[Expect(), Hold()]]) as server:
        conn, stream = _upgrade(server)
        try:
            with pytest.raises(AwaitTimeout):
                websocket.await_upgrade(conn, stream, 150)
            assert conn.alive
            assert mailbox.current().messages() == []
        finally:
            connection.close(conn)


def test_close_mid_frame_takes_the_connection_down() -> None:
    partial = frame(BINARY, b"x" * 100)[:40]
    with ScriptedServer([[Expect(), WsAccept(), Send(partial), CloseSocket()]]) as server:
        conn, stream = _upgrade(server)
        try:
            websocket.await_upgrade(conn, stream, T)
            with pytest.raises(ConnectionDown):
                websocket.receive(conn, stream, T)
            down = mailbox.current().receive(GunDown, T)
            assert isinstance(down.reason, RemoteProtocolError)
            assert down.killed_streams == (stream,)
        finally:
            connection.close(conn)


def test_a_frozen_peer_is_detected_by_the_pong_timeout() -> None:
    with ScriptedServer([[Expect(), WsAccept(), Hold()]]) as server:
        options = websocket.options(keepalive=50, pong_timeout=200)
        conn, stream = _upgrade(server, options)
        try:
            websocket.await_upgrade(conn, stream, T)
            started = time.monotonic()
            with pytest.raises(ConnectionDown) as caught:
                websocket.receive(conn, stream, T)
            assert isinstance(caught.value.reason, PongTimeout)
            assert 0.2 <= time.monotonic() - started < 2.0
            assert "did not answer a ping" in str(caught.value)
        finally:
            connection.close(conn)


def test_closing_timeout_bounds_the_close_with_a_frozen_peer() -> None:
    with ScriptedServer([[Expect(), WsAccept(), Hold()]]) as server:
        options = websocket.options(closing_timeout=200)
        conn, stream = _upgrade(server, options)
        try:
            websocket.await_upgrade(conn, stream, T)
            websocket.send(conn, stream, Close(1000, "bye"))
            down = mailbox.current().receive(GunDown, T)
            assert isinstance(down.reason, ClosingTimeout)
            assert down.killed_streams == (stream,)
        finally:
            connection.close(conn)


def test_shutdown_sends_close_1001() -> None:
    with ScriptedServer([[Expect(), WsAccept(), Hold()]]) as server:
        conn, stream = _upgrade(server, websocket.options(closing_timeout=200))
        websocket.await_upgrade(conn, stream, T)
        connection.shutdown(conn)
        assert _close_code_sent(server) == 1001
        assert mailbox.current().receive(Down, T).reason == "normal"


def test_owner_death_sends_close_1001() -> None:
    with ScriptedServer([[Expect(), WsAccept(), Hold()]]) as server:
        box: dict[str, connection.Connection] = {}

        def owner() -> None:
            conn, stream = _upgrade(server, websocket.options(closing_timeout=200))
            websocket.await_upgrade(conn, stream, T)
            box["conn"] = conn

        thread = threading.Thread(target=owner)
        thread.start()
        thread.join(5)
        assert _close_code_sent(server) == 1001
        assert box["conn"].finished.wait(5)
        assert box["conn"].exit_reason == Shutdown("owner_down")


def test_an_oversized_message_fails_with_1009() -> None:
    big = frame(BINARY, b"z" * 5000)
    with ScriptedServer([[Expect(), WsAccept(), Send(big), Hold()]]) as server:
        conn, stream = _upgrade(server, websocket.options(max_message_size=1000))
        try:
            websocket.await_upgrade(conn, stream, T)
            with pytest.raises(MessageTooBig):
                websocket.receive(conn, stream, T)
            assert _close_code_sent(server) == 1009
            assert isinstance(mailbox.current().receive(GunDown, T).reason, MessageTooBig)
        finally:
            connection.close(conn)


def test_invalid_utf8_fails_with_1007() -> None:
    bad = frame(TEXT, b"ok \xff\xfe")
    with ScriptedServer([[Expect(), WsAccept(), Send(bad), Hold()]]) as server:
        conn, stream = _upgrade(server)
        try:
            websocket.await_upgrade(conn, stream, T)
            with pytest.raises(RemoteProtocolError, match=r"(?i)utf-8"):
                websocket.receive(conn, stream, T)
            assert _close_code_sent(server) == 1007
        finally:
            connection.close(conn)


def test_frames_that_came_with_the_101_are_delivered() -> None:
    with ScriptedServer([[Expect(), WsAccept(), Send(frame(TEXT, b"early")), Hold()]]) as server:
        conn, stream = _upgrade(server)
        try:
            websocket.await_upgrade(conn, stream, T)
            assert websocket.receive(conn, stream, T) == Text("early")
        finally:
            connection.close(conn)


@pytest.mark.parametrize("split_at", [1, 12, 40])
def test_a_101_read_in_pieces_upgrades_and_keeps_the_frames_after_it(split_at: int) -> None:
    script = [Expect(), WsAccept(split_at=split_at), Send(frame(TEXT, b"early")), Hold()]
    with ScriptedServer([script]) as server:
        conn, stream = _upgrade(server)
        try:
            upgrade = websocket.await_upgrade(conn, stream, T)
            assert ("upgrade", "websocket") in upgrade.headers
            assert websocket.receive(conn, stream, T) == Text("early")
        finally:
            connection.close(conn)


def test_a_server_close_is_answered_and_reported(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(retry=0))
    try:
        connection.await_up(conn, T)
        stream = websocket.upgrade(conn, "/ws/close?code=4000&reason=done")
        websocket.await_upgrade(conn, stream, T)
        assert websocket.receive(conn, stream, T) == Close(4000, "done")
        assert mailbox.current().receive(GunDown, T).reason == "normal"
        assert mailbox.current().receive(Down, T).reason == "normal"
    finally:
        connection.close(conn)


def test_flow_control_stops_reading_at_zero_credits(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(retry=0))
    try:
        connection.await_up(conn, T)
        stream = websocket.upgrade(
            conn, "/ws/push?n=10&size=200000", options=websocket.options(flow=2)
        )
        websocket.await_upgrade(conn, stream, T)
        for _ in range(2):
            assert isinstance(websocket.receive(conn, stream, T), Text)
        time.sleep(0.3)
        held = [m for m in mailbox.current().messages() if isinstance(m, GunWs)]
        assert len(held) <= 1, "reading stops once the credits are spent"
        connection.update_flow(conn, stream, 20)
        for _ in range(8):
            assert isinstance(websocket.receive(conn, stream, T), Text)
    finally:
        connection.close(conn)


def test_errors_reach_the_owner_as_gun_error_before_gun_down() -> None:
    bad = frame(TEXT, b"\xff")
    with ScriptedServer([[Expect(), WsAccept(), Send(bad), Hold()]]) as server:
        conn, stream = _upgrade(server)
        try:
            websocket.await_upgrade(conn, stream, T)
            mailbox.current().receive(GunDown, T)
            kinds = [type(m) for m in mailbox.current().messages() if m.conn is conn]
            assert kinds[0] is GunError
        finally:
            connection.close(conn)


def _close_code_sent(server: ScriptedServer) -> int | None:
    """The status code of the first (masked) close frame the client sent, if any."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        data = server.received[0] if server.received else b""
        start = data.find(b"\r\n\r\n")
        rest = data[start + 4 :] if start >= 0 else b""
        while len(rest) >= 6:
            opcode, length = rest[0] & 0x0F, rest[1] & 0x7F
            header = 2 + {126: 2, 127: 8}.get(length, 0)
            if length >= 126:
                length = int.from_bytes(rest[2:header], "big")
            mask = rest[header : header + 4]
            payload = bytes(
                b ^ mask[i % 4] for i, b in enumerate(rest[header + 4 : header + 4 + length])
            )
            if opcode == CLOSE and len(payload) >= 2:
                return int.from_bytes(payload[:2], "big")
            rest = rest[header + 4 + length :]
        time.sleep(0.02)
    return None

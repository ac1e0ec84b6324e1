"""Gun parity: behaviours a program ported from Gun relies on, over real sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from peers import stdlib_server
from polling import wait_until
from recording import RecordingActor

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    ConnectionDown,
    RemoteProtocolError,
    StreamError,
)
from gluegun_actors.events import (
    Down,
    GunData,
    GunDown,
    GunError,
    GunResponse,
    GunUp,
    GunWs,
)
from gluegun_actors.message import Close, Text
from gluegun_actors.testing import Close as CloseStep
from gluegun_actors.testing import Expect, Hold, Send, Sleep, WsAccept, pattern_bytes

T = 5000

CLOSING_HEAD = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@pytest.fixture
def owner() -> Iterator[mailbox.Mailbox]:
    yield mailbox.current()


# -- a connection that will close takes no more requests ----------------------------------


def test_a_request_after_a_closing_response_head_goes_to_the_next_connection(
    scripted_server,
) -> None:
    server = scripted_server(
        [
            [Expect(), Send(CLOSING_HEAD), Sleep(300), Send(b"hello"), CloseStep()],
            [Expect(), Send(OK), Hold()],
        ]
    )
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=1))
    try:
        first = http.get(conn, "/first")
        assert http.await_response(conn, first, T).status == 200  # connection: close known
        second = http.get(conn, "/second")
        assert http.await_body(conn, first, T) == b"hello"
        assert http.await_body(conn, second, T) == b"ok"
        assert wait_until(lambda: len(server.received) == 2)
        assert b"/second" not in server.received[0]  # never written to the dying connection
        assert b"GET /second " in server.received[1]
        down = mailbox.current().receive(GunDown, 0)
        assert (down.reason, down.killed_streams) == ("normal", ())
    finally:
        connection.close(conn)


def test_with_retry_0_a_request_after_a_closing_head_fails_at_once_unsent(scripted_server):
    server = scripted_server(
        [[Expect(), Send(CLOSING_HEAD), Sleep(300), Send(b"hello"), CloseStep()]]
    )
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=0))
    try:
        first = http.get(conn, "/first")
        http.await_response(conn, first, T)
        second = http.get(conn, "/second")
        with pytest.raises(StreamError, match=r"retry is 0.*not sent"):
            http.await_response(conn, second, 1000)  # well before the first body ends
        assert http.await_body(conn, first, T) == b"hello"
        assert b"/second" not in b"".join(server.received)
    finally:
        connection.close(conn)


def test_a_request_written_before_the_close_was_known_fails_and_is_not_resent(
    scripted_server,
) -> None:
    server = scripted_server(
        [
            [Expect(), Expect(), Send(CLOSING_HEAD + b"hello"), CloseStep()],
            [Hold()],
        ]
    )
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=1))
    try:
        first = http.get(conn, "/first")
        second = http.get(conn, "/second")  # pipelined: on the wire before any answer
        assert http.await_body(conn, first, T) == b"hello"
        with pytest.raises(StreamError, match=r"after this request was sent.*not sent again"):
            http.await_response(conn, second, T)
        connection.await_up(conn, T)  # the next connection...
        assert wait_until(lambda: len(server.received) == 2)
        assert b"/second" not in server.received[1]  # ...never sees it
    finally:
        connection.close(conn)


def test_a_real_server_that_closes_gets_the_next_request_on_a_new_connection() -> None:
    with stdlib_server() as server:
        conn = connection.open("127.0.0.1", server.server_port, connection.options(retry=1))
        try:
            slow = http.get(conn, "/slow-close")
            assert http.await_response(conn, slow, T).status == 200
            after = http.get(conn, "/")
            assert http.await_body(conn, slow, T) == b"later"
            assert http.await_body(conn, after, T) == b"hello from gluegun_actors"
            assert server.paths == ["/slow-close", "/"]
        finally:
            connection.close(conn)


def test_a_real_server_that_closes_with_retry_0_fails_the_next_request_unsent() -> None:
    with stdlib_server() as server:
        conn = connection.open("127.0.0.1", server.server_port, connection.options(retry=0))
        try:
            slow = http.get(conn, "/slow-close")
            http.await_response(conn, slow, T)
            after = http.get(conn, "/")
            with pytest.raises(StreamError, match=r"retry is 0.*not sent"):
                http.await_response(conn, after, T)
            assert http.await_body(conn, slow, T) == b"later"
            assert server.paths == ["/slow-close"]
        finally:
            connection.close(conn)


# -- a clean WebSocket shutdown ends its stream cleanly -----------------------------------


def test_a_websocket_shut_down_cleanly_gets_no_stream_error(embedded_server, owner) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    connection.await_up(conn, T)
    stream = websocket.upgrade(conn, "/ws")
    websocket.await_upgrade(conn, stream, T)
    connection.shutdown(conn)
    down = owner.receive(Down, T)
    assert down.reason == "normal"
    assert [m for m in owner.messages() if isinstance(m, GunError)] == []
    closes = [m.frame for m in owner.messages() if isinstance(m, GunWs)]
    assert closes == [Close(1001, "going away")]  # the peer's echo of ours


# -- replies go to reply_to ---------------------------------------------------------------


def test_a_workers_request_replies_to_the_worker_not_the_owner(embedded_server, owner) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        connection.await_up(conn, T)
        result: dict[str, Any] = {}

        def worker() -> None:
            stream = http.get(conn, "/")
            result["body"] = http.await_body(conn, stream, T)
            result["left"] = mailbox.current().messages()

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(10)
        assert result["body"] == b"hello from gluegun_actors"
        assert result["left"] == []
        assert [m for m in owner.messages() if hasattr(m, "stream")] == []
    finally:
        connection.close(conn)


def test_reply_to_sends_a_streams_messages_to_another_mailbox(embedded_server, owner) -> None:
    elsewhere = mailbox.Mailbox("elsewhere")
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        stream = http.get(conn, "/", reply_to=elsewhere)
        assert http.await_body(conn, stream, T) == b"hello from gluegun_actors"
        assert connection.await_up(conn, T) is connection.Protocol.HTTP1  # GunUp: the owner
        assert [m for m in owner.messages() if hasattr(m, "stream")] == []
        assert len(elsewhere) == 0  # await_body took the stream's messages there
    finally:
        connection.close(conn)


def test_four_workers_share_a_connection_and_nothing_crosses_over(embedded_server, owner) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    connection.await_up(conn, T)
    per_worker = 250
    results: dict[int, list[bytes]] = {}
    strays: dict[int, list[object]] = {}

    def worker(index: int) -> None:
        bodies = []
        for n in range(per_worker):
            stream = http.post(conn, "/echo", [], f"{index}:{n}")
            bodies.append(http.await_body(conn, stream, T))
        results[index] = bodies
        strays[index] = mailbox.current().messages()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(results) == [0, 1, 2, 3]
        for index, bodies in results.items():
            assert bodies == [f"{index}:{n}".encode() for n in range(per_worker)]
            assert strays[index] == []
        assert [m for m in owner.messages() if hasattr(m, "stream")] == []
    finally:
        connection.close(conn)


def test_a_request_made_inside_an_actor_replies_to_that_actor(embedded_server, owner) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)

    class Requester(RecordingActor):
        def on_receive(self, message: Any) -> Any:
            if message == "request":
                return http.get(conn, "/")
            return super().on_receive(message)

    actor = Requester.start()
    try:
        stream = actor.ask("request", timeout=5)
        assert stream.reply_to == actor
        assert wait_until(
            lambda: any(isinstance(m, GunData) and m.is_fin for m in actor.ask("messages"))
        )
        assert next(type(m) for m in actor.ask("messages")) is GunResponse
        with pytest.raises(BadStateError, match="reply_to"):
            http.await_body(conn, stream, 100)
        assert [m for m in owner.messages() if hasattr(m, "stream")] == []
        assert isinstance(owner.receive(GunUp, T), GunUp)
    finally:
        connection.close(conn)
        actor.stop()


def test_a_reply_to_waiting_on_a_stream_learns_that_the_connection_stopped(owner) -> None:
    closed_port = _closed_port()
    conn = connection.open("127.0.0.1", closed_port, connection.options(retry=0))
    elsewhere = mailbox.Mailbox("elsewhere")
    stream = http.get(conn, "/", reply_to=elsewhere)  # queued: the connect will fail
    with pytest.raises(ConnectionDown):
        http.await_response(conn, stream, T)
    assert wait_until(lambda: any(isinstance(m, Down) for m in elsewhere.messages()))
    assert isinstance(owner.receive(Down, T), Down)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- await_body as Gun's ------------------------------------------------------------------


def test_await_body_waits_as_long_as_no_gap_exceeds_the_timeout(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        # 8 chunks 100 ms apart: 700 ms in all, never 300 ms of silence.
        stream = http.get(conn, "/stream?chunks=8&size=4&delay_ms=100")
        assert http.await_body(conn, stream, 300) == pattern_bytes(4) * 8
    finally:
        connection.close(conn)


def test_await_body_gives_up_after_a_gap_and_gives_everything_back(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        stream = http.get(conn, "/stream?chunks=3&size=4&delay_ms=600")
        with pytest.raises(AwaitTimeout, match="of silence"):
            http.await_body(conn, stream, 300)
        assert http.await_body(conn, stream, 2000) == pattern_bytes(4) * 3  # nothing lost
    finally:
        connection.close(conn)


def test_await_body_and_trailers_returns_the_trailers(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        stream = http.get(conn, "/trailers", [("te", "trailers")])
        body, trailers = http.await_body_and_trailers(conn, stream, T)
        assert body == b"chunk0chunk1chunk2"
        assert trailers == (("x-checksum", "18"),)
        plain = http.get(conn, "/")
        assert http.await_body_and_trailers(conn, plain, T) == (
            b"hello from gluegun_actors",
            (),
        )
    finally:
        connection.close(conn)


# -- errors Gun reports -------------------------------------------------------------------


def test_cancel_and_update_flow_on_an_unknown_stream_report_badstate(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        stream = http.get(conn, "/")
        http.await_body(conn, stream, T)  # finished: the connection forgets it
        http.cancel(conn, stream)
        with pytest.raises(BadStateError, match="cannot be found"):
            http.await_next(conn, stream, T)
        connection.update_flow(conn, stream, 5)
        with pytest.raises(BadStateError, match="cannot be found"):
            http.await_next(conn, stream, T)
    finally:
        connection.close(conn)


def test_data_from_the_server_with_no_request_open_is_a_connection_gun_error(
    scripted_server, owner
) -> None:
    server = scripted_server([[Sleep(100), Send(b"HTTP/1.1 200 OK\r\n\r\n"), Hold()]])
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=0))
    try:
        connection.await_up(conn, T)
        error = owner.receive(GunError, T)
        assert error.stream is None
        assert isinstance(error.reason, RemoteProtocolError)
        assert "no request awaited" in str(error.reason)
        down = owner.receive(GunDown, T)
        assert down.reason is error.reason and down.killed_streams == ()
    finally:
        connection.close(conn)


# -- stream_info and info -----------------------------------------------------------------


def test_stream_info_follows_a_request_through_its_life(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        slow = http.get(conn, "/delay?ms=300")
        info = connection.stream_info(conn, slow)
        assert info is not None
        assert (info.ref, info.reply_to, info.protocol) == (
            slow,
            mailbox.current(),
            connection.Protocol.HTTP1,
        )
        assert info.state in ("waiting", "running")  # (before or after GunUp)
        connection.await_up(conn, T)
        assert connection.stream_info(conn, slow).state == "running"  # type: ignore[union-attr]
        http.cancel(conn, slow)
        assert connection.stream_info(conn, slow).state == "stopping"  # type: ignore[union-attr]
        done = http.get(conn, "/")
        http.await_body(conn, done, T)
        assert connection.stream_info(conn, done) is None
    finally:
        connection.close(conn)


def test_stream_info_says_waiting_while_the_connection_is_down() -> None:
    conn = connection.open(
        "127.0.0.1", _closed_port(), connection.options(retry=3, retry_timeout=60_000)
    )
    try:
        stream = http.get(conn, "/")
        assert wait_until(
            lambda: connection.info(conn).state_name == "not_connected"
        )  # waiting to retry
        info = connection.stream_info(conn, stream)
        assert info is not None and info.state == "waiting"
        assert connection.info(conn).queued_commands == 1
    finally:
        connection.close(conn)


def test_stream_info_of_a_websocket_before_and_after_the_upgrade(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        stream = websocket.upgrade(conn, "/ws")
        before = connection.stream_info(conn, stream)
        assert before is not None and before.protocol is connection.Protocol.HTTP1
        websocket.await_upgrade(conn, stream, T)
        after = connection.stream_info(conn, stream)
        assert after is not None and after.protocol is connection.Protocol.WS
        assert after.state == "running"
        assert connection.info(conn).protocol is connection.Protocol.WS
    finally:
        connection.close(conn)


# -- keepalive: after silence ---------------------------------------------------------------


def _frame(text: bytes) -> bytes:
    return bytes((0x81, len(text))) + text  # an unmasked text frame, as a server sends


def _client_pings(data: bytes) -> int:
    """Ping frames a client sent after the handshake (masked, so 0x89 0x80.. headers)."""
    head_end = data.find(b"\r\n\r\n") + 4
    frames, pos, pings = data[head_end:], 0, 0
    while pos + 6 <= len(frames):
        opcode, length = frames[pos] & 0x0F, frames[pos + 1] & 0x7F
        pings += opcode == 0x9
        pos += 6 + length
    return pings


def test_a_websocket_keepalive_pings_only_after_silence(scripted_server, owner) -> None:
    talk: list[Any] = []
    for n in range(6):  # a message every 100 ms for 600 ms: never 250 ms of silence
        talk += [Send(_frame(b"m%d" % n)), Sleep(100)]
    server = scripted_server([[Expect(), WsAccept(), *talk, Hold()]])
    conn = connection.open("127.0.0.1", server.port, connection.options(keepalive=250))
    try:
        stream = websocket.upgrade(conn, "/")
        websocket.await_upgrade(conn, stream, T)
        for n in range(6):
            assert websocket.receive(conn, stream, T) == Text(f"m{n}")
        assert _client_pings(server.received[0]) == 0  # the peer never went quiet
        assert wait_until(lambda: _client_pings(server.received[0]) >= 1)  # now it has
    finally:
        connection.close(conn)


def test_an_idle_http_connection_gets_an_empty_line_with_http_keepalive(scripted_server):
    server = scripted_server([[Expect(), Send(OK), Hold()]])
    conn = connection.open(
        "127.0.0.1", server.port, connection.options(http_keepalive=100, retry=0)
    )
    try:
        stream = http.get(conn, "/")
        assert http.await_body(conn, stream, T) == b"ok"
        assert wait_until(lambda: server.received and server.received[0].endswith(b"\r\n" * 4))
        head, _, after = server.received[0].partition(b"\r\n\r\n")
        assert head.startswith(b"GET / HTTP/1.1")
        assert after and set(after.split(b"\r\n")) == {b""}  # only empty lines since
    finally:
        connection.close(conn)


def test_without_http_keepalive_an_idle_connection_stays_quiet(scripted_server) -> None:
    server = scripted_server([[Expect(), Send(OK), Hold()]])
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=0))
    try:
        stream = http.get(conn, "/")
        http.await_body(conn, stream, T)
        assert not wait_until(lambda: not server.received[0].endswith(b"\r\n\r\n"), 0.3)
    finally:
        connection.close(conn)


# -- transport and connect timeouts -------------------------------------------------------


def test_port_443_means_tls_unless_the_transport_is_given() -> None:
    assert connection.options().transport_for(443) == "tls"
    assert connection.options().transport_for(8443) == "tcp"
    assert connection.options(transport="tcp").transport_for(443) == "tcp"
    assert connection.options(transport="tls").transport_for(80) == "tls"


def test_a_silent_tls_peer_runs_out_of_the_tls_handshake_timeout(scripted_server, owner):
    server = scripted_server([[Hold()]])
    options = connection.options(transport="tls", tls_handshake_timeout=200, retry=0)
    conn = connection.open("127.0.0.1", server.port, options)
    down = owner.receive(Down, T)
    assert down.conn is conn
    assert isinstance(down.reason, TimeoutError)
    assert "tls_handshake_timeout" in str(down.reason)


# -- the caller, inside an actor ----------------------------------------------------------


def test_a_connection_opened_inside_an_actor_is_owned_by_that_actor(embedded_server) -> None:
    class Opener(RecordingActor):
        def on_receive(self, message: Any) -> Any:
            if message == "open":
                return connection.open("127.0.0.1", embedded_server.port)
            return super().on_receive(message)

    actor = Opener.start()
    try:
        conn = actor.ask("open", timeout=5)
        assert wait_until(lambda: any(isinstance(m, GunUp) for m in actor.ask("messages")))
        assert connection.info(conn).owner == actor
        connection.close(conn)
    finally:
        actor.stop()


def test_the_socket_api_works_inside_an_actor(embedded_server) -> None:
    class Echo(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            with websocket.connect(host="127.0.0.1", port=embedded_server.port, path="/ws") as s:
                websocket.send_text(s, message)
                return websocket.receive_app_frame(s)

    actor = Echo.start()
    try:
        assert actor.ask("from an actor", timeout=10) == Text("from an actor")
    finally:
        actor.stop()

"""Peers that misbehave, played byte for byte by a scripted raw-TCP server."""

from __future__ import annotations

import pytest

from gluegun_actors import connection, http, mailbox
from gluegun_actors.errors import AwaitTimeout, RemoteProtocolError, StreamError
from gluegun_actors.events import GunDown, GunError, GunResponse, GunUp
from gluegun_actors.testing import Close, Expect, Hold, ScriptedServer, Send, Sleep

T = 5000
OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"


def _open(server: ScriptedServer, **options: object) -> connection.Connection:
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=0, **options))
    connection.await_up(conn, T)
    return conn


def _received(conn: connection.Connection, kind: type) -> list[object]:
    return [m for m in mailbox.current().messages() if isinstance(m, kind) and m.conn is conn]


def test_close_mid_body_errors_the_stream_and_reports_down() -> None:
    with ScriptedServer([[Expect(), Send(OK_HEAD + b"12345"), Close()]]) as server:
        conn = _open(server)
        try:
            stream = http.get(conn, "/")
            assert http.await_response(conn, stream, T).status == 200
            with pytest.raises(StreamError) as caught:
                http.await_body(conn, stream, T)
            assert caught.value.stream == stream
            down = mailbox.current().receive(GunDown, T)
            assert down.killed_streams == (stream,)
        finally:
            connection.close(conn)


def test_close_mid_headers_errors_the_stream() -> None:
    with ScriptedServer([[Expect(), Send(b"HTTP/1.1 200 OK\r\ncontent-le"), Close()]]) as server:
        conn = _open(server)
        try:
            stream = http.get(conn, "/")
            with pytest.raises(StreamError):
                http.await_response(conn, stream, T)
            down = mailbox.current().receive(GunDown, T)
            assert down.killed_streams == (stream,)
            assert down.reason == "closed"
        finally:
            connection.close(conn)


def test_silent_peer_times_out_and_loses_nothing() -> None:
    script = [Expect(), Sleep(400), Send(OK_HEAD + b"0123456789"), Hold()]
    with ScriptedServer([script]) as server:
        conn = _open(server)
        try:
            stream = http.get(conn, "/")
            with pytest.raises(AwaitTimeout):
                http.await_response(conn, stream, 100)
            response = http.await_response(conn, stream, T)
            assert response.status == 200
            assert http.await_body(conn, stream, T) == b"0123456789"
        finally:
            connection.close(conn)


def test_timeout_of_a_body_gives_back_what_it_took() -> None:
    script = [Expect(), Send(OK_HEAD + b"01234"), Sleep(400), Send(b"56789"), Hold()]
    with ScriptedServer([script]) as server:
        conn = _open(server)
        try:
            stream = http.get(conn, "/")
            with pytest.raises(AwaitTimeout):
                http.await_body(conn, stream, 150)
            kinds = [type(m).__name__ for m in mailbox.current().messages() if m.conn is conn]
            assert kinds[-2:] == ["GunResponse", "GunData"]
            assert http.await_body(conn, stream, T) == b"0123456789"
        finally:
            connection.close(conn)


def test_connection_close_fails_the_pipelined_requests_behind_it() -> None:
    first = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    with ScriptedServer([[Expect(), Sleep(100), Send(first), Close()], [Hold()]]) as server:
        conn = _open(server)
        try:
            streams = [http.get(conn, "/"), http.get(conn, "/2"), http.get(conn, "/3")]
            assert http.await_body(conn, streams[0], T) == b"ok"
            for stream in streams[1:]:
                with pytest.raises(StreamError):
                    http.await_response(conn, stream, T)
            down = mailbox.current().receive(GunDown, T)
            assert down.killed_streams == tuple(streams[1:])
        finally:
            connection.close(conn)


def test_oversized_header_block_is_a_connection_error() -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"x-filler: " + b"a" * 2000 + b"\r\n"
    with ScriptedServer([[Expect(), Send(head * 10), Hold()]]) as server:
        conn = _open(server, max_header_block_size=4096)
        try:
            stream = http.get(conn, "/")
            with pytest.raises(StreamError):
                http.await_response(conn, stream, T)
            down = mailbox.current().receive(GunDown, T)
            assert isinstance(down.reason, RemoteProtocolError)
            assert down.killed_streams == (stream,)
        finally:
            connection.close(conn)


def test_bad_status_line_is_a_remote_protocol_error() -> None:
    with ScriptedServer([[Expect(), Send(b"HTTX/9 lol\r\n\r\n"), Hold()]]) as server:
        conn = _open(server)
        try:
            stream = http.get(conn, "/")
            with pytest.raises(StreamError) as caught:
                http.await_response(conn, stream, T)
            assert isinstance(caught.value.reason, RemoteProtocolError)
            assert isinstance(mailbox.current().receive(GunDown, T).reason, RemoteProtocolError)
        finally:
            connection.close(conn)


def test_errors_come_before_down_and_up_stays_first() -> None:
    with ScriptedServer([[Expect(), Close()]]) as server:
        conn = _open(server)
        try:
            stream = http.get(conn, "/")
            mailbox.current().receive(GunDown, T)
            mine = [m for m in mailbox.current().messages() if getattr(m, "conn", None) is conn]
            assert [type(m) for m in mine][:1] == [GunError]
            assert mine[0].stream == stream
            assert not _received(conn, GunUp)  # await_up took it
            assert not _received(conn, GunResponse)
        finally:
            connection.close(conn)

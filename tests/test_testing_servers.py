"""The test servers themselves, checked with plain sockets, http.client and websockets.

None of gluegun_actors' own connection code is used here, so these tests say whether
the servers the rest of the suite relies on behave as documented.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from peers import uvicorn_server, websockets_server
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from gluegun_actors.testing import (
    Close,
    EmbeddedServer,
    Expect,
    Hold,
    Reset,
    ScriptedServer,
    Send,
    ServerState,
    Sleep,
    Step,
    WsAccept,
    pattern_bytes,
)

T = 5.0  # seconds: the longest any client here waits for something that should come
HELLO = b"hello from gluegun_actors"


# -- client helpers -----------------------------------------------------------------------


def raw_client(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=T)


def read_until(sock: socket.socket, done: Callable[[bytes], bool], limit: int = 1 << 22) -> bytes:
    """Read until `done(received)`; fails on EOF, on the socket timeout, or past `limit`."""
    data = b""
    while not done(data):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed early; got {data!r}"
        data += chunk
        assert len(data) <= limit
    return data


def read_to_eof(sock: socket.socket, limit: int = 1 << 22) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        assert len(data) <= limit
    return data


def chunked_response_done(data: bytes) -> bool:
    """A whole chunked response: the last chunk and the (possibly empty) trailer section."""
    head_end = data.find(b"\r\n\r\n")
    return head_end >= 0 and b"\r\n0\r\n" in data[head_end:] and data.endswith(b"\r\n\r\n")


class _Unclosable:
    """A file that ignores close(), so several HTTPResponse objects can share it."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        pass


class _SharedFile:
    def __init__(self, file: Any) -> None:
        self._file = _Unclosable(file)

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        return self._file


def read_responses(sock: socket.socket, n: int) -> list[tuple[int, bytes]]:
    """Parse `n` responses from one socket in order (pipelining), with http.client."""
    shared = _SharedFile(sock.makefile("rb"))
    out = []
    for _ in range(n):
        response = http.client.HTTPResponse(shared, method="GET")  # type: ignore[arg-type]
        response.begin()
        out.append((response.status, response.read()))
    return out


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=T)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


WS_KEY = base64.b64encode(b"0123456789abcdef").decode()


def raw_ws_handshake(sock: socket.socket, path: str) -> bytes:
    """Upgrade by hand (no extensions); return the bytes that came after the 101."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    data = read_until(sock, lambda d: b"\r\n\r\n" in d)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return rest


def server_threads(server: EmbeddedServer | ScriptedServer) -> list[str]:
    prefix = server.thread_name_prefix
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


@pytest.fixture
def ws_echo(embedded_server: EmbeddedServer) -> Iterator[ClientConnection]:
    with connect(embedded_server.ws_url("/echo"), open_timeout=T) as ws:
        yield ws


# -- EmbeddedServer: HTTP routes ----------------------------------------------------------


def test_root_says_hello(embedded_server: EmbeddedServer) -> None:
    assert get(embedded_server.port, "/") == (200, HELLO)


def test_head_sends_headers_without_body(embedded_server: EmbeddedServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", embedded_server.port, timeout=T)
    conn.request("HEAD", "/big?size=1000")
    response = conn.getresponse()
    assert (response.status, response.getheader("content-length"), response.read()) == (
        200,
        "1000",
        b"",
    )
    conn.request("GET", "/")  # nothing stray was left on the connection
    assert conn.getresponse().read() == HELLO
    conn.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_echo_returns_the_request_body(embedded_server: EmbeddedServer, method: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", embedded_server.port, timeout=T)
    conn.request(method, "/echo", body=b"ping pong")
    assert conn.getresponse().read() == b"ping pong"
    conn.close()


def test_echo_reads_a_chunked_request_body(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        assert read_responses(sock, 1) == [(200, b"abcde")]


def test_chunked_route_sends_n_chunks(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port) as sock:
        sock.sendall(b"GET /chunked?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = read_until(sock, chunked_response_done).partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"6\r\nchunk0\r\n6\r\nchunk1\r\n6\r\nchunk2\r\n0\r\n\r\n"


def test_trailers_come_when_the_request_accepts_them(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port) as sock:
        sock.sendall(b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        response = read_until(sock, chunked_response_done)
    assert response.endswith(b"\r\n0\r\nx-checksum: 18\r\n\r\n")


def test_trailers_are_left_out_without_te_trailers(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port) as sock:
        sock.sendall(b"GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_until(sock, chunked_response_done)
    assert response.endswith(b"chunk2\r\n0\r\n\r\n")
    assert b"x-checksum" not in response


def test_stream_sends_chunks_apart(embedded_server: EmbeddedServer) -> None:
    started = time.monotonic()
    status, body = get(embedded_server.port, "/stream?chunks=3&size=5&delay_ms=40")
    assert (status, body) == (200, pattern_bytes(5) * 3)
    assert time.monotonic() - started >= 0.08


@pytest.mark.parametrize("status", [204, 304])
def test_status_without_body(embedded_server: EmbeddedServer, status: int) -> None:
    with raw_client(embedded_server.port) as sock:
        sock.sendall(f"GET /status/{status} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_until(sock, lambda d: d.endswith(HELLO))
    first, _, second = data.partition(b"\r\n\r\n")
    assert first.startswith(f"HTTP/1.1 {status} ".encode())
    assert second.startswith(b"HTTP/1.1 200 ")  # no body bytes between the two


def test_status_404_says_not_found(embedded_server: EmbeddedServer) -> None:
    assert get(embedded_server.port, "/status/404") == (404, b"not found")


def test_unknown_route_is_not_found(embedded_server: EmbeddedServer) -> None:
    assert get(embedded_server.port, "/nowhere") == (404, b"not found")


def test_delay_answers_after_the_delay(embedded_server: EmbeddedServer) -> None:
    started = time.monotonic()
    assert get(embedded_server.port, "/delay?ms=60") == (200, b"delayed")
    assert time.monotonic() - started >= 0.06


def test_close_route_closes_after_the_response(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port) as sock:
        sock.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_to_eof(sock)
    assert b"connection: close" in response.lower()
    assert response.endswith(b"closing")


def test_headers_route_returns_request_headers_as_json(embedded_server: EmbeddedServer) -> None:
    status, body = get(embedded_server.port, "/headers", {"X-Custom": "Value"})
    assert status == 200
    assert json.loads(body)["x-custom"] == "Value"


def test_inform_sends_early_hints_before_the_response(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port) as sock:
        sock.sendall(b"GET /inform HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_until(sock, lambda d: d.endswith(b"informed"))
    inform, _, final = data.partition(b"\r\n\r\n")
    assert inform.startswith(b"HTTP/1.1 103 ")
    assert b"link: </style.css>; rel=preload; as=style" in inform
    assert final.startswith(b"HTTP/1.1 200 ")


def test_big_sends_n_pattern_bytes(embedded_server: EmbeddedServer) -> None:
    assert get(embedded_server.port, "/big?size=200000") == (200, pattern_bytes(200_000))


def test_bad_request_is_answered_400_and_closed(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port) as sock:
        sock.sendall(b"this is not http\r\n\r\n")
        response = read_to_eof(sock)
    assert response.startswith(b"HTTP/1.1 400 ")


def test_keep_alive_serves_requests_on_one_connection(embedded_server: EmbeddedServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", embedded_server.port, timeout=T)
    for _ in range(3):
        conn.request("GET", "/")
        assert conn.getresponse().read() == HELLO
    conn.close()
    assert embedded_server.connections_accepted == 1


def test_pipelined_requests_are_answered_in_order(embedded_server: EmbeddedServer) -> None:
    requests = b"".join(
        f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for path in ("/", "/chunked?n=1", "/status/404")
    )
    with raw_client(embedded_server.port) as sock:
        sock.sendall(requests)
        responses = read_responses(sock, 3)
    assert responses == [(200, HELLO), (200, b"chunk0"), (404, b"not found")]


def test_requests_records_method_and_target(embedded_server: EmbeddedServer) -> None:
    get(embedded_server.port, "/chunked?n=1")
    conn = http.client.HTTPConnection("127.0.0.1", embedded_server.port, timeout=T)
    conn.request("POST", "/echo", body=b"x")
    conn.getresponse().read()
    conn.close()
    assert embedded_server.requests == [("GET", "/chunked?n=1"), ("POST", "/echo")]


def test_client_vanishing_mid_request_leaves_server_serving(
    embedded_server: EmbeddedServer,
) -> None:
    with raw_client(embedded_server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        assert embedded_server.wait_live_connections(1, T)
    assert embedded_server.wait_live_connections(0, T)
    assert get(embedded_server.port, "/") == (200, HELLO)


# -- EmbeddedServer: WebSocket ------------------------------------------------------------


def test_ws_echoes_text(ws_echo: ClientConnection) -> None:
    ws_echo.send("hello")
    assert ws_echo.recv(timeout=T) == "hello"


def test_ws_echoes_binary(ws_echo: ClientConnection) -> None:
    ws_echo.send(b"\x00\x01\xff")
    assert ws_echo.recv(timeout=T) == b"\x00\x01\xff"


def test_ws_echoes_a_large_message_intact(ws_echo: ClientConnection) -> None:
    message = os.urandom(500_000)
    ws_echo.send(message)
    assert ws_echo.recv(timeout=T) == message


def test_ws_path_ws_echoes_too(embedded_server: EmbeddedServer) -> None:
    with connect(embedded_server.ws_url("/ws"), open_timeout=T) as ws:
        ws.send("on /ws")
        assert ws.recv(timeout=T) == "on /ws"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["superchat", "chat"], "superchat"), (["other", "chat"], "chat"), (["other"], None)],
)
def test_ws_chooses_the_first_offered_supported_subprotocol(
    embedded_server: EmbeddedServer, offered: list[Any], chosen: str | None
) -> None:
    with connect(embedded_server.ws_url("/ws"), subprotocols=offered, open_timeout=T) as ws:
        assert ws.subprotocol == chosen


def test_ws_close_route_sends_the_close_code(embedded_server: EmbeddedServer) -> None:
    url = embedded_server.ws_url("/ws/close?code=3333&reason=bye")
    with connect(url, open_timeout=T) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=T)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3333, "bye")


def test_ws_push_sends_n_messages(embedded_server: EmbeddedServer) -> None:
    with connect(embedded_server.ws_url("/ws/push?n=3&size=10"), open_timeout=T) as ws:
        received = [ws.recv(timeout=T) for _ in range(3)]
    assert received == [pattern_bytes(10).decode()] * 3


def test_ws_accepts_permessage_deflate_when_offered(ws_echo: ClientConnection) -> None:
    assert ws_echo.response is not None
    assert "permessage-deflate" in ws_echo.response.headers.get("Sec-WebSocket-Extensions", "")


def test_ws_uses_no_extension_when_none_is_offered(embedded_server: EmbeddedServer) -> None:
    with connect(embedded_server.ws_url("/ws"), compression=None, open_timeout=T) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


def test_ws_answers_pings(ws_echo: ClientConnection) -> None:
    assert ws_echo.ping(b"are you there").wait(T)


def test_ws_reject_route_refuses_the_upgrade(embedded_server: EmbeddedServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(embedded_server.ws_url("/ws/reject?status=403"), open_timeout=T)
    assert refused.value.response.status_code == 403


def test_ws_invalid_frame_gets_a_protocol_error_close(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port) as sock:
        raw_ws_handshake(sock, "/echo")
        sock.sendall(b"\x81\x02hi")  # unmasked: clients must mask
        data = read_to_eof(sock)
    assert data[0] == 0x88  # a close frame, then the server closed
    assert struct.unpack("!H", data[2:4])[0] == 1002


def test_ws_stop_sends_going_away(embedded_server: EmbeddedServer) -> None:
    with connect(embedded_server.ws_url("/ws"), open_timeout=T) as ws:
        assert embedded_server.wait_live_connections(1, T)
        embedded_server.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=T)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001


# -- EmbeddedServer: lifecycle ------------------------------------------------------------


def test_stop_closes_clients_and_leaves_no_thread() -> None:
    server = EmbeddedServer().start()
    with raw_client(server.port) as idle, connect(server.ws_url("/ws"), open_timeout=T):
        assert server.wait_live_connections(2, T)
        server.stop()
        assert idle.recv(1) == b""
    assert server_threads(server) == []
    assert (server.state, server.live_connections) == (ServerState.STOPPED, 0)


def test_kill_resets_every_client(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port) as sock:
        assert embedded_server.wait_live_connections(1, T)
        embedded_server.kill()
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    assert server_threads(embedded_server) == []


def test_kill_stops_listening(embedded_server: EmbeddedServer) -> None:
    embedded_server.kill()
    with pytest.raises(ConnectionRefusedError):
        raw_client(embedded_server.port)


def test_restart_listens_again_on_the_same_port(embedded_server: EmbeddedServer) -> None:
    port = embedded_server.port
    assert get(port, "/") == (200, HELLO)
    embedded_server.kill()
    embedded_server.restart()
    assert (embedded_server.port, get(port, "/")) == (port, (200, HELLO))
    assert embedded_server.connections_accepted == 2


def test_restart_after_a_graceful_stop_reuses_the_port(embedded_server: EmbeddedServer) -> None:
    port = embedded_server.port
    with raw_client(port) as sock:  # a server-side close leaves a TIME_WAIT behind
        assert embedded_server.wait_live_connections(1, T)
        embedded_server.stop()
        assert sock.recv(1) == b""
    embedded_server.restart()
    assert (embedded_server.port, get(port, "/")) == (port, (200, HELLO))


def test_live_connections_counts_open_clients(embedded_server: EmbeddedServer) -> None:
    with raw_client(embedded_server.port), raw_client(embedded_server.port) as second:
        assert embedded_server.wait_live_connections(2, T)
        second.close()
        assert embedded_server.wait_live_connections(1, T)


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not been started"):
        _ = EmbeddedServer().port


# -- ScriptedServer -----------------------------------------------------------------------


def test_scripted_expect_then_send_answers_a_request() -> None:
    answer = ScriptedServer.http_response(200, [("x-test", "1")], b"ok")
    with ScriptedServer([[Expect(), Send(answer), Close()]]) as server:
        with raw_client(server.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_to_eof(sock) == answer
        assert server.received == [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]


def test_scripted_expect_n_waits_for_that_many_bytes() -> None:
    script: list[Step] = [Expect(n=5), Send(b"got five"), Close()]
    with ScriptedServer([script]) as server, raw_client(server.port) as sock:
        sock.sendall(b"12")
        sock.settimeout(0.1)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(T)
        sock.sendall(b"345")
        assert read_to_eof(sock) == b"got five"


def test_scripted_close_sends_fin() -> None:
    with ScriptedServer([[Close()]]) as server, raw_client(server.port) as sock:
        assert sock.recv(1) == b""


def test_scripted_reset_sends_rst() -> None:
    # Expect first: a reset right after accept can reach a client still inside connect()
    with ScriptedServer([[Expect(b"go"), Reset()]]) as server, raw_client(server.port) as sock:
        sock.sendall(b"go")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)


def test_scripted_hold_keeps_the_connection_open_and_reads() -> None:
    with ScriptedServer([[Hold()]]) as server, raw_client(server.port) as sock:
        sock.sendall(b"anyone?")
        sock.settimeout(0.15)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert server.live_connections == 1
        assert server.received == [b"anyone?"]


def test_scripted_stop_ends_a_hold_and_joins_every_thread() -> None:
    server = ScriptedServer([[Hold()]]).start()
    with raw_client(server.port) as sock:
        assert server.wait_live_connections(1, T)
        server.stop()
        assert sock.recv(1) == b""
    assert server_threads(server) == []


def test_scripted_expect_times_out_and_closes() -> None:
    script: list[Step] = [Expect(), Send(b"never sent")]
    with ScriptedServer([script], step_timeout=0.1) as server, raw_client(server.port) as sock:
        assert read_to_eof(sock) == b""


def test_scripted_sleep_delays_the_next_step() -> None:
    with ScriptedServer([[Sleep(80), Send(b"late"), Close()]]) as server:
        started = time.monotonic()
        with raw_client(server.port) as sock:
            assert read_to_eof(sock) == b"late"
        assert time.monotonic() - started >= 0.08


def test_scripted_kth_connection_plays_kth_script_and_the_last_repeats() -> None:
    scripts: list[list[Step]] = [[Send(b"one"), Close()], [Send(b"two"), Close()]]
    with ScriptedServer(scripts) as server:
        answers = []
        for _ in range(3):
            with raw_client(server.port) as sock:
                answers.append(read_to_eof(sock))
    assert answers == [b"one", b"two", b"two"]


def test_scripted_received_is_kept_per_connection() -> None:
    with ScriptedServer([[Expect(b"!"), Close()]]) as server:
        for text in (b"first!", b"second!"):
            with raw_client(server.port) as sock:
                sock.sendall(text)
                read_to_eof(sock)
        assert server.received == [b"first!", b"second!"]


def test_scripted_wait_connections_sees_accepted_connections() -> None:
    with ScriptedServer([[Hold()]]) as server, raw_client(server.port), raw_client(server.port):
        assert server.wait_connections(2, T)
        assert not server.wait_connections(3, 0.05)


def test_scripted_ws_accept_completes_an_upgrade() -> None:
    frame = ScriptedServer.ws_frame(0x1, b"hi")
    close_reply = ScriptedServer.ws_frame(0x8, struct.pack("!H", 1000))
    client_close = Expect(n=8)  # header, mask and code of the client's close frame
    script: list[Step] = [
        Expect(),
        WsAccept(),
        Send(frame),
        client_close,
        Send(close_reply),
        Close(),
    ]
    with (
        ScriptedServer([script]) as server,
        connect(f"ws://127.0.0.1:{server.port}/", open_timeout=T) as ws,
    ):
        assert ws.recv(timeout=T) == "hi"


def test_terminal_step_must_be_last() -> None:
    with pytest.raises(ValueError, match="must be last"):
        ScriptedServer([[Close(), Send(b"x")]])


def test_http_response_adds_content_length() -> None:
    assert ScriptedServer.http_response(404, body=b"gone") == (
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\ngone"
    )


def test_http_response_keeps_given_framing() -> None:
    response = ScriptedServer.http_response(200, [("transfer-encoding", "chunked")])
    assert response == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


# -- third-party peers --------------------------------------------------------------------


def test_uvicorn_peer_says_hello(uvicorn_port: int) -> None:
    assert get(uvicorn_port, "/") == (200, HELLO)


def test_uvicorn_peer_echoes_a_chunked_body(uvicorn_port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", uvicorn_port, timeout=T)
    conn.request("POST", "/echo", body=iter([b"ab", b"cd"]))  # an iterable goes chunked
    assert conn.getresponse().read() == b"abcd"
    conn.close()


def test_uvicorn_peer_sends_chunked_route(uvicorn_port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", uvicorn_port, timeout=T)
    conn.request("GET", "/chunked?n=2")
    response = conn.getresponse()
    assert (response.getheader("transfer-encoding"), response.read()) == (
        "chunked",
        b"chunk0chunk1",
    )
    conn.close()


def test_uvicorn_peer_status_route(uvicorn_port: int) -> None:
    assert get(uvicorn_port, "/status/404") == (404, b"not found")


def test_uvicorn_peer_headers_route(uvicorn_port: int) -> None:
    status, body = get(uvicorn_port, "/headers", {"X-Custom": "Value"})
    assert (status, json.loads(body)["x-custom"]) == (200, "Value")


def test_uvicorn_peer_stops_cleanly() -> None:
    before = set(threading.enumerate())
    with uvicorn_server() as port:
        assert get(port, "/delay?ms=1") == (200, b"delayed")
    assert set(threading.enumerate()) <= before
    with pytest.raises(ConnectionRefusedError):
        raw_client(port)


def test_websockets_peer_echoes(websockets_port: int) -> None:
    with connect(f"ws://127.0.0.1:{websockets_port}/any", open_timeout=T) as ws:
        ws.send("echo me")
        assert ws.recv(timeout=T) == "echo me"


def test_websockets_peer_closes_with_3333(websockets_port: int) -> None:
    url = f"ws://127.0.0.1:{websockets_port}/close3333"
    with connect(url, open_timeout=T) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=T)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3333, "bye")


def test_websockets_peer_pings_first_on_ping_path(websockets_port: int) -> None:
    with raw_client(websockets_port) as sock:
        rest = raw_ws_handshake(sock, "/ping")
        frame = rest + read_until(sock, lambda d: len(rest + d) >= 4)
    assert frame[:4] == b"\x89\x02hi"


def test_websockets_factory_applies_options(
    websockets_server_factory: Callable[..., int],
) -> None:
    port = websockets_server_factory(subprotocols=["chat"], compression=None)
    offered = [Subprotocol("chat")]
    with connect(f"ws://127.0.0.1:{port}/", subprotocols=offered, open_timeout=T) as ws:
        assert ws.response is not None
        assert ws.subprotocol == "chat"
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


def test_websockets_peer_stops_cleanly() -> None:
    before = set(threading.enumerate())
    # No client keepalive: its thread would end on its own a moment after the close.
    with (
        websockets_server() as port,
        connect(f"ws://127.0.0.1:{port}/", open_timeout=T, ping_interval=None) as ws,
    ):
        ws.send(b"x")
        assert ws.recv(timeout=T) == b"x"
    assert set(threading.enumerate()) <= before
    with pytest.raises(ConnectionRefusedError):
        raw_client(port)

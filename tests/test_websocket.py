"""WebSocket on the connection actor, against the embedded server and `websockets`."""

from __future__ import annotations

import time

import pytest
from polling import wait_until

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    ConnectionDown,
    InvalidArgument,
    UnsupportedProtocol,
    UpgradeFailed,
    WebSocketClosed,
)
from gluegun_actors.events import Down, GunDown, GunUpgrade, GunWs
from gluegun_actors.message import Binary, Close, Ping, Pong, Text

T = 5000


@pytest.fixture(params=["embedded", "websockets"])
def ws_port(request: pytest.FixtureRequest) -> int:
    if request.param == "embedded":
        return int(request.getfixturevalue("embedded_server").port)
    return int(request.getfixturevalue("websockets_port"))


def _upgraded(
    port: int, path: str = "/echo", options: websocket.Options | None = None, **conn_opts
):
    conn = connection.open("127.0.0.1", port, connection.options(retry=0, **conn_opts))
    protocol = connection.await_up(conn, T)
    stream = websocket.upgrade_with_protocol(conn, protocol, path, [], options)
    return conn, stream, websocket.await_upgrade(conn, stream, T)


# -- the three Gluegun flows --------------------------------------------------------------


def test_socket_api_echo(ws_port: int) -> None:
    socket = websocket.connect(
        host="127.0.0.1", port=ws_port, path="/echo", options=websocket.options()
    )
    try:
        websocket.send_text(socket, "hello")
        assert websocket.receive_app_frame(socket) == Text("hello")
        websocket.close(socket)
        assert socket.connection.alive, "close(socket) sends a close frame only"
    finally:
        connection.close(socket.connection)


def test_with_socket_returns_the_callbacks_result_and_closes_everything(ws_port: int) -> None:
    seen: list[websocket.Socket] = []

    def callback(socket: websocket.Socket) -> object:
        seen.append(socket)
        websocket.send_text(socket, "hello")
        return websocket.receive_app_frame(socket)

    reply = websocket.with_socket(
        host="127.0.0.1", port=ws_port, path="/echo", options=websocket.options(), callback=callback
    )
    assert reply == Text("hello")
    assert not seen[0].connection.alive
    assert [m for m in mailbox.current().messages() if m.conn is seen[0].connection] == []


def test_with_socket_closes_when_the_callback_raises(ws_port: int) -> None:
    seen: list[websocket.Socket] = []

    def callback(socket: websocket.Socket) -> None:
        seen.append(socket)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        websocket.with_socket(host="127.0.0.1", port=ws_port, path="/echo", callback=callback)
    assert not seen[0].connection.alive


def test_socket_is_a_context_manager(ws_port: int) -> None:
    with websocket.connect(host="127.0.0.1", port=ws_port, path="/echo") as socket:
        websocket.send_binary(socket, b"\x00\x01")
        assert websocket.receive_app_frame(socket) == Binary(b"\x00\x01")
    assert not socket.connection.alive


def test_low_level_echo(ws_port: int) -> None:
    conn, stream, upgrade = _upgraded(ws_port)
    try:
        assert isinstance(upgrade, GunUpgrade) and upgrade.protocols[0] == "websocket"
        assert conn.protocol is connection.Protocol.WS
        websocket.send(conn, stream, Text("hello"))
        assert websocket.receive(conn, stream, T) == Text("hello")
    finally:
        connection.close(conn)


# -- frames ------------------------------------------------------------------------------


def test_a_list_of_frames_is_sent_in_order(ws_port: int) -> None:
    conn, stream, _ = _upgraded(ws_port)
    try:
        frames = [Text(f"m{i}") for i in range(50)] + [Binary(b"end")]
        websocket.send(conn, stream, frames)
        assert [websocket.receive(conn, stream, T) for _ in frames] == frames
    finally:
        connection.close(conn)


def test_one_mebibyte_message_round_trips(websockets_server_factory) -> None:
    port = websockets_server_factory(max_size=4 << 20)
    payload = bytes(range(256)) * 4096
    options = websocket.options(max_message_size=2 << 20)
    conn, stream, _ = _upgraded(port, options=options)
    try:
        websocket.send(conn, stream, Binary(payload))
        assert websocket.receive(conn, stream, T) == Binary(payload)
    finally:
        connection.close(conn)


def test_fragmented_messages_arrive_whole(embedded_server) -> None:
    conn, stream, _ = _upgraded(embedded_server.port, "/ws/push?n=3&size=200000")
    try:
        frames = [websocket.receive(conn, stream, T) for _ in range(3)]
        from gluegun_actors.testing import pattern_bytes

        assert frames == [Text(pattern_bytes(200000).decode())] * 3
    finally:
        connection.close(conn)


def test_a_fragmented_message_from_websockets_arrives_whole(websockets_port: int) -> None:
    conn, stream, _ = _upgraded(websockets_port, "/fragments")
    try:
        assert websocket.receive(conn, stream, T) == Text("fragmented")
    finally:
        connection.close(conn)


def test_subprotocol_is_negotiated(websockets_server_factory) -> None:
    port = websockets_server_factory(subprotocols=["superchat", "chat"])
    options = websocket.options(subprotocols=["chat"])
    socket = websocket.connect(host="127.0.0.1", port=port, path="/", options=options)
    try:
        assert socket.protocol == "chat"
    finally:
        connection.close(socket.connection)


def test_embedded_server_picks_the_first_offered_subprotocol(embedded_server) -> None:
    options = websocket.options(subprotocols=["superchat", "chat"])
    conn, _, upgrade = _upgraded(embedded_server.port, options=options)
    try:
        assert upgrade.protocols == ("websocket", "superchat")
    finally:
        connection.close(conn)


@pytest.mark.parametrize("compress", [True, False])
def test_compression_on_and_off(websockets_server_factory, compress: bool) -> None:
    port = websockets_server_factory(compression="deflate")
    conn, stream, upgrade = _upgraded(port, options=websocket.options(compress=compress))
    try:
        extensions = dict(upgrade.headers).get("sec-websocket-extensions", "")
        assert ("permessage-deflate" in extensions) is compress
        text = "compressible " * 5000
        websocket.send(conn, stream, Text(text))
        assert websocket.receive(conn, stream, T) == Text(text)
    finally:
        connection.close(conn)


def test_server_close_is_delivered_then_the_connection_goes_down(websockets_port: int) -> None:
    conn = connection.open("127.0.0.1", websockets_port, connection.options(retry=1))
    try:
        connection.await_up(conn, T)
        stream = websocket.upgrade(conn, "/close3333")
        websocket.await_upgrade(conn, stream, T)
        assert websocket.receive(conn, stream, T) == Close(3333, "bye")
        down = mailbox.current().receive(GunDown, T)
        assert (down.protocol, down.reason, down.killed_streams) == (
            connection.Protocol.WS,
            "normal",
            (stream,),
        )
        assert connection.await_up(conn, T) is connection.Protocol.HTTP1
        assert conn.protocol is connection.Protocol.HTTP1
        with pytest.raises(BadStateError, match="upgrade"):
            websocket.send(conn, stream, Text("too late"))
    finally:
        connection.close(conn)


def test_receive_app_frame_raises_on_peer_close_with_code_and_reason(embedded_server) -> None:
    socket = websocket.connect(
        host="127.0.0.1", port=embedded_server.port, path="/ws/close?code=3333&reason=bye"
    )
    try:
        with pytest.raises(WebSocketClosed) as caught:
            websocket.receive_app_frame(socket)
        assert (caught.value.code, caught.value.close_reason) == (3333, "bye")
    finally:
        connection.close(socket.connection)


def test_pings_are_answered_and_silenced_by_default(websockets_port: int) -> None:
    conn, stream, _ = _upgraded(websockets_port, "/ping")
    try:
        websocket.send(conn, stream, Text("after ping"))
        assert websocket.receive(conn, stream, T) == Text("after ping")
    finally:
        connection.close(conn)


def test_pings_reach_the_owner_without_silence_pings(websockets_port: int) -> None:
    options = websocket.options(silence_pings=False)
    conn, stream, _ = _upgraded(websockets_port, "/ping", options)
    try:
        assert websocket.receive(conn, stream, T) == Ping(b"hi")
        websocket.send(conn, stream, Ping(b"me"))
        assert websocket.receive(conn, stream, T) == Pong(b"me")
    finally:
        connection.close(conn)


def test_receive_app_frame_skips_control_frames(websockets_port: int) -> None:
    options = websocket.options(silence_pings=False)
    with websocket.connect(
        host="127.0.0.1", port=websockets_port, path="/ping", options=options
    ) as s:
        websocket.send_text(s, "x")
        assert websocket.receive_app_frame(s) == Text("x")


def test_keepalive_pings_keep_a_live_peer_up(embedded_server) -> None:
    options = websocket.options(keepalive=50, pong_timeout=500)
    conn, stream, _ = _upgraded(embedded_server.port, options=options)
    try:
        time.sleep(0.4)
        websocket.send(conn, stream, Text("still here"))
        assert websocket.receive(conn, stream, T) == Text("still here")
        assert [m for m in mailbox.current().messages() if isinstance(m, GunDown)] == []
    finally:
        connection.close(conn)


# -- ordering and state rules ---------------------------------------------------------------


def test_receive_while_the_upgrade_ack_waits_says_to_await_upgrade(embedded_server) -> None:
    other = connection.open("127.0.0.1", embedded_server.port, connection.options(retry=0))
    try:
        protocol = connection.await_up(other, T)
        stream = websocket.upgrade_with_protocol(other, protocol, "/echo", [])
        # Wait until the acknowledgement has arrived without taking it.
        assert wait_until(
            lambda: any(isinstance(m, GunUpgrade) for m in mailbox.current().messages())
        )
        with pytest.raises(BadStateError, match="await_upgrade"):
            websocket.receive(other, stream, T)
        assert any(isinstance(m, GunUpgrade) for m in mailbox.current().messages())
        assert websocket.await_upgrade(other, stream, T).stream == stream
    finally:
        connection.close(other)


def test_upgrade_over_http2_is_refused_before_anything_is_sent(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(retry=0))
    try:
        connection.await_up(conn, T)
        with pytest.raises(UnsupportedProtocol):
            websocket.upgrade_with_protocol(conn, connection.Protocol.HTTP2, "/echo", [])
        assert embedded_server.requests == []
    finally:
        connection.close(conn)


def test_a_refused_upgrade_raises_with_status_headers_and_body(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(retry=0))
    try:
        connection.await_up(conn, T)
        stream = websocket.upgrade(conn, "/ws/reject?status=403")
        with pytest.raises(UpgradeFailed) as caught:
            websocket.await_upgrade(conn, stream, T)
        assert caught.value.status == 403
        assert isinstance(caught.value.headers, tuple)
        assert isinstance(caught.value.body, bytes)
        assert conn.protocol is not connection.Protocol.WS
    finally:
        connection.close(conn)


def test_http_on_an_upgraded_connection_is_a_bad_state(embedded_server) -> None:
    conn, _, _ = _upgraded(embedded_server.port)
    try:
        with pytest.raises(BadStateError, match="WebSocket"):
            http.get(conn, "/")
    finally:
        connection.close(conn)


def test_websocket_send_on_a_plain_connection_is_a_bad_state(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(retry=0))
    try:
        connection.await_up(conn, T)
        stream = http.get(conn, "/")
        with pytest.raises(BadStateError):
            websocket.send(conn, stream, Text("no"))
        http.await_body(conn, stream, T)
    finally:
        connection.close(conn)


def test_wrong_frame_types_are_refused(embedded_server) -> None:
    conn, stream, _ = _upgraded(embedded_server.port)
    try:
        with pytest.raises(InvalidArgument):
            websocket.send(conn, stream, "text")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            websocket.send(conn, stream, Binary("not bytes"))  # type: ignore[arg-type]
    finally:
        connection.close(conn)


def test_receive_timeout_loses_nothing(embedded_server) -> None:
    conn, stream, _ = _upgraded(embedded_server.port)
    try:
        with pytest.raises(AwaitTimeout):
            websocket.receive(conn, stream, 50)
        websocket.send(conn, stream, Text("late"))
        assert websocket.receive(conn, stream, T) == Text("late")
    finally:
        connection.close(conn)


def test_owner_close_waits_for_the_peers_close(embedded_server) -> None:
    conn, stream, _ = _upgraded(embedded_server.port)
    try:
        websocket.send(conn, stream, Close(1000, "done"))
        assert websocket.receive(conn, stream, T) == Close(1000, "done")
        down = mailbox.current().receive(GunDown, T)
        assert down.reason == "normal"
        assert mailbox.current().receive(Down, T).conn is conn
    finally:
        connection.close(conn)


def test_shutdown_sends_1001_and_stops_without_gun_down(embedded_server) -> None:
    conn, _, _ = _upgraded(embedded_server.port, options=websocket.options(silence_pings=False))
    connection.shutdown(conn)
    down = mailbox.current().receive(Down, T)
    assert (down.conn, down.reason) == (conn, "normal")
    assert [m for m in mailbox.current().messages() if isinstance(m, GunDown)] == []
    closes = [m.frame for m in mailbox.current().messages() if isinstance(m, GunWs)]
    assert closes in ([], [Close(1001, "going away")])


def test_await_helpers_raise_at_once_when_the_actor_stops(embedded_server) -> None:
    conn, stream, _ = _upgraded(embedded_server.port)
    embedded_server.kill()
    started = time.monotonic()
    with pytest.raises(ConnectionDown):
        websocket.receive(conn, stream, 10_000)
    assert time.monotonic() - started < 3
    assert mailbox.current().receive(GunDown, T).killed_streams == (stream,)
    assert mailbox.current().receive(Down, T).conn is conn

"""The connection actor's life: up, owners, close, shutdown, info, leaks (Gun's connection)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka
import pytest
from polling import open_fds, wait_until
from recording import RecordingActor

from gluegun_actors import connection, http, mailbox
from gluegun_actors._connection.actor import ConnectionActor
from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    ConnectionTerminated,
    InvalidArgument,
    InvalidOptions,
    InvalidTimeout,
    StreamError,
)
from gluegun_actors.events import Down, GunData, GunDown, GunResponse, GunUp, Shutdown

T = 5000


def _gluegun_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if (t.name.startswith("gluegun") and not t.name.startswith("gluegun-testing"))
        or "ConnectionActor" in t.name
    ]


def test_open_sends_gun_up_to_the_calling_threads_mailbox(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        up = mailbox.current().receive(GunUp, T)
        assert up == GunUp(conn, connection.Protocol.HTTP1)
    finally:
        connection.close(conn)


def test_await_up_returns_the_protocol(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        assert connection.await_up(conn, connection.Milliseconds(T)) is connection.Protocol.HTTP1
    finally:
        connection.close(conn)


def test_close_leaves_no_thread_socket_or_registration(embedded_server) -> None:
    warm_up = connection.open("127.0.0.1", embedded_server.port)
    connection.await_up(warm_up, T)
    connection.close(warm_up)
    assert wait_until(lambda: embedded_server.live_connections == 0)
    before_fds = open_fds()
    conns = [connection.open("127.0.0.1", embedded_server.port) for _ in range(5)]
    for conn in conns:
        connection.await_up(conn, T)
    assert len(pykka.ActorRegistry.get_by_class(ConnectionActor)) == 5
    for conn in conns:
        connection.close(conn)
    assert pykka.ActorRegistry.get_by_class(ConnectionActor) == []
    assert all(not conn.alive for conn in conns)
    assert wait_until(lambda: _gluegun_threads() == [])
    assert wait_until(lambda: embedded_server.live_connections == 0)
    assert wait_until(lambda: open_fds() <= before_fds)
    assert len(mailbox.current()) == 0


def test_close_is_idempotent_and_commands_after_it_raise(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    connection.await_up(conn, T)
    connection.close(conn)
    connection.close(conn)
    with pytest.raises(ConnectionTerminated):
        http.get(conn, "/")
    with pytest.raises(ConnectionTerminated):
        connection.await_up(conn, 1000)
    with pytest.raises(ConnectionTerminated):
        connection.info(conn)


def test_close_sends_no_down(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    connection.await_up(conn, T)
    connection.close(conn)
    assert [m for m in mailbox.current().messages() if isinstance(m, Down)] == []


def test_info_describes_the_connection(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        connection.await_up(conn, T)
        info = connection.info(conn)
        assert isinstance(info, connection.ConnectionInfo)
        assert info.state_name == "connected"
        assert info.protocol is connection.Protocol.HTTP1
        assert (info.peer_ip, info.peer_port) == ("127.0.0.1", embedded_server.port)
        assert info.sock_ip == "127.0.0.1" and isinstance(info.sock_port, int)
        assert (info.origin_host, info.origin_port) == ("127.0.0.1", embedded_server.port)
        assert info.transport == "tcp"
        assert info.owner is mailbox.current()
        assert info.streams == () and info.queued_commands == 0
    finally:
        connection.close(conn)


def test_owner_thread_end_closes_the_connection(embedded_server) -> None:
    box: dict[str, connection.Connection] = {}

    def owner() -> None:
        box["conn"] = connection.open("127.0.0.1", embedded_server.port)
        connection.await_up(box["conn"], T)

    thread = threading.Thread(target=owner)
    thread.start()
    thread.join(5)
    assert wait_until(lambda: not box["conn"].alive)
    assert box["conn"].exit_reason == Shutdown("owner_down")
    assert wait_until(lambda: embedded_server.live_connections == 0)


def test_an_ended_owner_threads_connection_stops_on_a_worker(embedded_server) -> None:
    # The mailbox dies while its thread is torn down; the shutdown turn must not run there
    # (it is no longer a registered thread, and the last connection joins the reactor).
    stopped_on: list[threading.Thread] = []

    def record(name: str, fields: dict[str, Any]) -> None:
        if name == "terminate":
            stopped_on.append(threading.current_thread())

    def owner() -> None:
        conn = connection.open(
            "127.0.0.1", embedded_server.port, connection.options(event_handler=record)
        )
        connection.await_up(conn, T)

    thread = threading.Thread(target=owner, name="short-lived-owner")
    thread.start()
    thread.join(5)
    assert wait_until(lambda: len(stopped_on) == 1)
    assert not isinstance(stopped_on[0], threading._DummyThread)
    assert stopped_on[0].name.startswith("gluegun-worker")


def test_an_actor_owner_receives_messages_in_on_receive(embedded_server) -> None:
    owner = RecordingActor.start()
    try:
        conn = connection.open("127.0.0.1", embedded_server.port, connection.options(owner=owner))
        stream = http.get(conn, "/", reply_to=owner)
        assert wait_until(
            lambda: any(isinstance(m, GunData) and m.is_fin for m in owner.ask("messages"))
        )
        kinds = [type(m) for m in owner.ask("messages")]
        assert kinds[:2] == [GunUp, GunResponse]
        with pytest.raises(BadStateError, match="reply_to"):
            http.await_response(conn, stream, 100)
        connection.close(conn)
    finally:
        owner.stop()


def test_owner_actor_death_closes_the_connection(embedded_server) -> None:
    owner = RecordingActor.start()
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(owner=owner))
    assert wait_until(lambda: any(isinstance(m, GunUp) for m in owner.ask("messages")))
    owner.stop()
    assert wait_until(lambda: not conn.alive)
    assert conn.exit_reason == Shutdown("owner_down")


def test_set_owner_moves_later_messages(embedded_server) -> None:
    other = mailbox.Mailbox()
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        connection.await_up(conn, T)
        connection.set_owner(conn, other)
        stream = http.get(conn, "/")
        assert http.await_body(conn, stream, T) == b"hello from gluegun_actors"
        assert [
            m for m in mailbox.current().messages() if getattr(m, "stream", None) == stream
        ] == []
    finally:
        connection.close(conn)


def test_shutdown_completes_the_active_request_and_fails_the_pipelined(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    connection.await_up(conn, T)
    active = http.get(conn, "/delay?ms=200")
    pipelined = http.get(conn, "/")
    time.sleep(0.05)
    connection.shutdown(conn)
    assert http.await_body(conn, active, T) == b"delayed"
    with pytest.raises(StreamError):
        http.await_response(conn, pipelined, T)
    down = mailbox.current().receive(Down, T)
    assert (down.conn, down.reason) == (conn, "normal")
    assert [m for m in mailbox.current().messages() if isinstance(m, GunDown)] == []


def test_two_connections_interleaved_await_one_leaves_the_other(embedded_server) -> None:
    a = connection.open("127.0.0.1", embedded_server.port)
    b = connection.open("127.0.0.1", embedded_server.port)
    try:
        connection.await_up(a, T)
        connection.await_up(b, T)
        streams_b = [http.get(b, "/chunked?n=2") for _ in range(2)]
        stream_a = http.get(a, "/delay?ms=100")
        assert http.await_body(a, stream_a, T) == b"delayed"
        mine = [m for m in mailbox.current().messages() if m.conn is b]
        assert [m.stream for m in mine if isinstance(m, GunResponse)] == streams_b
        for stream in streams_b:
            assert http.await_body(b, stream, T) == b"chunk0chunk1"
    finally:
        connection.close(a)
        connection.close(b)


def test_futures_wait_on_many_connections_at_once(embedded_server) -> None:
    conns = [connection.open("127.0.0.1", embedded_server.port) for _ in range(4)]
    try:
        protocols = pykka.get_all([connection.await_up_future(c) for c in conns], timeout=5.0)
        assert protocols == [connection.Protocol.HTTP1] * 4
        streams = [http.get(c, "/") for c in conns]
        bodies = pykka.get_all(
            [http.await_body_future(c, s) for c, s in zip(conns, streams, strict=True)], timeout=5.0
        )
        assert bodies == [b"hello from gluegun_actors"] * 4
    finally:
        for conn in conns:
            connection.close(conn)


def test_a_cancelled_future_gives_back_its_message(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        future = connection.await_up_future(conn)
        assert wait_until(lambda: future._inner.get(timeout=connection.Milliseconds(T)) is not None)
        future.cancel()
        assert connection.await_up(conn, T) is connection.Protocol.HTTP1
    finally:
        connection.close(conn)


def test_flush_stream_cancels_it_so_nothing_arrives_later(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        connection.await_up(conn, T)
        stream = http.get(conn, "/stream?chunks=5&size=10&delay_ms=20")
        http.await_response(conn, stream, T)
        connection.flush(stream, conn)
        follow = http.get(conn, "/")
        assert http.await_body(conn, follow, T) == b"hello from gluegun_actors"
        assert [
            m for m in mailbox.current().messages() if getattr(m, "stream", None) == stream
        ] == []
    finally:
        connection.close(conn)


def test_flush_connection_removes_its_messages_only(embedded_server) -> None:
    a = connection.open("127.0.0.1", embedded_server.port)
    b = connection.open("127.0.0.1", embedded_server.port)
    try:
        for conn in (a, b):
            mailbox.current().receive(lambda m, c=conn: isinstance(m, GunUp) and m.conn is c, T)
        sa, sb = http.get(a, "/"), http.get(b, "/")
        http.await_response(a, sa, T)
        http.await_response(b, sb, T)
        assert wait_until(
            lambda: any(
                isinstance(m, GunData) and m.conn is a for m in mailbox.current().messages()
            )
        )
        removed = connection.flush(a)
        assert removed >= 1
        assert all(m.conn is b for m in mailbox.current().messages())
        assert http.await_body(b, sb, T) == b"hello from gluegun_actors"
    finally:
        connection.close(a)
        connection.close(b)


def test_timeouts_must_be_milliseconds(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        with pytest.raises(InvalidTimeout, match="milliseconds"):
            connection.await_up(conn, 5.0)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            connection.await_up(conn, "5000")  # type: ignore[arg-type]
        assert connection.await_up(conn, connection.Infinity) is connection.Protocol.HTTP1
    finally:
        connection.close(conn)


def test_await_timeout_loses_nothing(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        connection.await_up(conn, T)
        stream = http.get(conn, "/delay?ms=300")
        with pytest.raises(AwaitTimeout, match="nothing was taken"):
            http.await_response(conn, stream, 50)
        assert http.await_body(conn, stream, T) == b"delayed"
    finally:
        connection.close(conn)


def test_invalid_open_arguments_raise_typed_errors() -> None:
    with pytest.raises(InvalidArgument):
        connection.open("127.0.0.1", "80")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        connection.open("", 80)
    with pytest.raises(InvalidOptions, match="unknown option"):
        connection.options(retries=3)
    with pytest.raises(InvalidOptions):
        connection.options(retry=-1)
    with pytest.raises(InvalidOptions):
        connection.options(connect_timeout=1.5)
    with pytest.raises(InvalidOptions, match="not supported"):
        connection.options(protocols=[connection.Protocol.HTTP2])
    with pytest.raises(InvalidOptions):
        connection.options(owner="me")


def test_event_handler_sees_gun_event_names(embedded_server) -> None:
    seen: list[str] = []
    conn = connection.open(
        "127.0.0.1",
        embedded_server.port,
        connection.options(event_handler=lambda name, fields: seen.append(name)),
    )
    stream = http.get(conn, "/")
    http.await_body(conn, stream, T)
    connection.close(conn)
    expected = [
        "init",
        "connect_start",
        "connect_end",
        "request_start",
        "request_headers",
        "request_end",
        "response_start",
        "response_headers",
        "response_end",
        "terminate",
    ]
    assert [name for name in seen if name in expected] == expected


def test_a_failing_event_handler_does_not_break_the_connection(embedded_server) -> None:
    def handler(name: str, fields: object) -> None:
        raise ValueError("handler bug")

    conn = connection.open(
        "127.0.0.1", embedded_server.port, connection.options(event_handler=handler)
    )
    try:
        stream = http.get(conn, "/")
        assert http.await_body(conn, stream, T) == b"hello from gluegun_actors"
    finally:
        connection.close(conn)


def test_shutdown_lets_the_active_upload_finish(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    connection.await_up(conn, T)
    stream = http.headers(conn, "POST", "/echo", [])
    http.data(conn, stream, False, b"first ")
    connection.shutdown(conn)
    http.data(conn, stream, True, b"last")
    assert http.await_body(conn, stream, T) == b"first last"
    assert mailbox.current().receive(Down, T).reason == "normal"


def test_many_threads_each_with_their_own_connections(embedded_server) -> None:
    errors: list[BaseException] = []
    results: dict[int, list[bytes]] = {}

    def worker(index: int) -> None:
        try:
            conns = [connection.open("127.0.0.1", embedded_server.port) for _ in range(3)]
            streams = [(c, http.post(c, "/echo", [], f"{index}-{n}")) for n, c in enumerate(conns)]
            results[index] = [http.await_body(c, s, T) for c, s in reversed(streams)]
            for conn in conns:
                connection.close(conn)
            assert len(mailbox.current()) == len(conns)  # each GunUp, never awaited
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    assert results == {i: [f"{i}-{n}".encode() for n in (2, 1, 0)] for i in range(6)}


def test_flush_of_a_stream_alone_clears_it_from_this_threads_mailbox(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        connection.await_up(conn, T)
        stream = http.get(conn, "/")
        http.await_response(conn, stream, T)
        assert wait_until(
            lambda: any(getattr(m, "stream", None) == stream for m in mailbox.current().messages())
        )
        assert connection.flush(stream) == 1
        assert mailbox.current().messages() == []
    finally:
        connection.close(conn)

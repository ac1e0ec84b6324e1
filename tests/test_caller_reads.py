"""A waiting caller reads its connection's socket itself (`_io.lease`): order, no loss,
and the socket goes back to the reactor whenever the caller is not there to read it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from polling import open_fds, wait_until
from recording import RecordingActor

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors._io.transport import Transport
from gluegun_actors._io.wakeups import HeldWakeups
from gluegun_actors.errors import AwaitTimeout, ConnectionDown, ConnectionTerminated
from gluegun_actors.events import GunData, GunResponse, GunUp, GunWs
from gluegun_actors.mailbox import Mailbox
from gluegun_actors.message import Pong, Text
from gluegun_actors.testing import Expect as ExpectRequest
from gluegun_actors.testing import Hold, Send, Sleep, WsAccept

T = 5000


@pytest.fixture
def borrowers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the threads that borrowed a socket's read side, one per loan."""
    names: list[str] = []
    lend = Transport._lend_reading

    def spy(self: Transport) -> Any:
        sock = lend(self)
        if sock is not None:
            names.append(threading.current_thread().name)
        return sock

    monkeypatch.setattr(Transport, "_lend_reading", spy)
    yield names


def _ws(port: int, path: str = "/", **ws_options: Any) -> tuple[connection.Connection, Any]:
    conn = connection.open("127.0.0.1", port, connection.options(retry=0))
    protocol = connection.await_up(conn, T)
    options = websocket.options(**ws_options)
    stream = websocket.upgrade_with_protocol(conn, protocol, path, [], options)
    websocket.await_upgrade(conn, stream, T)
    return conn, stream


def _frame(text: bytes) -> bytes:
    return bytes((0x81, len(text))) + text  # an unmasked text frame, as a server sends


class _Pongs:
    """Collects `count` Pong frames."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.taken = 0

    def offer(self, message: object) -> bool:
        if isinstance(message, GunWs) and isinstance(message.frame, Pong):
            self.taken += 1
            return True
        return False

    def done(self) -> bool:
        return self.taken >= self.count

    def result(self) -> int:
        return self.taken


def _join_all(threads: list[threading.Thread], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads)


def test_one_call_per_message_is_read_on_the_callers_thread_in_order(
    websockets_port: int, borrowers: list[str]
) -> None:
    conn, stream = _ws(websockets_port)
    box = mailbox.current()
    try:
        for n in range(200):
            websocket.send(conn, stream, Text(f"m{n}"))
            message = box.receive(GunWs, T)
            assert message.frame == Text(f"m{n}")
        assert borrowers and set(borrowers) == {threading.current_thread().name}
        assert len(box) == 0
    finally:
        connection.close(conn)


def test_a_waiter_that_times_out_while_reading_leaves_the_socket_to_the_reactor(
    embedded_server: Any, borrowers: list[str]
) -> None:
    conn, stream = _ws(embedded_server.port, "/ws")
    box = mailbox.current()
    try:
        with pytest.raises(AwaitTimeout):
            box.receive(GunWs, 100)  # nothing comes: the thread polls the socket, then gives up
        assert borrowers  # it did read the socket itself
        websocket.send(conn, stream, Text("after"))
        # Nobody waits now: the reactor takes the socket back and delivers the echo.
        assert wait_until(lambda: len(box) == 1, 3.0)
        assert box.receive(GunWs, 0).frame == Text("after")
    finally:
        connection.close(conn)


def test_two_threads_waiting_on_one_connection_each_get_their_own_answers(
    embedded_server: Any, borrowers: list[str]
) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    connection.await_up(conn, T)
    errors: list[BaseException] = []
    answers: dict[str, list[bytes]] = {}

    def client(name: str) -> None:
        try:
            got = answers.setdefault(name, [])
            for n in range(60):
                stream = http.post(conn, "/echo", [], f"{name}-{n}")
                got.append(http.await_body(conn, stream, T))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(name,), name=name) for name in "ab"]
    try:
        for thread in threads:
            thread.start()
        _join_all(threads, 30)
        assert errors == []
        for name in "ab":
            assert answers[name] == [f"{name}-{n}".encode() for n in range(60)]
        assert set(borrowers) <= {"a", "b"} and borrowers
    finally:
        connection.close(conn)


def test_an_actor_owner_and_a_thread_share_one_connection(
    embedded_server: Any, borrowers: list[str]
) -> None:
    actor = RecordingActor.start()
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(owner=actor))
    errors: list[BaseException] = []
    bodies: list[bytes] = []

    def thread_client() -> None:
        try:
            for n in range(40):
                stream = http.post(conn, "/echo", [], f"t{n}")
                bodies.append(http.await_body(conn, stream, T))
        except BaseException as error:  # reported below
            errors.append(error)

    try:
        assert wait_until(lambda: any(isinstance(m, GunUp) for m in actor.ask("messages")))
        worker = threading.Thread(target=thread_client, name="thread-owner")
        worker.start()
        actor_streams = [http.post(conn, "/echo", [], f"a{n}", reply_to=actor) for n in range(40)]
        _join_all([worker], 30)
        assert errors == []
        assert bodies == [f"t{n}".encode() for n in range(40)]

        def actor_bodies() -> dict[Any, bytes]:
            got: dict[Any, bytes] = {}
            for message in actor.ask("messages"):
                if isinstance(message, GunData):
                    got[message.stream] = got.get(message.stream, b"") + message.data
            return got

        assert wait_until(lambda: len(actor_bodies()) == 40)
        assert [actor_bodies()[s] for s in actor_streams] == [f"a{n}".encode() for n in range(40)]
        responses = [m for m in actor.ask("messages") if isinstance(m, GunResponse)]
        assert [m.stream for m in responses] == actor_streams  # in order, none lost
    finally:
        connection.close(conn)
        actor.stop()


def test_the_owner_thread_ending_with_the_socket_parked_closes_the_connection(
    embedded_server: Any, borrowers: list[str]
) -> None:
    errors: list[BaseException] = []

    def owner() -> None:
        try:
            conn, stream = _ws(embedded_server.port, "/ws")
            for n in range(5):
                websocket.send(conn, stream, Text(f"{n}"))
                assert websocket.receive(conn, stream, T) == Text(f"{n}")
        except BaseException as error:  # reported below
            errors.append(error)
        # The thread ends holding the socket's loan, parked: its mailbox dies with it.

    thread = threading.Thread(target=owner, name="short-lived-owner")
    thread.start()
    _join_all([thread], 10)
    assert errors == []
    assert borrowers and set(borrowers) == {"short-lived-owner"}
    assert wait_until(lambda: embedded_server.live_connections == 0, 5.0)


def test_an_owner_mailbox_closed_while_its_thread_reads_closes_the_socket_at_once(
    embedded_server: Any, borrowers: list[str]
) -> None:
    box = Mailbox("owner")
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(owner=box))
    result: list[object] = []

    def waiter() -> None:
        result.append(box.receive(lambda m: m == "release", 10_000))

    box.receive(GunUp, T)
    stream = websocket.upgrade(conn, "/ws", reply_to=box)
    websocket.await_upgrade(conn, stream, T)
    websocket.send(conn, stream, Text("x"))
    assert wait_until(lambda: len(box) == 1)  # the reactor read it: the socket is armed
    thread = threading.Thread(target=waiter, name="blocked-owner")
    thread.start()
    assert wait_until(lambda: bool(borrowers))  # the waiter holds the socket now
    box.close()  # the owner is gone: the connection stops, and its socket closes now
    assert wait_until(lambda: embedded_server.live_connections == 0, 3.0)
    assert thread.is_alive()  # still waiting: its wait was not cut short
    box.put("release")
    _join_all([thread], 5)
    assert result == ["release"]


def test_keepalive_pings_go_out_and_pongs_come_in_while_a_caller_reads(
    embedded_server: Any, borrowers: list[str]
) -> None:
    conn, _ = _ws(embedded_server.port, "/ws", keepalive=50, silence_pings=False)
    try:
        # One long wait: the caller's thread holds the read side the whole time.
        pongs = mailbox.current().collect(_Pongs(3), T)
        assert pongs == 3
        assert set(borrowers) == {threading.current_thread().name}
        assert connection.info(conn).state_name == "connected"
    finally:
        connection.close(conn)


def test_a_pong_timeout_while_a_caller_reads_ends_its_wait(
    scripted_server: Callable[..., Any], borrowers: list[str]
) -> None:
    server = scripted_server([[ExpectRequest(), WsAccept(), Hold()]])  # never answers a ping
    conn, stream = _ws(server.port, keepalive=50, pong_timeout=100)
    started = time.monotonic()
    try:
        with pytest.raises(ConnectionDown):
            websocket.receive(conn, stream, 3000)
        assert time.monotonic() - started < 2.0
        assert borrowers
    finally:
        connection.close(conn)


def test_flow_credits_running_out_mid_read_pause_then_resume_in_order(
    scripted_server: Callable[..., Any], borrowers: list[str]
) -> None:
    paced: list[Any] = []
    for n in range(20):  # one frame per read, arriving while the caller waits
        paced += [Sleep(30), Send(_frame(b"f%02d" % n))]
    server = scripted_server([[ExpectRequest(), WsAccept(), *paced, Hold()]])
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=0, flow=2))
    try:
        connection.await_up(conn, T)
        stream = websocket.upgrade(conn, "/")
        websocket.await_upgrade(conn, stream, T)
        box = mailbox.current()
        got = [websocket.receive(conn, stream, T) for _ in range(2)]
        assert borrowers  # the caller's thread read them
        with pytest.raises(AwaitTimeout):
            websocket.receive(conn, stream, 300)  # no credits: nothing more is read
        assert len(box) == 0
        connection.update_flow(conn, stream, 100)
        got += [websocket.receive(conn, stream, T) for _ in range(18)]
        assert got == [Text(f"f{n:02d}") for n in range(20)]
        assert len(box) == 0
    finally:
        connection.close(conn)


def test_close_from_another_thread_while_a_caller_reads(
    embedded_server: Any, borrowers: list[str]
) -> None:
    warm_conn, warm_stream = _ws(embedded_server.port, "/ws")
    websocket.send(warm_conn, warm_stream, Text("warm"))
    websocket.receive(warm_conn, warm_stream, T)  # this thread's poll set exists from here
    connection.close(warm_conn)
    assert wait_until(lambda: embedded_server.live_connections == 0)
    before = open_fds()
    conn, stream = _ws(embedded_server.port, "/ws")
    closer = threading.Timer(0.2, connection.close, args=(conn,))
    closer.start()
    # Gun's close sends nothing: the wait learns that the connection stopped at its end,
    # while the socket the caller was reading is closed at once.
    with pytest.raises(ConnectionTerminated):
        websocket.receive(conn, stream, 1500)
    closer.join(5)
    assert embedded_server.live_connections == 0
    assert wait_until(lambda: open_fds() <= before)
    assert len(borrowers) >= 2


def test_a_thousand_connections_each_with_its_own_waiting_thread(websockets_port: int) -> None:
    before = open_fds()
    errors: list[BaseException] = []
    ready = threading.Barrier(1000, timeout=60)

    def client(index: int) -> None:
        try:
            conn, stream = _ws(websockets_port)
            try:
                ready.wait()  # all connected: the echoes below run at once
                for n in range(3):
                    websocket.send(conn, stream, Text(f"{index}-{n}"))
                    assert websocket.receive(conn, stream, 30_000) == Text(f"{index}-{n}")
            finally:
                connection.close(conn)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(1000)]
    for thread in threads:
        thread.start()
    _join_all(threads, 120)
    assert errors == []
    assert wait_until(lambda: open_fds() <= before, 10.0)  # sockets and poll descriptors


def test_a_thousand_connections_owned_by_one_thread(websockets_port: int) -> None:
    box = mailbox.current()
    conns = [
        connection.open("127.0.0.1", websockets_port, connection.options(retry=0))
        for _ in range(1000)
    ]
    try:
        streams = {}
        for conn in conns:
            protocol = connection.await_up(conn, 30_000)
            streams[conn] = websocket.upgrade_with_protocol(conn, protocol, "/", [])
        for conn in conns:
            websocket.await_upgrade(conn, streams[conn], 30_000)
        for round_ in range(3):
            for index, conn in enumerate(conns):
                websocket.send(conn, streams[conn], Text(f"{round_}-{index}"))
            seen: dict[Any, list[object]] = {}
            for _ in range(1000):
                message = box.receive(GunWs, 30_000)
                seen.setdefault(message.conn, []).append(message.frame)
            assert all(
                seen[conn] == [Text(f"{round_}-{index}")] for index, conn in enumerate(conns)
            )
        assert len(box) == 0
    finally:
        for conn in conns:
            connection.close(conn)


def test_a_wakeup_held_back_before_the_caller_polled_still_ends_its_poll(
    embedded_server: Any, borrowers: list[str]
) -> None:
    conn, stream = _ws(embedded_server.port, "/ws")
    websocket.send(conn, stream, Text("feed"))
    assert websocket.receive(conn, stream, T) == Text("feed")  # this mailbox's socket is known
    box = mailbox.current()
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(box.receive(str, 5000)), name="poller")
    held = HeldWakeups()
    try:
        waiter.start()
        assert wait_until(lambda: len(box._waits) == 1)
        box._put_all(["wake"], held)  # resolved now, its wakeup held by this thread
        assert wait_until(lambda: "poller" in borrowers)  # it polls the socket meanwhile
        time.sleep(0.05)
        started = time.monotonic()
        held.release()
        _join_all([waiter], 2)
        assert time.monotonic() - started < 1.0
        assert got == ["wake"]
    finally:
        held.release()
        connection.close(conn)

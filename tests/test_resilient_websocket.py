"""A resilient WebSocket (`reupgrade`): upgraded again after every reconnect, on the same
stream, against a `websockets` server in its own process that is killed and restarted."""

from __future__ import annotations

import signal
import threading

import pytest
from polling import open_fds, wait_until

from gluegun_actors import connection, mailbox, websocket
from gluegun_actors.errors import UpgradeFailed
from gluegun_actors.events import GunDown, GunError, GunUp, GunUpgrade, GunWs
from gluegun_actors.message import Close, Text
from gluegun_actors.testing import Close as CloseSocket
from gluegun_actors.testing import Expect, Hold, Send, WsAccept

T = 5000
COUNT = 10


def test_a_feed_comes_back_after_five_restarts_with_every_message_once(feed) -> None:
    owner = mailbox.current()
    feed.start("0", COUNT)
    threads, fds = threading.active_count(), open_fds()  # (the server's pipe open, as at the end)
    # The first retry waits 100 ms, not Gun's 0: a SIGKILLed process closes its sockets one
    # by one, and a retry made at once can be accepted by the dying listener's backlog and
    # then reset, which is one more GunDown/GunUp than the restart brought.
    options = connection.options(retry=50, retry_fun=lambda left, _options: (left - 1, 100))
    conn = connection.open("127.0.0.1", feed.port, options)
    stream = websocket.upgrade(conn, "/", options=websocket.options(reupgrade=True))
    rounds: list[dict[str, int | list[str]]] = []
    try:
        for round_no in range(6):
            seen: dict[str, int | list[str]] = {"down": 0, "up": 0, "upgrade": 0, "texts": []}
            while len(seen["texts"]) < COUNT:  # type: ignore[arg-type]
                match owner.receive(timeout=T):
                    case GunDown(killed_streams=killed):
                        assert stream in killed
                        seen["down"] += 1  # type: ignore[operator]
                    case GunUp():
                        seen["up"] += 1  # type: ignore[operator]
                    case GunUpgrade(stream=ref):
                        assert ref == stream  # the same stream, upgraded again
                        seen["upgrade"] += 1  # type: ignore[operator]
                    case GunWs(stream=ref, frame=Text(text)):
                        assert ref == stream
                        seen["texts"].append(text)  # type: ignore[union-attr]
                    case GunWs():
                        pass  # the server's close 1001 on a clean stop
                    case other:
                        pytest.fail(f"unexpected {other!r}")
            rounds.append(seen)
            if round_no < 5:
                feed.stop(signal.SIGTERM if round_no % 2 else signal.SIGKILL)
                feed.start(str(round_no + 1), COUNT)
        for round_no, seen in enumerate(rounds):
            assert seen["texts"] == [f"{round_no}:{n}" for n in range(COUNT)]  # in order, once
            expected = (0, 1, 1) if round_no == 0 else (1, 1, 1)
            assert (seen["down"], seen["up"], seen["upgrade"]) == expected, round_no
        websocket.send(conn, stream, Text("still here"))
        assert owner.receive(GunWs, T).frame == Text("still here")
    finally:
        connection.close(conn)
    assert owner.messages() == []
    assert wait_until(lambda: threading.active_count() <= threads and open_fds() <= fds)


def test_receive_waits_across_a_reconnect_on_a_resilient_stream(feed) -> None:
    feed.start("a", COUNT)
    conn = connection.open("127.0.0.1", feed.port, connection.options(retry=20, retry_timeout=100))
    try:
        stream = websocket.upgrade(conn, "/", options=websocket.options(reupgrade=True))
        websocket.await_upgrade(conn, stream, T)
        first = [websocket.receive(conn, stream, T) for _ in range(COUNT)]
        assert first == [Text(f"a:{n}") for n in range(COUNT)]
        feed.stop(signal.SIGKILL)
        feed.start("b", COUNT)
        second = [websocket.receive(conn, stream, T) for _ in range(COUNT)]  # no exception
        assert second == [Text(f"b:{n}") for n in range(COUNT)]
        mailbox.current().flush()
    finally:
        connection.close(conn)


def test_a_refused_reupgrade_ends_the_stream_and_is_not_retried(scripted_server) -> None:
    refusal = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"
    server = scripted_server(
        [
            [Expect(), WsAccept(), CloseSocket()],  # up, then the server goes away
            [Expect(), Send(refusal), Hold()],  # and refuses the upgrade when it comes back
        ]
    )
    owner = mailbox.current()
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=3))
    try:
        stream = websocket.upgrade(conn, "/", options=websocket.options(reupgrade=True))
        websocket.await_upgrade(conn, stream, T)
        error = owner.receive(GunError, T)
        assert error.stream == stream
        assert isinstance(error.reason, UpgradeFailed) and error.reason.status == 403
        upgrades = lambda: b"".join(server.received).count(b"sec-websocket-key")  # noqa: E731
        assert not wait_until(lambda: upgrades() > 2, 0.3)  # the refusal is not retried
        assert connection.stream_info(conn, stream) is None
    finally:
        connection.close(conn)
        owner.flush()


def test_a_close_the_owner_sends_ends_a_resilient_stream(feed) -> None:
    owner = mailbox.current()
    feed.start("a", 0)
    conn = connection.open("127.0.0.1", feed.port, connection.options(retry=5, retry_timeout=50))
    try:
        connection.await_up(conn, T)
        stream = websocket.upgrade(conn, "/", options=websocket.options(reupgrade=True))
        websocket.await_upgrade(conn, stream, T)
        websocket.send(conn, stream, Close(1000, "done"))
        assert owner.receive(GunWs, T).frame == Close(1000, "done")  # the server's answer
        assert owner.receive(GunDown, T).killed_streams == (stream,)
        connection.await_up(conn, T)  # it reconnects (Gun's rule after a close)...
        assert not wait_until(lambda: owner.messages() != [], 0.3)  # ...but no re-upgrade
        assert connection.stream_info(conn, stream) is None
    finally:
        connection.close(conn)
        owner.flush()

"""The connection manager: fleets by key under a dynamic supervisor, against real servers
(a `websockets` feed server in its own process, the embedded HTTP server)."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from polling import open_fds, wait_until

from gluegun_actors import connection, http, mailbox, manager, websocket
from gluegun_actors.errors import (
    AwaitTimeout,
    InvalidArgument,
    InvalidOptions,
    ManagerError,
)
from gluegun_actors.events import (
    Down,
    GunData,
    GunDown,
    GunResponse,
    GunUp,
    GunUpgrade,
    GunWs,
    Restarted,
)
from gluegun_actors.message import Text

T = 10_000
FLEET = 200
COUNT = 2


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    before = set(pykka.ActorRegistry.get_all())
    yield
    assert wait_until(lambda: set(pykka.ActorRegistry.get_all()) <= before, 10.0), (
        f"left running: {set(pykka.ActorRegistry.get_all()) - before}"
    )


def collect(owner: mailbox.Mailbox, until: Any, seconds: float = 30.0) -> list[Any]:
    """Messages from `owner`'s mailbox until `until(messages)` holds (bounded in time)."""
    got: list[Any] = []
    deadline = time.monotonic() + seconds
    while not until(got):
        left = deadline - time.monotonic()
        assert left > 0, f"gave up after {len(got)} messages: {Counter(type(m) for m in got)}"
        got.append(owner.receive(timeout=int(left * 1000)))
    return got


def texts(messages: list[Any]) -> dict[Any, list[str]]:
    by_conn: dict[Any, list[str]] = {}
    for message in messages:
        if type(message) is GunWs and isinstance(message.frame, Text):
            by_conn.setdefault(message.conn, []).append(message.frame.text)
    return by_conn


def test_a_fleet_of_200_comes_back_spread_out_after_a_server_restart(feed) -> None:
    owner = mailbox.current()
    feed.start("a", COUNT)
    threads, fds = threading.active_count(), open_fds()
    mgr = manager.start()
    url = f"ws://127.0.0.1:{feed.port}/"
    conns = {key: manager.open(mgr, key, url=url) for key in range(FLEET)}
    first = collect(owner, lambda got: sum(map(len, texts(got).values())) == FLEET * COUNT)
    assert Counter(type(m) for m in first)[GunUpgrade] == FLEET
    assert manager.count(mgr) == {"connected": FLEET}

    down_at = time.time()
    feed.stop(signal.SIGTERM)  # every connection gets close 1001 and reconnects
    feed.start("b", COUNT)
    second = collect(
        owner,
        lambda got: (
            sum(t.startswith("b") for ts in texts(got).values() for t in ts) == FLEET * COUNT
        ),
    )
    kinds = {kind: Counter(m.conn for m in second if type(m) is kind) for kind in (GunDown, GunUp)}
    upgrades = Counter(m.conn for m in second if type(m) is GunUpgrade)
    for key, conn in conns.items():
        assert manager.lookup(mgr, key) is conn  # reconnected in place: no replacement
        assert (kinds[GunDown][conn], kinds[GunUp][conn], upgrades[conn]) == (1, 1, 1)
        assert [t for t in texts(second)[conn] if t.startswith("b")] == ["b:0", "b:1"]
    assert not any(type(m) is Restarted for m in second)

    # Spread out: the reconnects do not all land in one 10 ms tick, nor in a few.
    back = sorted(manager.stats(mgr, key).since for key in conns)
    assert all(at > down_at for at in back)
    assert len({int(at * 100) for at in back}) > 20
    assert back[-1] - back[0] > 0.1

    # A broadcast reaches every live connection once (the feed server echoes it).
    assert manager.broadcast(mgr, Text("hello")) == FLEET
    echoed = collect(owner, lambda got: len(got) == FLEET, 10.0)
    assert Counter(m.conn for m in echoed) == Counter(conns.values())
    assert all(m.frame == Text("hello") for m in echoed)
    assert owner.messages() == []  # none twice
    totals = manager.totals(mgr)
    assert totals.connections == FLEET and totals.reconnects == FLEET
    assert totals.messages_out == FLEET * 3  # two upgrade requests and the broadcast

    assert manager.shutdown_all(mgr) == FLEET
    assert manager.keys(mgr) == [] and manager.count(mgr) == {}
    assert all(not conn.alive for conn in conns.values())
    assert {conn.exit_reason for conn in conns.values()} == {"normal"}
    manager.stop(mgr)
    last = owner.messages()  # the server's answer to close 1001, then Down: one each
    assert Counter(type(m) for m in last) == {GunWs: FLEET, Down: FLEET}
    assert {m.frame.code for m in last if type(m) is GunWs} == {1001}
    owner.flush()
    assert wait_until(lambda: threading.active_count() <= threads and open_fds() <= fds, 10.0)


def fast(**fields: Any) -> connection.Options:
    return connection.options(retry=1, **fields)


def test_a_key_outlives_its_connection_when_retries_run_out(feed) -> None:
    owner = mailbox.current()
    feed.start("a", COUNT)
    mgr = manager.start(reconnect=manager.JitteredBackoff(10, 20), backoff=(50, 100))
    try:
        old = manager.open(mgr, "k", url=f"ws://127.0.0.1:{feed.port}/", options=fast())
        stream = manager.stream_of(mgr, "k")
        upgrade = manager.await_upgrade(mgr, "k", T)
        assert (upgrade.conn, upgrade.stream) == (old, stream)
        feed.stop(signal.SIGKILL)
        assert owner.receive(lambda m: type(m) is Down and m.conn is old, T)  # retries ran out
        feed.start("b", COUNT)
        upgrade = manager.await_upgrade(mgr, "k", T)  # follows the replacements
        new = manager.lookup(mgr, "k")
        assert upgrade.conn is new is not old
        assert upgrade.stream == manager.stream_of(mgr, "k") != stream
        # Each replacement: the old one's Down, then Restarted(old -> new), then new's GunUp.
        chain = [m for m in owner.messages() if type(m) in (Down, Restarted, GunUp)]
        restarts = [m for m in chain if type(m) is Restarted]
        assert restarts and restarts[0].old is old and restarts[-1].new is new
        assert all(m.key == "k" for m in restarts)
        for before, after in itertools.pairwise(restarts):
            assert after.old is before.new
            assert chain.index(after) > chain.index(Down(before.new, after.old.exit_reason))
        assert manager.stats(mgr, "k").restarts == len(restarts)
        assert websocket.receive(new, upgrade.stream, T) in (Text("b:0"), Text("a:0"))
    finally:
        manager.stop(mgr)
        owner.flush()


def test_http_keys_stats_and_keys_by_state(embedded_server) -> None:
    owner = mailbox.current()
    with manager.start() as mgr:
        for key in ("x", "y"):
            manager.open(mgr, key, "127.0.0.1", embedded_server.port)
        for key in ("x", "y"):
            manager.await_up(mgr, key, T)
        assert manager.keys(mgr, "connected") == ["x", "y"]
        assert manager.stream_of(mgr, "x") is None
        assert manager.broadcast(mgr, Text("nobody")) == 0  # no WebSocket key
        conn = manager.lookup(mgr, "x")
        stream = http.get(conn, "/big?size=1000")
        assert len(http.await_body(conn, stream, T)) == 1000
        one = manager.stats(mgr, "x")
        assert one.state == "connected" and one.messages_out == 1
        assert one.bytes_in > 1000 and one.bytes_out > 0 and one.messages_in >= 2
        assert manager.stats(mgr, "y").bytes_in == 0
        with pytest.raises(ManagerError):
            manager.await_upgrade(mgr, "x", T)
    assert mgr.stopped
    with pytest.raises(ManagerError):
        manager.lookup(mgr, "x")
    owner.flush()


def test_a_connection_stats_follow_its_life(embedded_server) -> None:
    owner = mailbox.current()
    conn = connection.open("127.0.0.1", embedded_server.port)
    assert connection.stats(conn).state in ("connecting", "connected", "not_connected")
    connection.await_up(conn, T)
    stream = http.get(conn, "/")
    http.await_body(conn, stream, T)
    stats = connection.stats(conn)
    assert stats.state == "connected" and stats.reconnects == 0 and stats.last_error is None
    assert stats.messages_out == 1
    connection.close(conn)
    assert connection.stats(conn).state == "stopped"
    assert connection.stats(conn).since >= stats.since
    owner.flush()


def test_remove_and_a_closed_connection_forget_the_key(feed) -> None:
    owner = mailbox.current()
    feed.start("a", COUNT)
    with manager.start() as mgr:
        url = f"ws://127.0.0.1:{feed.port}/"
        one, two = manager.open(mgr, 1, url=url), manager.open(mgr, 2, url=url)
        manager.await_upgrade(mgr, 1, T)
        manager.await_upgrade(mgr, 2, T)
        manager.remove(mgr, 1)  # graceful: close 1001, then gone
        assert not one.alive and one.exit_reason == "normal"
        connection.close(two)  # a connection closed directly is not restarted either
        assert wait_until(lambda: manager.keys(mgr) == [])
        assert not wait_until(lambda: manager.keys(mgr) != [], 0.3)
        with pytest.raises(ManagerError):
            manager.remove(mgr, 1)
        manager.open(mgr, 1, url=url)  # the key is free again
        assert manager.close_all(mgr) == 1
        assert manager.keys(mgr) == []
    messages = owner.messages()
    owner.flush()
    assert Down(one, "normal") in messages
    assert not any(type(m) is Restarted for m in messages)


def test_frames_sent_to_a_key_while_it_is_down_are_refused_not_queued(feed) -> None:
    owner = mailbox.current()
    feed.start("a", COUNT)
    with manager.start(reconnect=manager.JitteredBackoff(2000, 4000)) as mgr:
        conn = manager.open(mgr, "k", url=f"ws://127.0.0.1:{feed.port}/")
        upgrade = manager.await_upgrade(mgr, "k", T)
        feed.stop(signal.SIGKILL)
        assert owner.receive(GunDown, T).conn is conn
        assert manager.broadcast(mgr, Text("lost?")) == 0  # skipped, nothing queued
        with pytest.raises(Exception, match="upgraded again"):
            websocket.send(conn, upgrade.stream, Text("lost?"))
        assert manager.count(mgr) in ({"not_connected": 1}, {"connecting": 1})
    owner.flush()


def test_bad_input_is_refused_and_nothing_is_left_behind(embedded_server) -> None:
    owner = mailbox.current()
    with pytest.raises(InvalidArgument):
        manager.start(owner="me")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptions):
        manager.start(options={"retry": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidOptions):
        manager.JitteredBackoff(0, 10)
    with pytest.raises(InvalidOptions):
        manager.JitteredBackoff(100, 10)
    mgr = manager.start()
    port = embedded_server.port
    manager.open(mgr, "a", "127.0.0.1", port)
    with pytest.raises(ManagerError, match="already"):
        manager.open(mgr, "a", "127.0.0.1", port)
    with pytest.raises(InvalidArgument):
        manager.open(mgr, ["unhashable"], "127.0.0.1", port)
    with pytest.raises(InvalidArgument):
        manager.open(mgr, "b", "127.0.0.1", "80")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        manager.open(mgr, "b", url="ftp://127.0.0.1/")
    with pytest.raises(InvalidArgument):
        manager.open(mgr, "b", "127.0.0.1", port, url=f"ws://127.0.0.1:{port}/")
    with pytest.raises(InvalidArgument):
        manager.open(mgr, "b", "127.0.0.1", port, path="no-slash")
    with pytest.raises(InvalidOptions):
        manager.open(mgr, "b", "127.0.0.1", port, options={"retry": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        manager.broadcast(mgr, "text")  # type: ignore[arg-type]
    with pytest.raises(ManagerError) as unknown:
        manager.lookup(mgr, "nope")
    assert isinstance(unknown.value, LookupError)
    with pytest.raises(InvalidArgument):
        manager.lookup("mgr", "a")  # type: ignore[arg-type]
    assert manager.keys(mgr) == ["a"]  # the refused ones left nothing behind
    manager.stop(mgr)
    manager.stop(mgr)  # harmless twice
    with pytest.raises(ManagerError, match="stopped"):
        manager.open(mgr, "c", "127.0.0.1", port)
    with pytest.raises(ManagerError, match="stopped"):
        manager.shutdown_all(mgr)
    owner.flush()


def test_await_up_times_out_with_a_typed_error(feed) -> None:
    with manager.start() as mgr:
        manager.open(mgr, "k", "127.0.0.1", feed.port, options=connection.options(retry=0))
        with pytest.raises((AwaitTimeout, ManagerError)):
            manager.await_up(mgr, "k", 200)  # nothing listens: down, replaced, down...
    mailbox.current().flush()


def test_the_owners_death_stops_the_fleet(embedded_server) -> None:
    made: list[manager.Manager] = []

    def owner_thread() -> None:
        mgr = manager.start()
        made.append(mgr)
        for key in range(3):
            manager.open(mgr, key, "127.0.0.1", embedded_server.port)
        manager.await_up(mgr, 2, T)

    thread = threading.Thread(target=owner_thread)
    thread.start()
    thread.join(T / 1000)
    (mgr,) = made
    assert wait_until(lambda: mgr.stopped, 10.0)
    assert mgr.supervisor is not None and not mgr.supervisor.alive


def test_jittered_backoff_draws_below_a_doubling_ceiling() -> None:
    policy = manager.JitteredBackoff(100, 1000)
    options = connection.options(retry=6)
    for attempt, ceiling in enumerate([100, 200, 400, 800, 1000, 1000], start=1):
        draws = [policy(6 - attempt + 1, options) for _ in range(200)]
        assert {left for left, _ in draws} == {6 - attempt}
        delays = [delay for _, delay in draws]
        assert min(delays) >= 0 and max(delays) < ceiling
        assert max(delays) - min(delays) > ceiling / 4  # spread, not one value


def test_broadcast_to_a_subset(feed) -> None:
    owner = mailbox.current()
    feed.start("a", 0)
    with manager.start() as mgr:
        url = f"ws://127.0.0.1:{feed.port}/"
        conns = {key: manager.open(mgr, key, url=url) for key in "abc"}
        for key in conns:
            manager.await_upgrade(mgr, key, T)
        assert manager.broadcast(mgr, [Text("1"), Text("2")], keys=["a", "c", "zz"]) == 2
        got = collect(owner, lambda got: len(texts(got)) == 2 and len(got) >= 4 + 3, 10.0)
        assert texts(got) == {conns["a"]: ["1", "2"], conns["c"]: ["1", "2"]}
    owner.flush()


def test_messages_go_to_an_actor_owner(embedded_server) -> None:
    seen: list[Any] = []

    class Owner(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> None:
            seen.append(message)

    ref = Owner.start()
    try:
        with manager.start(owner=ref) as mgr:
            conn = manager.open(mgr, "k", "127.0.0.1", embedded_server.port)
            assert wait_until(lambda: GunUp(conn, connection.Protocol.HTTP1) in seen)
            stream = http.get(conn, "/", reply_to=ref)
            assert wait_until(lambda: any(type(m) is GunData and m.stream == stream for m in seen))
            assert any(type(m) is GunResponse for m in seen)
    finally:
        ref.stop()

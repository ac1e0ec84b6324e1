"""Connection shards on a local Ray instance: a fleet over two shard processes, owners in
the driver and in a Ray actor, a shard killed mid-stream, a shard added, a slow owner,
and bad input. Real sockets on 127.0.0.1: the embedded server and the `websockets` one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")

from ray_cluster import SHARD_OPTIONS  # noqa: E402

from gluegun_actors import connection, shards  # noqa: E402
from gluegun_actors._io.transport import MAX_READ_SIZE  # noqa: E402
from gluegun_actors._shards.placement import key_bytes, place  # noqa: E402
from gluegun_actors.errors import (  # noqa: E402
    BadStateError,
    InvalidArgument,
    InvalidOptions,
    InvalidTimeout,
    ManagerError,
    UpgradeFailed,
)
from gluegun_actors.events import GunDown, GunUp, GunUpgrade, GunWs  # noqa: E402
from gluegun_actors.mailbox import Mailbox  # noqa: E402
from gluegun_actors.message import Text  # noqa: E402
from gluegun_actors.testing import EmbeddedServer  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_instance")

WAIT_MS = 10_000
"""Bound on any single wait for a message, ms."""


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def conn_of(message: object) -> shards.RemoteConnection:
    """The connection of a message from a shard: a `RemoteConnection`."""
    conn = message.conn  # type: ignore[attr-defined]
    assert isinstance(conn, shards.RemoteConnection)
    return conn


def key_of(message: object) -> Any:
    """The key of a message from a shard."""
    return conn_of(message).key


def text_of(message: object) -> str:
    """The text of a `GunWs` of a `Text` frame."""
    frame = message.frame  # type: ignore[attr-defined]
    assert isinstance(frame, Text)
    return frame.text


def take_all(box: Mailbox) -> list[Any]:
    """Every message queued now, in order."""
    taken: list[Any] = []
    while len(box):
        taken.append(box.receive(timeout=0))
    return taken


def shard_actor(sm: shards.ShardedManager, index: int) -> Any:
    """A shard's actor, by the name the docs give it."""
    return ray.get_actor(f"{sm.name}/{index}", namespace=f"gluegun_actors.{sm.name}")


@pytest.fixture(params=["embedded", "websockets"])
def echo_url(request: pytest.FixtureRequest, websockets_port: int) -> Iterator[str]:
    """A WebSocket echo URL: the embedded server's, or the `websockets` package's."""
    if request.param == "embedded":
        with EmbeddedServer() as server:
            yield server.ws_url("/echo")
    else:
        yield f"ws://127.0.0.1:{websockets_port}/echo"


def test_200_connections_over_2_shards_open_count_broadcast_and_stop(echo_url: str) -> None:
    box = Mailbox("owner")
    keys = [("conn", i) for i in range(200)]
    with shards.start(2, owner=box, actor_options=SHARD_OPTIONS) as sm:
        for key in keys[:100]:
            assert shards.open(sm, key, url=echo_url).key == key
        opened = shards.open_many(sm, [(key, echo_url) for key in keys[100:]])
        assert [conn.key for conn in opened] == keys[100:]
        beside = shards.shard_of(sm, keys[150])
        fresh = next(("new", n) for n in range(100) if shards.shard_of(sm, ("new", n)) == beside)
        with pytest.raises(ManagerError, match="none of the 2 keys given to this shard"):
            shards.open_many(sm, [(fresh, echo_url), (keys[150], echo_url)])  # all or nothing
        for key in keys:
            upgrade = shards.await_upgrade(sm, key, WAIT_MS)
            assert conn_of(upgrade).shard == shards.shard_of(sm, key)
        assert shards.count(sm) == {"connected": 200}
        assert shards.keys(sm) == sorted(keys, key=lambda key: shards.shard_of(sm, key))
        assert shards.keys(sm, "restarting") == []
        placed = Counter(shards.shard_of(sm, key) for key in keys)
        infos = shards.info(sm)
        assert [shard.connections for shard in infos] == [placed[0], placed[1]]
        assert 60 <= placed[0] <= 140, placed  # rendezvous hashing spreads them
        assert len({shard.pid for shard in infos} | {os.getpid()}) == 3

        assert shards.broadcast(sm, Text("hello")) == 200
        echoes = [box.receive(GunWs, WAIT_MS) for _ in range(200)]
        assert {key_of(echo) for echo in echoes} == set(keys)
        assert {echo.frame for echo in echoes} == {Text("hello")}
        first = echoes[0]
        assert shards.lookup(sm, key_of(first)) == conn_of(first)

        shards.send(sm, keys[7], [Text("a"), Text("b")])
        seventh = [box.receive(lambda m: type(m) is GunWs and key_of(m) == keys[7], WAIT_MS)]
        seventh.append(box.receive(lambda m: type(m) is GunWs and key_of(m) == keys[7], WAIT_MS))
        assert [text_of(m) for m in seventh] == ["a", "b"]

        fleet = shards.totals(sm)
        assert fleet.connections == 200
        assert fleet.messages_out == 402  # the upgrade requests, then the frames
        assert shards.stats(sm, keys[7]).messages_in == 4  # its GunUpgrade and 3 frames
        pids = [shard.pid for shard in infos]
    assert sm.stopped
    assert not [pid for pid in pids if process_exists(pid)], "a shard process is left"


@ray.remote(num_cpus=0)
class ActorOwner:
    """An owner inside a Ray actor: its own mailbox, filled by its own pump."""

    def __init__(self, sm: shards.ShardedManager) -> None:
        self.mailbox = Mailbox("actor owner")
        self.sm = shards.attach(sm, self.mailbox)
        self.unattached = sm

    def echo(self, url: str, keys: list[str], count: int) -> dict[str, list[str]]:
        for key in keys:
            shards.open(self.sm, key, url=url)
        for key in keys:
            shards.await_upgrade(self.sm, key, WAIT_MS)
        for n in range(count):
            for key in keys:
                shards.send(self.sm, key, Text(str(n)))
        got: dict[str, list[str]] = defaultdict(list)
        for _ in range(count * len(keys)):
            message = self.mailbox.receive(GunWs, WAIT_MS)
            got[key_of(message)].append(text_of(message))
        return dict(got)

    def open_for_the_starter(self, key: str, url: str) -> Any:
        return shards.open(self.unattached, key, url=url)

    def queued(self) -> list[tuple[str, str]]:
        return sorted((type(m).__name__, key_of(m)) for m in self.mailbox.messages())


def test_an_owner_in_a_ray_actor_and_one_in_the_driver_each_get_their_own_in_order(
    echo_url: str,
) -> None:
    box = Mailbox("driver owner")
    with shards.start(2, owner=box, actor_options=SHARD_OPTIONS) as sm:
        actor = ActorOwner.remote(sm)  # type: ignore[attr-defined]
        actor_keys = [f"actor-{i}" for i in range(10)]
        pending = actor.echo.remote(echo_url, actor_keys, 30)
        driver_keys = [f"driver-{i}" for i in range(10)]
        for key in driver_keys:
            shards.open(sm, key, url=echo_url)
        for key in driver_keys:
            shards.await_upgrade(sm, key, WAIT_MS)
        for n in range(30):
            shards.broadcast(sm, Text(f"d{n}"), keys=driver_keys)
        got: dict[str, list[str]] = defaultdict(list)
        for _ in range(300):
            message = box.receive(GunWs, WAIT_MS)
            got[key_of(message)].append(text_of(message))
        assert got == {key: [f"d{n}" for n in range(30)] for key in driver_keys}

        echoed = ray.get(pending, timeout=60)
        assert echoed == {key: [str(n) for n in range(30)] for key in actor_keys}
        assert ray.get(actor.queued.remote()) == sorted(("GunUp", key) for key in actor_keys)
        assert not [m for m in take_all(box) if key_of(m) in actor_keys]

        # A handle that crossed to the actor without attaching opens for the starter.
        remote = ray.get(actor.open_for_the_starter.remote("from-actor", echo_url))
        assert shards.await_upgrade(sm, "from-actor", WAIT_MS).conn == remote
        ray.kill(actor)


def test_an_owner_thread_that_ends_closes_its_keys_and_detach_closes_at_once() -> None:
    box = Mailbox("starter")
    with EmbeddedServer() as server, shards.start(2, owner=box, actor_options=SHARD_OPTIONS) as sm:
        url = server.ws_url("/echo")
        shards.open(sm, "starter's", url=url)

        def owner_thread() -> None:
            mine = shards.attach(sm)  # this thread's own mailbox
            shards.open_many(mine, [(f"thread-{n}", url) for n in range(4)])
            for n in range(4):
                shards.await_upgrade(mine, f"thread-{n}", WAIT_MS)

        thread = threading.Thread(target=owner_thread)
        thread.start()
        thread.join(30)
        deadline = time.monotonic() + 10
        while len(shards.keys(sm)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert shards.keys(sm) == ["starter's"]  # the thread's keys went with it

        other = shards.attach(sm, Mailbox("other"))
        shards.open(other, "other's", url=url)
        shards.await_upgrade(other, "other's", WAIT_MS)
        assert shards.detach(other) == 1
        assert shards.keys(sm) == ["starter's"]
        with pytest.raises(BadStateError, match="no owner in this process"):
            shards.owner_mailbox(other)


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_a_shard_killed_mid_stream_comes_back_and_its_owner_sees_gundown_then_gunup(
    how: str,
) -> None:
    box = Mailbox("owner")
    keys = [f"feed-{i}" for i in range(40)]
    with EmbeddedServer() as server, shards.start(2, owner=box, actor_options=SHARD_OPTIONS) as sm:
        for key in keys:
            shards.open(sm, key, url=server.ws_url("/echo"))
        for key in keys:
            shards.await_upgrade(sm, key, WAIT_MS)
        box.flush()
        lost = {key for key in keys if shards.shard_of(sm, key) == 0}
        assert 0 < len(lost) < len(keys)
        before = shards.info(sm)[0]

        log: list[object] = []
        sent = 0
        killed_at = None
        back: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            shards.broadcast(sm, Text(str(sent)))
            sent += 1
            if sent == 10:
                if how == "ray.kill":
                    ray.kill(shard_actor(sm, 0), no_restart=False)
                else:
                    os.kill(before.pid, signal.SIGKILL)
                killed_at = sent
            batch = take_all(box)
            log += batch
            back |= {key_of(m) for m in batch if type(m) is GunUpgrade}
            if back == lost and killed_at is not None and sent > killed_at + 20:
                break
            time.sleep(0.02)
        assert back == lost, "the shard's keys did not come back"
        while True:  # the echoes of the last frames
            try:
                log.append(box.receive(timeout=500))
            except Exception:
                break

        after = shards.info(sm)[0]
        assert after.incarnation == before.incarnation + 1
        assert after.pid != before.pid
        assert shards.count(sm) == {"connected": 40}
        by_key: dict[str, list[Any]] = defaultdict(list)
        for message in log:
            by_key[key_of(message)].append(message)
        for key in keys:
            kinds = [type(m).__name__ for m in by_key[key]]
            numbers: dict[Any, list[int]] = defaultdict(list)
            for m in by_key[key]:
                if type(m) is GunWs:
                    numbers[m.conn].append(int(text_of(m)))
            for conn, seen in numbers.items():  # nothing delivered twice
                assert seen == sorted(set(seen)), (key, conn)
            if key not in lost:
                assert set(kinds) == {"GunWs"}, (key, kinds)
                assert list(numbers.values()) == [list(range(sent))]  # nothing lost either
                continue
            assert kinds.count("GunDown") == 1 and kinds.count("GunUp") == 1, (key, kinds)
            down_at, up_at = kinds.index("GunDown"), kinds.index("GunUp")
            assert kinds[down_at : up_at + 2] == ["GunDown", "GunUp", "GunUpgrade"], (key, kinds)
            down, up = by_key[key][down_at], by_key[key][up_at]
            assert isinstance(down.reason, shards.ShardLost)
            assert down.conn.incarnation == before.incarnation
            assert up.conn.incarnation == after.incarnation and up.conn != down.conn
            assert all(m.conn == down.conn for m in by_key[key][:down_at])
            assert numbers[up.conn], f"{key} got nothing after it came back"


def test_adding_a_shard_moves_only_the_keys_whose_place_it_is(echo_url: str) -> None:
    box = Mailbox("owner")
    keys = [f"k{i}" for i in range(60)]
    with shards.start(2, owner=box, actor_options=SHARD_OPTIONS) as sm:
        for key in keys:
            shards.open(sm, key, url=echo_url)
        for key in keys:
            shards.await_upgrade(sm, key, WAIT_MS)
        box.flush()
        expected = {key for key in keys if place(key_bytes(key), range(3)) == 2}

        assert shards.add_shard(sm, timeout=WAIT_MS) == len(expected)
        assert 8 <= len(expected) <= 32  # about a third
        assert {key for key in keys if shards.shard_of(sm, key) == 2} == expected
        log: list[Any] = []
        upgraded: set[str] = set()
        deadline = time.monotonic() + 15
        while upgraded != expected and time.monotonic() < deadline:
            message = box.receive(timeout=WAIT_MS)
            log.append(message)
            if type(message) is GunUpgrade:
                upgraded.add(key_of(message))
        assert upgraded == expected
        for key in expected:
            mine = [m for m in log if key_of(m) == key]
            assert [type(m) for m in mine] == [GunDown, GunUp, GunUpgrade], key
            assert isinstance(mine[0].reason, shards.KeyMoved) and mine[0].reason.to == 2
            assert mine[0].conn.shard in (0, 1) and mine[1].conn.shard == 2
        assert not [m for m in log if key_of(m) not in expected]
        assert shards.count(sm) == {"connected": 60}
        assert [s.connections for s in shards.info(sm)][2] == len(expected)
        assert shards.broadcast(sm, Text("after")) == 60
        assert {key_of(box.receive(GunWs, WAIT_MS)) for _ in range(60)} == set(keys)


def test_a_slow_owner_holds_its_connections_back_within_the_marks() -> None:
    owner = Mailbox("slow owner", high_water_messages=500)
    total, size = 100_000, 16
    frame = size + 2  # a WebSocket frame of 16 bytes from the server
    with (
        EmbeddedServer() as server,
        shards.start(
            1, owner=owner, high_water_messages=300, max_batch=100, actor_options=SHARD_OPTIONS
        ) as sm,
    ):
        shards.open(sm, "push", url=server.ws_url(f"/ws/push?n={total}&size={size}"))
        time.sleep(2.0)  # the owner reads nothing meanwhile
        here = len(owner)
        there = shards.info(sm)[0].queued[sm.owner]  # type: ignore[index]
        read = shards.stats(sm, "push").messages_in
        assert here <= 500 + 100, here  # the owner's mark, plus one batch
        assert there <= 300 + MAX_READ_SIZE // frame, there  # the shard's, plus one read
        assert read <= here + there + 100, read  # one batch in flight at most
        assert read < total / 2  # the server is held back by TCP
        texts: list[str] = []
        deadline = time.monotonic() + 40
        while len(texts) < total and time.monotonic() < deadline:
            texts.append(text_of(owner.receive(GunWs, WAIT_MS)))
        assert len(texts) == total and set(texts) == {"abcdefghijklmnop"}


def test_bad_input_gets_clear_errors() -> None:
    for n in (0, -1, True, "2", 1.0):
        with pytest.raises(InvalidArgument, match="at least 1 shard"):
            shards.start(n)  # type: ignore[arg-type]
    box = Mailbox("owner")
    with shards.start(1, owner=box, actor_options=SHARD_OPTIONS) as sm:
        with pytest.raises(ManagerError, match="no connection under the key 'nope'"):
            shards.lookup(sm, "nope")
        with pytest.raises(ManagerError, match="no connection under the key"):
            shards.send(sm, "nope", Text("x"))
        with pytest.raises(InvalidArgument, match="plain data"):
            shards.open(sm, 1.5, url="ws://127.0.0.1:1/")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="plain data"):
            shards.open(sm, ("a", frozenset()), url="ws://127.0.0.1:1/")  # type: ignore[arg-type]
        with pytest.raises(InvalidOptions, match="event_handler"):
            shards.open(
                sm, "k", url="ws://127.0.0.1:1/", options=connection.options(event_handler=print)
            )
        with pytest.raises(InvalidOptions, match="retry_fun"):
            shards.open(
                sm,
                "k",
                url="ws://127.0.0.1:1/",
                options=connection.options(retry_fun=lambda n, o: (0, 0)),
            )
        with pytest.raises(InvalidArgument, match="url"):
            shards.open(sm, "k", url="127.0.0.1:1/")
        with EmbeddedServer() as server:
            shards.open(sm, "k", url=server.ws_url("/echo"))
            with pytest.raises(ManagerError, match="already has a connection under the key 'k'"):
                shards.open(sm, "k", url=server.ws_url("/echo"))
            with pytest.raises(InvalidTimeout, match="milliseconds"):
                shards.await_upgrade(sm, "k", 5.0)  # type: ignore[arg-type]
            shards.await_upgrade(sm, "k", WAIT_MS)
            shards.remove(sm, "k")
            with pytest.raises(ManagerError, match="no connection under the key 'k'"):
                shards.stats(sm, "k")
            shards.open(sm, "refused", url=server.ws_url("/ws/reject?status=403"))
            with pytest.raises(UpgradeFailed, match="status 403") as refused:
                shards.await_upgrade(sm, "refused", WAIT_MS)
            assert refused.value.status == 403  # the exception crossed whole
            assert isinstance(refused.value.stream, shards.RemoteStream)
        with pytest.raises(InvalidArgument, match="shard must be an index"):
            shards.call(sm, 5, len)
    with pytest.raises(ManagerError, match="has stopped"):
        shards.count(sm)
    with pytest.raises(InvalidArgument, match="ShardedManager"):
        shards.count("not a manager")  # type: ignore[arg-type]
    shards.stop(sm)  # harmless twice


def test_without_ray_the_import_says_how_to_install_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['ray'] = None\n"
        "try:\n"
        "    import gluegun_actors.shards\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert "pip install 'gluegun_actors[ray]'" in result.stdout, result.stderr


def test_without_ray_init_start_says_to_call_it() -> None:
    code = (
        "from gluegun_actors import shards\n"
        "try:\n"
        "    shards.start(1)\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.startswith(BadStateError.__name__), result.stderr
    assert "ray.init()" in result.stdout

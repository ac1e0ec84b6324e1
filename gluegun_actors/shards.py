"""Connection shards on Ray: one fleet of connections over many processes and machines.

One process holds some ten thousand idle WebSocket connections and, under the GIL, uses
one core. A sharded manager spreads a fleet over N shards, each a Ray actor process
hosting local managers (`gluegun_actors.manager`) with their own reactor; Ray places
the shards across the cluster's nodes and restarts a shard whose process dies.

    import ray
    from gluegun_actors import shards
    from gluegun_actors.events import GunWs
    from gluegun_actors.message import Text

    ray.init()
    sm = shards.start(4)                        # owner: this thread's mailbox
    shards.open(sm, "btc", url="ws://feeds.example/btc")
    shards.await_upgrade(sm, "btc", 5000)
    shards.send(sm, "btc", Text("subscribe"))
    msg = shards.owner_mailbox(sm).receive(GunWs, 1000)   # msg.conn.key == "btc"
    shards.stop(sm)

Keys are plain data (`str`, `bytes`, `int`, tuples of these), placed on shards by
rendezvous hashing: `add_shard` moves about 1/(N+1) of them. Each key's spec (address,
path, headers, options, owner) lives in Ray's key-value store, outside the shards, so a
shard that Ray restarts opens its keys again.

Owners. Messages go to an owner by id. `start` attaches the caller's mailbox as the
default owner; `attach` gives another process (a Ray actor, another thread) an owner of
its own. An owner's messages are pulled from the shards in batches by a pump thread and
put into its `Mailbox` in order, so `receive`, selective receive and millisecond
timeouts work as with local connections. Messages carry a `RemoteConnection` and
`RemoteStream` instead of a `Connection` and a `StreamRef`. A slow owner holds its
connections back through TCP (see docs/guide/ray.md for the bound).

Shard loss: the owner gets `GunDown(conn, protocol, ShardLost(...), killed_streams)` for
each connection that was up on the dead shard, then `GunUp` (and `GunUpgrade`) from the
restarted shard's new connections. Nothing is delivered twice; what the dead process
held is lost (see docs/guide/ray.md).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from gluegun_actors._checks import check_headers
from gluegun_actors._options import Options, RetryFun
from gluegun_actors._options import WsOptions as WebSocketOptions
from gluegun_actors._shards import ray
from gluegun_actors._shards.handles import KeyMoved, RemoteConnection, RemoteStream, ShardLost
from gluegun_actors._shards.placement import Key, check_key, key_bytes, place
from gluegun_actors._shards.pump import Pump
from gluegun_actors._shards.shard import LocalShard, ShardActor, ShardInfo, fleet_sum
from gluegun_actors._shards.specs import (
    Meta,
    ShardConfig,
    Spec,
    SpecStore,
    portable_options,
    portable_ws_options,
)
from gluegun_actors._shards.translate import loads
from gluegun_actors._timeouts import Infinity, Timeout, timeout_ms, timeout_seconds
from gluegun_actors._url import url_or_address
from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    GluegunError,
    InvalidArgument,
    InvalidOptions,
    ManagerError,
    UpgradeFailed,
)
from gluegun_actors.events import GunData, GunError, GunResponse, GunUp, GunUpgrade
from gluegun_actors.mailbox import HIGH_WATER_BYTES, HIGH_WATER_MESSAGES, Mailbox, current
from gluegun_actors.manager import ConnectionStats, FleetStats, JitteredBackoff
from gluegun_actors.message import Frame
from gluegun_actors.websocket import checked_frames

__all__ = [
    "CALL_TIMEOUT_MS",
    "KeyMoved",
    "LocalShard",
    "RemoteConnection",
    "RemoteStream",
    "ShardInfo",
    "ShardLost",
    "ShardedManager",
    "add_shard",
    "attach",
    "await_up",
    "await_upgrade",
    "broadcast",
    "call",
    "call_all",
    "close_all",
    "count",
    "detach",
    "info",
    "keys",
    "lookup",
    "open",
    "open_many",
    "owner_mailbox",
    "remove",
    "send",
    "shard_of",
    "shutdown_all",
    "start",
    "stats",
    "stop",
    "totals",
]

T = TypeVar("T")

CALL_TIMEOUT_MS: Final = 60_000
"""How long a call waits for a shard's answer (a shard being restarted answers once up)."""
_RETRIES: Final = 3
"""Times a call that changes nothing is sent again to a shard Ray is restarting."""
_REFRESH_S: Final = 1.0
"""How stale a handle's list of shards may be (shards added in another process)."""
_RECONNECT: Final = JitteredBackoff()
"""The shards' default `reconnect`, as the local manager's."""
_STOP_MARGIN_MS: Final = 2_000
"""Beyond the closing timeout, what the graceful part of `stop` may take."""
_EXIT_WAIT_S: Final = 10.0
"""How long `stop` waits for the shard processes of this node to exit."""


class ShardedManager:
    """A handle on a sharded manager (what `start` and `attach` return); use it with this
    module's functions, or as a context manager that stops the manager on exit.

    It pickles: hand it to a Ray actor, which can then open keys, send, count, add shards
    or stop the manager, and `attach` an owner of its own. A copy carries no owner: keys
    it opens go to the starting owner unless it attaches one.
    """

    __slots__ = (
        "__weakref__",
        "_handles",
        "_lock",
        "_refreshed",
        "config",
        "default_owner",
        "mailbox",
        "max_batch",
        "options",
        "owner",
        "pump",
        "stopped",
        "wait_ms",
    )

    def __init__(
        self,
        config: ShardConfig,
        handles: list[Any],
        options: Options,
        default_owner: str,
        max_batch: int,
        wait_ms: int,
    ) -> None:
        self.config = config
        self._handles = handles
        self.options = options
        self.default_owner = default_owner
        """The owner id of the mailbox `start` attached: where keys go by default."""
        self.max_batch = max_batch
        self.wait_ms = wait_ms
        self.owner: str | None = None
        """This handle's owner id, when it has an owner in this process."""
        self.mailbox: Mailbox | None = None
        self.pump: Pump | None = None
        self.stopped = False
        self._lock = threading.Lock()
        self._refreshed = time.monotonic()

    @property
    def name(self) -> str:
        return self.config.name

    def __reduce__(self) -> tuple[Any, ...]:
        return _unpickle, (
            self.config,
            list(self._handles),
            self.options,
            self.default_owner,
            self.max_batch,
            self.wait_ms,
        )

    def __enter__(self) -> ShardedManager:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self)

    def __repr__(self) -> str:
        state = " stopped" if self.stopped else ""
        owner = f", owner {self.owner}" if self.owner else ""
        return f"<ShardedManager {self.name!r} of {len(self._handles)} shards{owner}{state}>"


def _unpickle(
    config: ShardConfig,
    handles: list[Any],
    options: Options,
    default_owner: str,
    max_batch: int,
    wait_ms: int,
) -> ShardedManager:
    return ShardedManager(config, handles, options, default_owner, max_batch, wait_ms)


# -- starting and stopping ----------------------------------------------------------------


def start(
    n: int,
    *,
    owner: Mailbox | None = None,
    options: Options | None = None,
    reconnect: RetryFun | None = _RECONNECT,
    name: str | None = None,
    high_water_messages: int = HIGH_WATER_MESSAGES,
    high_water_bytes: int = HIGH_WATER_BYTES,
    max_batch: int = 1_000,
    wait_ms: int = 200,
    max_owners: int = 16,
    actor_options: Mapping[str, Any] | None = None,
    detached: bool = False,
) -> ShardedManager:
    """Start `n` shards (Ray actors, restarted without limit) and attach `owner`.

    Ray must be initialized (`ray.init()`, or `ray.init(address="auto")` on a cluster).
    `owner` (a `Mailbox`, by default the caller's `mailbox.current()`) gets the messages
    of every key opened without another owner. `options` are the connections' defaults
    and `reconnect` their retry policy, as for `manager.start` (plain data only: no
    callables, no `ssl.SSLContext`). Each owner's mailbox inside a shard stops its
    connections' reads at `high_water_messages` / `high_water_bytes`; a pump takes up to
    `max_batch` messages per poll and a poll waits up to `wait_ms`. `max_owners` bounds
    the owners polling one shard at once. `actor_options` go to Ray for each shard
    (default `{"num_cpus": 1}`; e.g. `scheduling_strategy="SPREAD"`, `resources`,
    `runtime_env`). `detached` shards outlive the job that started them (stop them
    with `stop`). `name` (default: a fresh one) names the shards `<name>/<index>` in the
    Ray namespace `gluegun_actors.<name>`.

    Raises:
        InvalidArgument: `n` is not an int of at least 1, or a bad owner or name.
        InvalidOptions: options that cannot cross to a shard process, or a bad limit.
        BadStateError: Ray is not initialized.
        ManagerError: a manager of that name is running.

    Example:
        ```python
        ray.init(address="auto")
        sm = shards.start(8, actor_options={"scheduling_strategy": "SPREAD"})
        ```
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgument(
            f"a sharded manager needs at least 1 shard: n must be an int >= 1, got {n!r}"
        )
    if owner is None:
        owner = current()
    elif not isinstance(owner, Mailbox):
        raise InvalidArgument(f"owner must be a gluegun_actors.mailbox.Mailbox, got {owner!r}")
    options = portable_options(_options(options))
    if reconnect is not None and not isinstance(reconnect, JitteredBackoff):
        raise InvalidOptions(
            f"reconnect must be a manager.JitteredBackoff or None (plain data that can "
            f"cross to the shards), got {reconnect!r}"
        )
    for what, value in (
        ("high_water_messages", high_water_messages),
        ("high_water_bytes", high_water_bytes),
        ("max_batch", max_batch),
        ("max_owners", max_owners),
    ):
        _positive(what, value)
    wait = timeout_ms(wait_ms)
    if wait is None or wait < 1:
        raise InvalidOptions(
            f"wait_ms must be at least 1 ms (how long a poll waits), got {wait_ms!r}"
        )
    if actor_options is not None and not isinstance(actor_options, Mapping):
        raise InvalidArgument(
            f"actor_options must be a mapping of Ray actor options, got {actor_options!r}"
        )
    if name is None:
        name = f"shards-{uuid.uuid4().hex[:12]}"
    elif not isinstance(name, str) or not name or "/" in name:
        raise InvalidArgument(f"name must be a non-empty str without '/', got {name!r}")
    _check_ray()
    config = ShardConfig(
        name=name,
        namespace=f"gluegun_actors.{name}",
        reconnect=reconnect,
        high_water_messages=high_water_messages,
        high_water_bytes=high_water_bytes,
        max_concurrency=max_owners + 8,
        actor_options={"num_cpus": 1, **(actor_options or {})},
        detached=bool(detached),
    )
    if _shard_exists(config, 0):
        raise ManagerError(
            f"a sharded manager named {name!r} is running: stop it or pick another name"
        )
    store = SpecStore(config.namespace)
    store.clear()  # what a crashed run of the same name left
    try:
        store.put_meta(Meta(config, n))
    except (TypeError, AttributeError, pickle.PicklingError) as error:
        raise InvalidOptions(f"actor_options must be plain data that pickles: {error}") from None
    handles = [_create_shard(config, index) for index in range(n)]
    sm = ShardedManager(config, handles, options, "", max_batch, wait)
    try:
        _gather(sm, [handle.info.remote() for handle in handles], "info")
    except BaseException:
        _kill(sm)
        store.clear()
        raise
    sm.default_owner = _attach(sm, owner)
    return sm


def attach(sm: ShardedManager, owner: Mailbox | None = None) -> ShardedManager:
    """A handle of `sm` with an owner of its own in this process: keys it opens deliver
    to `owner` (a `Mailbox`, by default the caller's `mailbox.current()`), pulled by a
    pump thread here. For a Ray actor (or another thread) that owns connections.

    When `owner` dies (a thread's mailbox closes with its thread) its keys are closed, as
    a local connection closes with its owner; `detach` does so at once.

    Raises:
        InvalidArgument: not a `ShardedManager`, or an owner that is not a `Mailbox`.
        ManagerError: the manager has stopped.

    Example:
        ```python
        @ray.remote
        class Consumer:
            def __init__(self, sm):
                self.sm = shards.attach(sm, mailbox.Mailbox("consumer"))
        ```
    """
    _running(sm)
    if owner is None:
        owner = current()
    elif not isinstance(owner, Mailbox):
        raise InvalidArgument(f"owner must be a gluegun_actors.mailbox.Mailbox, got {owner!r}")
    mine = ShardedManager(
        sm.config, list(_handles(sm)), sm.options, sm.default_owner, sm.max_batch, sm.wait_ms
    )
    _attach(mine, owner)
    return mine


def _attach(sm: ShardedManager, owner: Mailbox) -> str:
    owner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    pump = Pump(
        owner_id,
        owner,
        lambda: _refresh(sm),
        max_batch=sm.max_batch,
        wait_ms=sm.wait_ms,
        name=f"{sm.name} {owner_id}",
    )
    sm.owner, sm.mailbox, sm.pump = owner_id, owner, pump
    pump.start()
    owner.monitor(lambda: _owner_gone(sm))
    return owner_id


def _owner_gone(sm: ShardedManager) -> None:
    """The owner's mailbox closed: stop its pump and close its keys, without waiting."""
    pump, owner = sm.pump, sm.owner
    if pump is None or owner is None or sm.stopped:
        return
    pump.stop(timeout=0)
    with contextlib.suppress(Exception):
        for handle in _handles(sm):
            handle.drop_owner.remote(owner)


def detach(sm: ShardedManager) -> int:
    """Stop this handle's owner: its pump stops and its keys are closed gracefully on every
    shard (as when a local owner dies). Returns how many keys were closed.

    Raises:
        BadStateError: this handle has no owner in this process.
        ManagerError: the manager has stopped.
    """
    owner = _owner_here(sm)
    pump = sm.pump
    assert pump is not None
    pump.stop()
    sm.owner, sm.mailbox, sm.pump = None, None, None
    return sum(_gather(sm, [h.drop_owner.remote(owner) for h in _handles(sm)], "drop_owner"))


def stop(sm: ShardedManager) -> None:
    """Shut every connection down gracefully, stop the pumps of this process, kill the
    shard actors and delete the specs: no shard process is left. Harmless twice.

    Raises:
        InvalidArgument: `sm` is not a `ShardedManager`.

    Example:
        ```python
        shards.stop(sm)   # or: with shards.start(2) as sm: ...
        ```
    """
    _check(sm)
    if sm.stopped:
        return
    budget_s = (sm.options.closing_timeout + _STOP_MARGIN_MS) / 1000
    infos: list[ShardInfo] = []
    with contextlib.suppress(GluegunError, _Unavailable):
        infos = _gather(sm, [h.info.remote() for h in _handles(sm)], "info", timeout_s=5.0)
        _gather(
            sm,
            [h.shutdown_all.remote(True) for h in _handles(sm)],
            "shutdown_all",
            timeout_s=budget_s,
        )
    if sm.pump is not None:
        sm.pump.stop()
    _kill(sm)
    SpecStore(sm.config.namespace).clear()
    sm.stopped = True
    here = socket.gethostname()
    deadline = time.monotonic() + _EXIT_WAIT_S
    for pid in [shard.pid for shard in infos if shard.node == here]:
        while _process_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _kill(sm: ShardedManager) -> None:
    for handle in _handles(sm):
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- keys -----------------------------------------------------------------------------------


def open(
    sm: ShardedManager,
    key: Key,
    host: str | None = None,
    port: int | None = None,
    *,
    url: str | None = None,
    path: str | None = None,
    headers: Any = (),
    options: Options | None = None,
    ws_options: WebSocketOptions | None = None,
    owner: str | None = None,
) -> RemoteConnection:
    """Open a connection under `key` on its shard and return its handle (it connects in
    the background), as `manager.open` does: a `url` (or a `path`) makes a WebSocket key,
    upgraded again after every reconnect; `http://` and `https://` an HTTP key.

    The key's messages go to this handle's owner (`start`, `attach`), or to the owner id
    `owner` (an id from another handle's `.owner`; with no pump it is read only by code
    in the shard, see `call`).

    Raises:
        ManagerError: the key is in use, or the manager has stopped.
        InvalidArgument: a key that is not plain data, both or neither of url and
            host/port, a bad URL or header; nothing was started.
        InvalidOptions: options that cannot cross to a shard process.

    Example:
        ```python
        shards.open(sm, ("feed", 17), url="wss://feeds.example.com/17")
        ```
    """
    _running(sm)
    spec = _spec(sm, key, host, port, url, path, headers, options, ws_options, owner)
    remote: RemoteConnection = _keyed(sm, key, "open", spec, retry=False)
    return remote


def open_many(
    sm: ShardedManager,
    urls: Mapping[Key, str] | Iterable[tuple[Key, str]],
    *,
    headers: Any = (),
    options: Options | None = None,
    ws_options: WebSocketOptions | None = None,
    owner: str | None = None,
) -> list[RemoteConnection]:
    """`open` for many keys at once, each with its URL: one call per shard, all shards at
    once, and the spec store written in parallel inside each shard. Returns the handles in
    the order given.

    Everything is checked before anything is sent. All or nothing per shard: a shard that
    holds one of its keys already opens none of its keys and the call raises, though other
    shards may have opened theirs (`keys` tells which).

    Raises:
        ManagerError: a key in use (or given twice), or the manager has stopped.
        InvalidArgument: a key that is not plain data, or a bad URL or header.
        InvalidOptions: options that cannot cross to a shard process.

    Example:
        ```python
        shards.open_many(sm, {("feed", n): f"wss://feeds.example.com/{n}" for n in range(5000)})
        ```
    """
    _running(sm)
    pairs = list(urls.items() if isinstance(urls, Mapping) else urls)
    specs = [
        _spec(sm, key, None, None, url, None, headers, options, ws_options, owner)
        for key, url in pairs
    ]
    seen: set[bytes] = set()
    for spec in specs:
        data = spec.key_bytes
        if data in seen:
            raise ManagerError(f"the key {spec.key!r} is given twice")
        seen.add(data)
    handles = _handles(sm)
    by_shard: dict[int, list[Spec]] = {}
    for spec in specs:
        by_shard.setdefault(place(spec.key_bytes, range(len(handles))), []).append(spec)
    shards_and_handles = [(index, handles[index]) for index in by_shard]
    refs = [handle.open_many.remote(by_shard[index]) for index, handle in shards_and_handles]
    opened: dict[bytes, RemoteConnection] = {}
    failures: list[GluegunError] = []
    for (index, _), ref in zip(shards_and_handles, refs, strict=True):
        try:
            for remote in _gather(sm, [ref], "open_many")[0]:
                opened[key_bytes(remote.key)] = remote
        except GluegunError as error:
            failures.append(error)
        except _Unavailable:
            failures.append(ManagerError(f"shard {index} is unavailable; it may have opened"))
    if failures:
        raise failures[0]
    return [opened[spec.key_bytes] for spec in specs]


def _spec(
    sm: ShardedManager,
    key: Key,
    host: str | None,
    port: int | None,
    url: str | None,
    path: str | None,
    headers: Any,
    options: Options | None,
    ws_options: WebSocketOptions | None,
    owner: str | None,
) -> Spec:
    """The checked spec of a key to open: plain data, ready to cross to its shard."""
    check_key(key)
    owner_id = owner if owner is not None else (sm.owner or sm.default_owner)
    if not isinstance(owner_id, str) or not owner_id:
        raise InvalidArgument(f"owner must be an owner id (a str), got {owner_id!r}")
    resolved = sm.options if options is None else portable_options(_options(options))
    host, port, path, resolved = url_or_address(url, host, port, path, resolved)
    if ws_options is not None:
        if not isinstance(ws_options, WebSocketOptions):
            raise InvalidOptions(
                f"ws_options must come from websocket.options(), got {ws_options!r}"
            )
        portable_ws_options(ws_options)
    return Spec(key, host, port, path, check_headers(headers), resolved, ws_options, owner_id)


def lookup(sm: ShardedManager, key: Key) -> RemoteConnection:
    """The key's current connection, as its messages name it.

    Raises:
        ManagerError: an unknown key, or the manager has stopped.
    """
    remote: RemoteConnection = _keyed(sm, key, "lookup", key)
    return remote


def shard_of(sm: ShardedManager, key: Key) -> int:
    """The index of the shard `key` lives on (by rendezvous hashing; no call is made).

    Raises:
        InvalidArgument: a key that is not plain data.
    """
    _check(sm)
    return place(key_bytes(check_key(key)), range(len(_handles(sm))))


def keys(sm: ShardedManager, state: str | None = None) -> list[Hashable]:
    """Every key (shard by shard, each in opening order); only those in `state` if given
    (`connected`, `connecting`, `not_connected`, `closing`, `restarting`)."""
    found: list[list[Hashable]] = _all(sm, "keys", state)
    return [key for part in found for key in part]


def count(sm: ShardedManager) -> dict[str, int]:
    """How many keys are in each state, summed over the shards.

    Example:
        ```python
        shards.count(sm)  # {"connected": 199998, "restarting": 2}
        ```
    """
    total: Counter[str] = Counter()
    for part in _all(sm, "count"):
        total.update(part)
    return dict(total)


def stats(sm: ShardedManager, key: Key) -> ConnectionStats:
    """The key's counters over all its connections in its shard's current process.

    Raises:
        ManagerError: an unknown key, or the manager has stopped.
    """
    found: ConnectionStats = loads(_keyed(sm, key, "stats", key))
    return found


def totals(sm: ShardedManager) -> FleetStats:
    """The fleet's counters summed over every key of every shard."""
    return fleet_sum(loads(part) for part in _all(sm, "totals"))


def info(sm: ShardedManager) -> list[ShardInfo]:
    """Each shard's index, incarnation, process id, node, connections and queues."""
    found: list[ShardInfo] = _all(sm, "info")
    return found


def broadcast(
    sm: ShardedManager, frame: Frame | Sequence[Frame], keys: Iterable[Key] | None = None
) -> int:
    """Send `frame` (or frames, in order) on every upgraded WebSocket key (of `keys` if
    given; unknown ones are skipped); how many it was sent to. As `manager.broadcast`,
    a key that is reconnecting is skipped.

    Raises:
        InvalidArgument: not a frame or a list of frames.
    """
    frames = checked_frames(frame)
    if keys is None:
        return sum(n or 0 for n in _all(sm, "broadcast", frames, None, unavailable="skip"))
    handles = _handles(sm)
    by_shard: dict[int, list[Key]] = {}
    for key in keys:
        by_shard.setdefault(place(key_bytes(check_key(key)), range(len(handles))), []).append(key)
    sent = 0
    for index, part in by_shard.items():
        found = _each(sm, [(index, handles[index])], "broadcast", (frames, part), "skip")
        sent += found[0] or 0
    return sent


def send(sm: ShardedManager, key: Key, frame: Frame | Sequence[Frame]) -> None:
    """Send `frame` (or frames, in order) on the key's WebSocket.

    Raises:
        ManagerError: an unknown key or an HTTP key, or the manager has stopped.
        BadStateError: the WebSocket is not upgraded now (reconnecting, or being upgraded
            again): nothing is queued.
    """
    _keyed(sm, key, "send", key, checked_frames(frame), retry=False)


def remove(sm: ShardedManager, key: Key) -> None:
    """Stop the key's connection gracefully (WebSocket close 1001) and forget the key.

    Raises:
        ManagerError: an unknown key, or the manager has stopped.
    """
    _keyed(sm, key, "remove", key, retry=False)


def shutdown_all(sm: ShardedManager) -> int:
    """Stop every connection gracefully, all at once; forget every key. Returns how many
    were running. The manager and its shards stay, ready for new keys."""
    return sum(_all(sm, "shutdown_all", True, unavailable="raise"))


def close_all(sm: ShardedManager) -> int:
    """Close every connection at once (no closing handshake); forget every key."""
    return sum(_all(sm, "shutdown_all", False, unavailable="raise"))


# -- the owner's waits ----------------------------------------------------------------------


def owner_mailbox(sm: ShardedManager) -> Mailbox:
    """The mailbox this handle's pump fills (the `owner` of `start` or `attach`).

    Raises:
        BadStateError: this handle has no owner in this process (a pickled copy: `attach`).
    """
    _owner_here(sm)
    assert sm.mailbox is not None
    return sm.mailbox


def await_up(sm: ShardedManager, key: Key, timeout: Timeout = 5000) -> RemoteConnection:
    """Take a `GunUp` of the key from this handle's mailbox (any of the key's connections,
    after a restart or a move too) and return its connection; other messages stay.

    Raises:
        AwaitTimeout: none in time.
        ManagerError: an unknown key, a key of another owner, or the manager has stopped.
        BadStateError: this handle has no owner in this process.

    Example:
        ```python
        conn = shards.await_up(sm, "api", 5000)
        ```
    """
    mailbox = _owned_by_me(sm, key)
    up = mailbox.receive(lambda m: type(m) is GunUp and _key_of(m) == key, timeout)
    conn: RemoteConnection = up.conn  # type: ignore[attr-defined]
    return conn


def await_upgrade(sm: ShardedManager, key: Key, timeout: Timeout = 5000) -> GunUpgrade:
    """Take a `GunUpgrade` of the key's WebSocket from this handle's mailbox; its `GunUp`
    stays there.

    Raises:
        AwaitTimeout: not upgraded in time.
        UpgradeFailed: the server refused the upgrade.
        ManagerError: an unknown key, a key of another owner, or the manager has stopped.
        BadStateError: this handle has no owner in this process.

    Example:
        ```python
        upgrade = shards.await_upgrade(sm, "btc", 5000)
        ```
    """
    mailbox = _owned_by_me(sm, key)
    seconds = timeout_seconds(timeout)
    deadline = None if seconds is None else time.monotonic() + seconds

    def upgraded(message: object) -> bool:
        kind = type(message)
        if kind is GunUpgrade or kind is GunResponse:  # a response: the upgrade's refusal
            return _key_of(message) == key
        return (
            kind is GunError
            and isinstance(message.reason, UpgradeFailed)  # type: ignore[attr-defined]
            and _key_of(message) == key
        )

    found = mailbox.receive(upgraded, timeout)
    if isinstance(found, GunError):
        raise found.reason
    if isinstance(found, GunResponse):
        raise _refusal(mailbox, found, deadline)
    assert isinstance(found, GunUpgrade)
    return found


def _refusal(mailbox: Mailbox, response: GunResponse, deadline: float | None) -> UpgradeFailed:
    """The `UpgradeFailed` of a refused upgrade, with the body of the refusal if it comes
    before the deadline (as `websocket.await_upgrade` reports it)."""
    body = b""
    fin = response.is_fin
    stream = response.stream
    while not fin:
        left: Timeout = Infinity
        if deadline is not None:
            left = max(0, int((deadline - time.monotonic()) * 1000))
        try:
            data = mailbox.receive(lambda m: type(m) is GunData and m.stream == stream, left)
        except AwaitTimeout:
            break
        assert isinstance(data, GunData)
        body += data.data
        fin = data.is_fin
    return UpgradeFailed.of_response(stream, response.status, response.headers, body)


# -- growing and running code in the shards -------------------------------------------------


def add_shard(sm: ShardedManager, *, timeout: Timeout = 5000) -> int:
    """Start one more shard and move to it the keys whose place it now is (about 1/(N+1)
    of them); returns how many moved.

    Each moved key's connection is closed on its old shard (at once, no closing
    handshake) and its owner gets `GunDown(conn, protocol, KeyMoved(...), streams)` if it
    was up; once the owners' pumps have taken those (up to `timeout` ms), the key opens on
    the new shard, whose `GunUp` follows. Not atomic: while it runs, a moving key may be
    unknown to `lookup` and `send`. Call it from the process that started the manager
    (a shard belongs to the process that created it, unless `detached`).

    Raises:
        ManagerError: the manager has stopped.
    """
    _running(sm)
    wait = timeout_ms(timeout)
    with sm._lock:
        handles = list(sm._handles)
    index = len(handles)
    handle = _create_shard(sm.config, index)
    _gather(sm, [handle.info.remote()], "info")
    store = SpecStore(sm.config.namespace)
    store.put_meta(Meta(sm.config, index + 1))
    with sm._lock:
        sm._handles.append(handle)
    moving: list[list[Spec]] = _gather(
        sm, [h.release.remote(index + 1) for h in handles], "release"
    )
    budget = CALL_TIMEOUT_MS if wait is None else wait
    _gather(sm, [h.await_released.remote(budget) for h in handles], "await_released")
    specs = [spec for part in moving for spec in part]
    if specs:
        _gather(sm, [handle.open_many.remote(specs)], "open_many")
    return len(specs)


def call(sm: ShardedManager, shard: int, function: Callable[..., T], *args: Any) -> T:
    """Run `function(local, *args)` inside the process of shard `shard` and return what it
    returns (it must pickle back).

    `local` is a `LocalShard`: the shard's index, its owners' mailboxes (code here can be
    the owner of keys opened with `owner=` an id of its choosing, and read their messages
    where they arrive), its keys' local `Connection`s for the `connection`, `http` and
    `websocket` calls, and a `scratch` dict kept between calls. `function` and `args` must
    pickle with Ray's cloudpickle: a function of a module the shards can import, or one
    defined in `__main__`.

    Raises:
        InvalidArgument: `function` is not callable, or `shard` is not a shard's index.
        ManagerError: the manager has stopped.

    Example:
        ```python
        def queued(local, owner):
            return len(local.mailbox(owner))

        shards.call(sm, 0, queued, "beside")
        ```
    """
    _running(sm)
    _callable(function)
    handles = _handles(sm)
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < len(handles):
        raise InvalidArgument(f"shard must be an index in 0..{len(handles) - 1}, got {shard!r}")
    result: T = _gather(sm, [handles[shard].call.remote(function, args)], "call")[0]
    return result


def call_all(sm: ShardedManager, function: Callable[..., T], *args: Any) -> list[T]:
    """`call` on every shard at once; the results in shard order.

    Raises:
        InvalidArgument: `function` is not callable.
        ManagerError: the manager has stopped.

    Example:
        ```python
        pids = shards.call_all(sm, lambda local: os.getpid())
        ```
    """
    _running(sm)
    _callable(function)
    results: list[T] = _gather(sm, [h.call.remote(function, args) for h in _handles(sm)], "call")
    return results


# -- helpers --------------------------------------------------------------------------------


def _check(sm: object) -> ShardedManager:
    if not isinstance(sm, ShardedManager):
        raise InvalidArgument(f"expected a ShardedManager (from shards.start), got {sm!r}")
    return sm


def _running(sm: object) -> ShardedManager:
    checked = _check(sm)
    if checked.stopped:
        raise ManagerError(f"{checked!r} has stopped")
    return checked


def _callable(function: object) -> None:
    if not callable(function):
        raise InvalidArgument(f"function must be callable, got {function!r}")


def _check_ray() -> None:
    if not ray.is_initialized():
        raise BadStateError(
            "Ray is not initialized: call ray.init() first (ray.init(address='auto') to "
            "join a running cluster)"
        )


def _options(options: object) -> Options:
    if options is None:
        return Options()
    if not isinstance(options, Options):
        raise InvalidOptions(f"options must come from connection.options(), got {options!r}")
    return options


def _positive(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptions(f"{what} must be a positive int, got {value!r}")


def _actor_name(config: ShardConfig, index: int) -> str:
    return f"{config.name}/{index}"


def _shard_exists(config: ShardConfig, index: int) -> bool:
    try:
        ray.get_actor(_actor_name(config, index), namespace=config.namespace)
    except ValueError:
        return False
    return True


def _create_shard(config: ShardConfig, index: int) -> Any:
    lifetime = "detached" if config.detached else None
    return ShardActor.options(
        name=_actor_name(config, index),
        namespace=config.namespace,
        max_restarts=-1,
        max_task_retries=0,
        max_concurrency=config.max_concurrency,
        lifetime=lifetime,
        **config.actor_options,
    ).remote(config, index)


def _handles(sm: ShardedManager) -> list[Any]:
    """The shards, refreshed at most every `_REFRESH_S` (another process may add one)."""
    if time.monotonic() - sm._refreshed > _REFRESH_S:
        _refresh(sm)
    with sm._lock:
        return list(sm._handles)


def _refresh(sm: ShardedManager) -> list[Any] | None:
    """Look for shards added elsewhere; None once the manager is gone (stopped anywhere)."""
    if sm.stopped:
        return None
    meta = SpecStore(sm.config.namespace).meta()
    if meta is None:
        return None
    with sm._lock:
        known = len(sm._handles)
        sm._refreshed = time.monotonic()
    added = [
        ray.get_actor(_actor_name(sm.config, index), namespace=sm.config.namespace)
        for index in range(known, meta.shards)
    ]
    with sm._lock:
        if len(sm._handles) == known:
            sm._handles.extend(added)
        return list(sm._handles)


def _key_of(message: object) -> object:
    """The key of a message's `RemoteConnection` (None for any other message)."""
    return getattr(getattr(message, "conn", None), "key", None)


def _owner_here(sm: ShardedManager) -> str:
    _running(sm)
    if sm.owner is None or sm.pump is None:
        raise BadStateError(
            f"{sm!r} has no owner in this process (a pickled copy?): shards.attach(sm) gives it one"
        )
    return sm.owner


def _owned_by_me(sm: ShardedManager, key: Key) -> Mailbox:
    owner = _owner_here(sm)
    found = _keyed(sm, key, "owner_of", key)
    if found != owner:
        raise ManagerError(
            f"the key {key!r} belongs to the owner {found!r}, not to this handle's ({owner!r}): "
            "wait where its messages go"
        )
    assert sm.mailbox is not None
    return sm.mailbox


def _keyed(sm: ShardedManager, key: Key, method: str, *args: Any, retry: bool = True) -> Any:
    """Call `method` on the key's shard; once more after a refresh if a shard was added."""
    _running(sm)
    data = key_bytes(check_key(key))
    handles = _handles(sm)
    index = place(data, range(len(handles)))
    try:
        return _call(sm, handles[index], index, method, args, retry)
    except ManagerError:
        fresh = _refresh(sm)
        if fresh is None or len(fresh) == len(handles):
            raise
        index = place(data, range(len(fresh)))
        return _call(sm, fresh[index], index, method, args, retry)


def _call(
    sm: ShardedManager, handle: Any, index: int, method: str, args: tuple[Any, ...], retry: bool
) -> Any:
    """`method` on one shard; a call that changes nothing is sent again while Ray restarts
    the shard, one that does is not (it may or may not have run)."""
    return _each(sm, [(index, handle)], method, args, "retry" if retry else "raise")[0]


def _all(sm: ShardedManager, method: str, *args: Any, unavailable: str = "retry") -> list[Any]:
    """`method` on every shard at once; the answers in shard order. A shard that Ray is
    restarting is asked again (`unavailable="retry"`), skipped (`"skip"`: None), or
    fails the call (`"raise"`)."""
    _running(sm)
    return _each(sm, list(enumerate(_handles(sm))), method, args, unavailable)


def _each(
    sm: ShardedManager,
    shards: list[tuple[int, Any]],
    method: str,
    args: tuple[Any, ...],
    unavailable: str,
) -> list[Any]:
    refs = [getattr(handle, method).remote(*args) for _, handle in shards]
    results: list[Any] = []
    for (index, handle), ref in zip(shards, refs, strict=True):
        for attempt in range(_RETRIES):
            try:
                results.append(_gather(sm, [ref], method)[0])
                break
            except _Unavailable:
                if unavailable == "skip":
                    results.append(None)
                    break
                if unavailable == "raise" or attempt + 1 == _RETRIES:
                    outcome = "failed each retry" if unavailable == "retry" else "may have run"
                    raise ManagerError(
                        f"shard {index} of {sm!r} is unavailable (Ray is restarting it?): "
                        f"{method} {outcome}"
                    ) from None
                time.sleep(0.2 * (attempt + 1))
                ref = getattr(handle, method).remote(*args)
    return results


class _Unavailable(Exception):
    """A shard did not answer because Ray is restarting it."""


def _gather(
    sm: ShardedManager, refs: list[Any], what: str, timeout_s: float | None = None
) -> list[Any]:
    """The answers of `refs`, with Ray's errors turned into ours."""
    wait = CALL_TIMEOUT_MS / 1000 if timeout_s is None else timeout_s
    try:
        return list(ray.get(refs, timeout=wait))
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, GluegunError):
            raise cause from None
        raise ManagerError(f"{what} failed in a shard of {sm!r}: {error}") from None
    except ray.exceptions.ActorUnavailableError:
        raise _Unavailable() from None
    except ray.exceptions.ActorDiedError:
        raise ManagerError(f"{sm!r} has stopped (a shard is dead)") from None
    except ray.exceptions.GetTimeoutError:
        raise ManagerError(f"a shard of {sm!r} did not answer {what} within {wait} s") from None
    except ray.exceptions.RayError as error:
        raise ManagerError(f"{what} failed in a shard of {sm!r}: {error}") from None

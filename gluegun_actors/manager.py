"""Fleets of connections by key: a registry beside a dynamic supervisor.

A manager opens connections under keys the caller chooses (Elixir's `Registry` beside a
`DynamicSupervisor`). Each connection runs as a transient child of the manager's
supervisor: it reconnects by its own retry policy, and when that runs out (or it
crashes) the supervisor opens a new one from the same key, host, options and upgrade,
after a backoff. The key stays valid throughout:

    mgr = manager.start()
    manager.open(mgr, "btc", url="ws://127.0.0.1:8080/feed")
    manager.await_upgrade(mgr, "btc")
    manager.broadcast(mgr, message.Text("ping"))
    manager.stop(mgr)

Messages. Every connection's messages go to the manager's owner, as a connection's go to
its owner. When a key's connection is replaced the owner gets, in this order: the old
connection's `Down`, `Restarted(key, old, new, stream)`, then the new one's `GunUp` (and
`GunUpgrade` for a WebSocket key). Reconnects inside one connection (`GunDown`, `GunUp`,
a fresh `GunUpgrade` with `reupgrade`) keep the handle and the stream.

Reconnects are spread by default (`JitteredBackoff`, "full jitter"): a fleet that lost
its server does not come back all in the same millisecond. See docs/supervision.md for
the comparison with Gun's and websockets' defaults.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import pykka

from gluegun_actors import connection, supervisor, websocket
from gluegun_actors._await import owner_mailbox
from gluegun_actors._connection import commands
from gluegun_actors._connection.destination import caller
from gluegun_actors._connection.handle import Connection
from gluegun_actors._connection.stats import ConnectionStats
from gluegun_actors._options import Options, RetryFun
from gluegun_actors._options import WsOptions as WebSocketOptions
from gluegun_actors._runtime import deathwatch
from gluegun_actors._supervision.supervisor import Call, Supervisor, exit_reason, normal_exit
from gluegun_actors._timeouts import Infinity, Timeout, timeout_seconds
from gluegun_actors._types import StreamRef
from gluegun_actors._url import url_or_address
from gluegun_actors.errors import (
    AwaitTimeout,
    ConnectionTerminated,
    InvalidArgument,
    InvalidOptions,
    ManagerError,
    SupervisorError,
)
from gluegun_actors.events import GunUpgrade, Restarted
from gluegun_actors.mailbox import Mailbox
from gluegun_actors.message import Frame
from gluegun_actors.websocket import checked_frames, upgrade_command

__all__ = [
    "ConnectionStats",
    "FleetStats",
    "JitteredBackoff",
    "Manager",
    "Restarted",
    "await_up",
    "await_upgrade",
    "broadcast",
    "close_all",
    "count",
    "keys",
    "lookup",
    "open",
    "remove",
    "shutdown_all",
    "start",
    "stats",
    "stop",
    "stream_of",
    "totals",
]

RESTARTING = "restarting"
"""The state of a key whose connection stopped and whose next one is not started yet."""
_STOP_MARGIN_MS = 2_000
"""Beyond the closing timeout, what a graceful stop may take (the socket's linger)."""


@dataclass(frozen=True, slots=True)
class JitteredBackoff:
    """The manager's default `retry_fun`: "full jitter" (exponential backoff, each delay
    drawn uniformly below its ceiling). Retry n after a loss waits a random time in
    [0, min(max_ms, min_ms * 2**(n-1))) ms, so after a server restart a fleet's
    reconnects spread over the first `min_ms`, and wider while the server stays down."""

    min_ms: int = 500
    max_ms: int = 30_000

    def __post_init__(self) -> None:
        for name in ("min_ms", "max_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOptions(f"{name} must be a positive int (ms), got {value!r}")
        if self.min_ms > self.max_ms:
            raise InvalidOptions(f"min_ms must be <= max_ms, got {self.min_ms} > {self.max_ms}")

    def __call__(self, retries_left: int, options: Options) -> tuple[int, int]:
        attempt = max(1, options.retry - retries_left + 1)
        ceiling = min(self.max_ms, self.min_ms * 2 ** min(attempt - 1, 30))
        return retries_left - 1, int(random.uniform(0, ceiling))


@dataclass(frozen=True, slots=True)
class FleetStats:
    """Totals over a manager's keys (`totals`)."""

    connections: int
    states: dict[str, int]
    """How many keys are in each state (see `count`)."""
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    reconnects: int
    restarts: int


@dataclass(slots=True)
class _Entry:
    """One key: how to open its connection, and its current one."""

    key: Hashable
    host: str
    port: int
    options: Options
    upgrade: commands.Upgrade | None
    conn: Connection | None = None
    stream: StreamRef | None = None
    earlier: ConnectionStats | None = None
    """Its earlier connections' counters, summed."""
    restarts: int = 0
    replaced: threading.Event = field(default_factory=threading.Event)

    def state(self) -> str:
        conn = self.conn
        return RESTARTING if conn is None or not conn.alive else conn.stats.state

    def stats(self) -> ConnectionStats:
        conn = self.conn
        now = conn.stats.snapshot() if conn is not None else ConnectionStats(RESTARTING, 0.0)
        total = now if self.earlier is None else self.earlier + now
        return replace(total, state=self.state(), restarts=self.restarts)


class Manager:
    """A handle on a fleet (what `start` returns); use it with this module's functions,
    or as a context manager that stops the fleet on exit."""

    __slots__ = (
        "__weakref__",
        "entries",
        "lock",
        "options",
        "owner",
        "reconnect",
        "stopped",
        "supervisor",
    )

    def __init__(
        self,
        owner: Mailbox | pykka.ActorRef[Any],
        options: Options,
        reconnect: RetryFun | None,
    ) -> None:
        self.owner = owner
        self.options = options
        self.reconnect = reconnect
        self.lock = threading.Lock()
        self.entries: dict[Hashable, _Entry] = {}
        self.stopped = False
        self.supervisor: Supervisor | None = None

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self)

    def __repr__(self) -> str:
        state = " stopped" if self.stopped else ""
        return f"<Manager of {len(self.entries)} connections{state}>"

    # -- what the supervisor calls, on its thread ------------------------------------

    def start_child(self, key: Hashable) -> Connection:
        """Open the key's connection: the first, or the next one after the last stopped."""
        with self.lock:
            entry = self.entries.get(key)
        if entry is None:
            raise ManagerError(f"{self!r} no longer has the key {key!r}")
        conn, options = connection.handle(entry.host, entry.port, entry.options)
        upgrade = entry.upgrade
        if upgrade is not None:
            fresh = StreamRef(reply_to=self.owner, resilient=upgrade.options.reupgrade)
            upgrade = replace(upgrade, stream=fresh)
        old = entry.conn
        with self.lock:
            if old is not None:
                done = old.stats.snapshot()
                entry.earlier = done if entry.earlier is None else entry.earlier + done
                entry.restarts += 1
            entry.conn = conn
            entry.stream = None if upgrade is None else upgrade.stream
            replaced, entry.replaced = entry.replaced, threading.Event()
        if old is not None:
            conn.owner.deliver(Restarted(key, old, conn, entry.stream))
        connection.launch(conn, options)
        if upgrade is not None:
            conn.tell(upgrade)
        assert conn.actor_ref is not None
        deathwatch.watch(conn.actor_ref, lambda reason: self._exited(entry, conn, reason))
        replaced.set()
        return conn

    def _exited(self, entry: _Entry, conn: Connection, reason: object) -> None:
        """A connection stopped; one that stopped normally is not restarted: forget its key."""
        if not normal_exit(exit_reason(conn, reason)):
            return
        with self.lock:
            if self.entries.get(entry.key) is entry and entry.conn is conn:
                del self.entries[entry.key]
        entry.replaced.set()

    def _supervisor_exited(self, reason: object) -> None:
        with self.lock:
            self.stopped = True
            entries = list(self.entries.values())
            self.entries.clear()
        for entry in entries:
            entry.replaced.set()


def start(
    *,
    owner: Mailbox | pykka.ActorRef[Any] | None = None,
    options: Options | None = None,
    reconnect: RetryFun | None = JitteredBackoff(),
    backoff: tuple[int, int] = (1_000, 30_000),
    intensity: int | None = None,
    period: int = 5_000,
    max_connections: int | None = None,
) -> Manager:
    """Start a manager, with no connections yet.

    `owner` (a `Mailbox` or an `ActorRef`, by default the caller) gets every
    connection's messages, `Restarted` when a key's connection is replaced, and
    `Down(mgr.supervisor, reason)` if the fleet stops on its own (not after `stop`).
    `options` are the connections' defaults. `reconnect` is the `retry_fun` of every
    connection whose options set none (None keeps Gun's: an immediate first retry, then
    `retry_timeout`). `backoff` (min_ms, max_ms) paces the replacement of a connection
    whose retries ran out. `intensity`: more than this many replacements within `period`
    ms stop the whole fleet (None, the default: never; a fleet's connections fail
    together when their server does).

    Raises:
        InvalidArgument: an owner that is neither a `Mailbox` nor an `ActorRef`.
        InvalidOptions: `options` not from `connection.options()`, a `reconnect` that is
            not callable, a bad backoff, intensity or period.

    Example:
        ```python
        with manager.start(options=connection.options(retry=5)) as mgr:
            manager.open(mgr, "btc", url="ws://127.0.0.1:8080/feed")
            manager.await_upgrade(mgr, "btc", 5000)
        ```
    """
    if owner is None:
        owner = caller()
    elif not isinstance(owner, Mailbox | pykka.ActorRef):
        raise InvalidArgument(f"owner must be a Mailbox or a pykka.ActorRef, got {owner!r}")
    if options is None:
        options = Options()
    elif not isinstance(options, Options):
        raise InvalidOptions(f"options must come from connection.options(), got {options!r}")
    if reconnect is not None and not callable(reconnect):
        raise InvalidOptions(f"reconnect must be a retry_fun or None, got {reconnect!r}")
    mgr = Manager(owner, options, reconnect)
    template = supervisor.child(
        "connection",
        mgr.start_child,
        restart="transient",
        shutdown=options.closing_timeout + _STOP_MARGIN_MS,
        backoff=backoff,
    )
    sup = supervisor.start_dynamic(
        template, intensity=intensity, period=period, max_children=max_connections, owner=owner
    )
    mgr.supervisor = sup
    deathwatch.watch(sup.actor_ref, mgr._supervisor_exited)
    return mgr


def open(
    mgr: Manager,
    key: Hashable,
    host: str | None = None,
    port: int | None = None,
    *,
    url: str | None = None,
    path: str | None = None,
    headers: Any = (),
    options: Options | None = None,
    ws_options: WebSocketOptions | None = None,
) -> Connection:
    """Open a connection under `key` and return it (it connects in the background).

    Give `host` and `port`, or a `url`: `ws://` and `wss://` open a WebSocket on its path
    (as `path=` does with `host` and `port`), `http://` and `https://` a plain HTTP/1.1
    connection. A WebSocket key is upgraded again after every reconnect (`ws_options`
    default to `websocket.options(reupgrade=True)`). `options` default to the manager's.

    Raises:
        ManagerError: the key is in use, or the manager has stopped.
        InvalidArgument: an unhashable key, both or neither of url and host/port, a bad
            URL; nothing was started.
        InvalidOptions: options not from `connection.options()` / `websocket.options()`.

    Example:
        ```python
        manager.open(mgr, "eth", url="wss://feeds.example.com/eth")
        manager.open(mgr, "api", "127.0.0.1", 8081)  # plain HTTP/1.1
        ```
    """
    _check(mgr)
    try:
        hash(key)
    except TypeError:
        raise InvalidArgument(f"a key must be hashable, got {key!r}") from None
    if options is None:
        options = mgr.options
    elif not isinstance(options, Options):
        raise InvalidOptions(f"options must come from connection.options(), got {options!r}")
    host, port, path, options = url_or_address(url, host, port, path, options)
    options = replace(options, owner=mgr.owner)
    if options.retry_fun is None and mgr.reconnect is not None:
        options = replace(options, retry_fun=mgr.reconnect)
    upgrade = None
    if path is not None:
        if ws_options is None:
            ws_options = WebSocketOptions(reupgrade=True)
        upgrade = upgrade_command(path, headers, ws_options, mgr.owner)
    entry = _Entry(key, host, port, options, upgrade)
    with mgr.lock:
        _check_running(mgr)
        if key in mgr.entries:
            raise ManagerError(f"{mgr!r} already has a connection under the key {key!r}")
        mgr.entries[key] = entry
    try:
        conn: Connection = supervisor.start_child(_supervisor(mgr), key, id=key)
    except BaseException:
        with mgr.lock:
            if mgr.entries.get(key) is entry:
                del mgr.entries[key]
        raise
    return conn


def lookup(mgr: Manager, key: Hashable) -> Connection:
    """The key's current connection (it may have stopped, its replacement not started yet:
    see `await_up`).

    Raises:
        ManagerError: an unknown key, or the manager has stopped.

    Example:
        ```python
        http.get(manager.lookup(mgr, "api"), "/health")
        ```
    """
    conn = _entry(mgr, key).conn
    assert conn is not None
    return conn


def stream_of(mgr: Manager, key: Hashable) -> StreamRef | None:
    """The key's current WebSocket stream (new with each new connection), None for HTTP.

    Raises:
        ManagerError: an unknown key, or the manager has stopped.

    Example:
        ```python
        websocket.send(manager.lookup(mgr, "btc"), manager.stream_of(mgr, "btc"), Text("hi"))
        ```
    """
    return _entry(mgr, key).stream


def keys(mgr: Manager, state: str | None = None) -> list[Hashable]:
    """The keys, in the order they were opened; only those in `state` if given.

    `state` is one of `connected`, `connecting`, `not_connected`, `closing`, `restarting`.

    Example:
        ```python
        waiting = manager.keys(mgr, "restarting")
        ```
    """
    entries = _entries(mgr)
    return [e.key for e in entries if state is None or e.state() == state]


def count(mgr: Manager) -> dict[str, int]:
    """How many keys are in each state: a connection's (`connected`, `connecting`,
    `not_connected` between retries, `closing`), or `restarting` between connections.

    Example:
        ```python
        manager.count(mgr)  # {"connected": 998, "restarting": 2}
        ```
    """
    return dict(Counter(entry.state() for entry in _entries(mgr)))


def stats(mgr: Manager, key: Hashable) -> ConnectionStats:
    """The key's counters over all its connections so far, with its current state.

    Read without asking any actor, so it never waits.

    Raises:
        ManagerError: an unknown key, or the manager has stopped.

    Example:
        ```python
        s = manager.stats(mgr, "btc")
        print(s.state, s.messages_in, s.reconnects, s.restarts, s.last_error)
        ```
    """
    return _entry(mgr, key).stats()


def totals(mgr: Manager) -> FleetStats:
    """The fleet's counters summed over its keys.

    Example:
        ```python
        fleet = manager.totals(mgr)
        print(fleet.connections, fleet.states, fleet.bytes_in)
        ```
    """
    every = [entry.stats() for entry in _entries(mgr)]
    return FleetStats(
        connections=len(every),
        states=dict(Counter(one.state for one in every)),
        bytes_in=sum(s.bytes_in for s in every),
        bytes_out=sum(s.bytes_out for s in every),
        messages_in=sum(s.messages_in for s in every),
        messages_out=sum(s.messages_out for s in every),
        reconnects=sum(s.reconnects for s in every),
        restarts=sum(s.restarts for s in every),
    )


def broadcast(
    mgr: Manager, frame: Frame | Sequence[Frame], keys: Iterable[Hashable] | None = None
) -> int:
    """Send `frame` (or frames, in order) once on every upgraded WebSocket key (of `keys`
    if given; unknown ones are skipped); returns how many it was sent to. A key that is
    reconnecting or being upgraded again is skipped: nothing is queued for it.

    Raises:
        InvalidArgument: not a frame or a list of frames.

    Example:
        ```python
        sent = manager.broadcast(mgr, Text("ping"), keys=["btc", "eth"])
        ```
    """
    frames = checked_frames(frame)
    entries = _entries(mgr)
    if keys is not None:
        wanted = set(keys)
        entries = [e for e in entries if e.key in wanted]
    sent = 0
    for entry in entries:
        conn, stream = entry.conn, entry.stream
        if conn is None or stream is None or stream not in conn.ws_streams:
            continue
        try:
            conn.tell(commands.WsSend(stream, frames))
        except ConnectionTerminated:
            continue
        sent += 1
    return sent


def await_up(mgr: Manager, key: Hashable, timeout: Timeout = 5000) -> Connection:
    """Wait until the key has a connection up and return it, following replacements.

    Reads the owner's mailbox (call it from the owner's thread) and takes that
    connection's `GunUp`; `Down` and `Restarted` messages stay for the owner to see.
    `timeout` is in milliseconds and bounds the whole wait.

    Raises:
        AwaitTimeout: the key had no connection up in time.
        ManagerError: an unknown key, or the manager has stopped.
        BadStateError: the owner is a Pykka actor.

    Example:
        ```python
        conn = manager.await_up(mgr, "api", 5000)
        ```
    """
    conn: Connection = _follow(mgr, key, timeout, _up)
    return conn


def await_upgrade(mgr: Manager, key: Hashable, timeout: Timeout = 5000) -> GunUpgrade:
    """Wait until the key's WebSocket is upgraded (on its current connection, following
    replacements) and take that `GunUpgrade`; its `GunUp` stays in the mailbox.

    `timeout` is in milliseconds and bounds the whole wait.

    Raises:
        AwaitTimeout: not upgraded in time.
        UpgradeFailed: the server refused the upgrade.
        ManagerError: an unknown key, or the manager has stopped.

    Example:
        ```python
        upgrade = manager.await_upgrade(mgr, "btc", 5000)
        websocket.send(upgrade.conn, upgrade.stream, Text("subscribe"))
        ```
    """
    upgrade: GunUpgrade = _follow(mgr, key, timeout, _upgraded)
    return upgrade


def remove(mgr: Manager, key: Hashable) -> None:
    """Stop the key's connection gracefully (a WebSocket sends close 1001; forced after
    the closing timeout) and forget the key.

    Raises:
        ManagerError: an unknown key, or the manager has stopped.

    Example:
        ```python
        manager.remove(mgr, "eth")
        ```
    """
    _entry(mgr, key)
    with contextlib.suppress(SupervisorError):  # it stopped on its own meanwhile
        supervisor.terminate_child(_supervisor(mgr), key)
    with mgr.lock:
        mgr.entries.pop(key, None)


def shutdown_all(mgr: Manager) -> int:
    """Stop every connection gracefully, all at once (WebSocket close 1001, each bounded by
    the closing timeout, then forced); forget every key. Returns how many were running.

    Raises:
        ManagerError: the manager has stopped.

    Example:
        ```python
        stopped = manager.shutdown_all(mgr)  # the manager stays, ready for new keys
        ```
    """
    return _terminate_all(mgr, None)


def close_all(mgr: Manager) -> int:
    """Close every connection at once, without a closing handshake; forget every key.

    Returns how many were running.

    Raises:
        ManagerError: the manager has stopped.

    Example:
        ```python
        manager.close_all(mgr)
        ```
    """
    return _terminate_all(mgr, 0)


def stop(mgr: Manager) -> None:
    """Shut every connection down gracefully, then stop the manager; harmless twice.

    The owner gets no `Down` for the manager then. `with manager.start() as mgr:` calls
    it on exit.

    Raises:
        InvalidArgument: `mgr` is not a `Manager`.

    Example:
        ```python
        manager.stop(mgr)
        ```
    """
    sup = _check(mgr).supervisor
    if sup is None or not sup.alive:
        mgr._supervisor_exited(deathwatch.NORMAL)
        return
    try:
        _terminate_all(mgr, None)
        sup.actor_ref.ask(Call("stop", (deathwatch.NORMAL, False)), timeout=None)
    except (ManagerError, pykka.ActorDeadError):
        pass
    sup.actor_ref.actor_stopped.wait()
    mgr._supervisor_exited(deathwatch.NORMAL)


# -- helpers ------------------------------------------------------------------------------


def _check(mgr: object) -> Manager:
    if not isinstance(mgr, Manager):
        raise InvalidArgument(f"expected a Manager (from manager.start), got {mgr!r}")
    return mgr


def _check_running(mgr: Manager) -> None:
    if mgr.stopped:
        raise ManagerError(f"{mgr!r} has stopped")


def _supervisor(mgr: Manager) -> Supervisor:
    sup = mgr.supervisor
    assert sup is not None
    return sup


def _entry(mgr: Manager, key: Hashable) -> _Entry:
    _check(mgr)
    with mgr.lock:
        entry = mgr.entries.get(key)
    if entry is None:
        _check_running(mgr)
        raise ManagerError(f"{mgr!r} has no connection under the key {key!r}")
    return entry


def _entries(mgr: Manager) -> list[_Entry]:
    _check(mgr)
    with mgr.lock:
        return list(mgr.entries.values())


def _terminate_all(mgr: Manager, shutdown_ms: int | None) -> int:
    _check(mgr)
    with mgr.lock:
        _check_running(mgr)
    try:
        running = cast(
            int, _supervisor(mgr).actor_ref.ask(Call("terminate_all", (shutdown_ms,)), timeout=None)
        )
    except pykka.ActorDeadError:
        raise ManagerError(f"{mgr!r} has stopped") from None
    with mgr.lock:
        entries = list(mgr.entries.values())
        mgr.entries.clear()
    for entry in entries:
        entry.replaced.set()
    return running


def _up(conn: Connection, stream: StreamRef | None, timeout: Timeout) -> Connection:
    connection.await_up(conn, timeout)
    return conn


def _upgraded(conn: Connection, stream: StreamRef | None, timeout: Timeout) -> GunUpgrade:
    if stream is None:
        raise ManagerError(f"{conn!r} is an HTTP connection: it has no WebSocket to await")
    return websocket.await_upgrade(conn, stream, timeout)


def _follow(mgr: Manager, key: Hashable, timeout: Timeout, step: Any) -> Any:
    seconds = timeout_seconds(timeout)
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        entry = _entry(mgr, key)
        replaced = entry.replaced
        conn, stream = entry.conn, entry.stream
        left_ms: Timeout = Infinity
        if deadline is not None:
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
        if conn is not None and conn.alive:
            owner_mailbox(conn)  # an actor owner: refuse at once
            try:
                return step(conn, stream, left_ms)
            except ConnectionTerminated:
                pass  # it stopped: wait for its replacement
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise AwaitTimeout(f"the key {key!r} of {mgr!r} was not up in time")
        if entry.conn is conn:
            replaced.wait(left)

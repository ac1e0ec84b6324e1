"""The shard: one Ray actor process hosting a local manager for each of its owners.

`Shard` is the actor's class (Ray wraps it as `ShardActor`, restartable without limit).
Each owner id it serves has an `Outbox` (a mailbox with a mark) and a local
`manager.Manager` whose owner that mailbox is, so every guarantee of the local manager
holds inside the shard: reconnects with jitter, replacement of a connection whose
retries ran out (`Restarted`), statistics, graceful shutdown.

On every start, first or after a crash, the shard counts a new incarnation in the spec
store and opens every key filed under its index there. Ray runs its calls on a pool of
`max_concurrency` threads: one long poll per remote owner, and the rest. The registry
(key -> spec) and the encoding of batches share one lock, so no message of a connection
is encoded before its key is known.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import ray

from gluegun_actors import connection, manager, websocket
from gluegun_actors._connection.handle import Connection
from gluegun_actors._options import Options
from gluegun_actors._shards.handles import KeyMoved, RemoteConnection
from gluegun_actors._shards.outbox import Outbox
from gluegun_actors._shards.placement import Key, key_bytes, place
from gluegun_actors._shards.specs import ShardConfig, Spec, SpecStore
from gluegun_actors._shards.translate import Translator
from gluegun_actors._types import Protocol, StreamRef
from gluegun_actors.errors import ManagerError
from gluegun_actors.events import GunDown
from gluegun_actors.mailbox import Mailbox
from gluegun_actors.manager import FleetStats, Manager
from gluegun_actors.message import Frame

__all__ = ["LocalShard", "Shard", "ShardActor", "ShardInfo", "fleet_sum"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

_STORE_WRITERS = 8
"""Threads writing a batch of specs to the spec store at once (each write is a round trip
to Ray's GCS)."""


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard at one moment (`shards.info`)."""

    index: int
    incarnation: int
    """Starts of its process so far (1 until Ray restarts it)."""
    pid: int
    node: str
    """The host name of the node its process runs on."""
    connections: int
    queued: dict[str, int]
    """Messages waiting in each owner's mailbox inside the shard, by owner id."""
    delivered: dict[str, int]
    """Messages each remote owner's pump has taken and acknowledged, by owner id."""


@dataclass(slots=True)
class _Owner:
    outbox: Outbox
    manager: Manager


class Shard:
    """The shard actor (see the module docstring); its methods are Ray calls."""

    def __init__(self, config: ShardConfig, index: int) -> None:
        self.config = config
        self.index = index
        self.store = SpecStore(config.namespace)
        self.incarnation = self.store.next_incarnation(index)
        self.translator = Translator(index, self.incarnation)
        self._lock = self.translator.lock
        self._owners: dict[str, _Owner] = {}
        self._specs: dict[Key, Spec] = {}
        self._dropped: set[str] = set()
        """Owners gone (`drop_owner`): a late poll of theirs gets nothing, makes nothing."""
        self.scratch: dict[str, Any] = {}
        self._writers = ThreadPoolExecutor(_STORE_WRITERS, "shard-store")
        reopened = 0
        for spec in self.store.load(index):
            try:
                with self._lock:
                    self._open(spec)
                reopened += 1
            except Exception:
                _log.exception("shard %d could not reopen the key %r", index, spec.key)
        _log.info("shard %d incarnation %d: %d keys reopened", index, self.incarnation, reopened)

    # -- owners --------------------------------------------------------------------------

    def _owner(self, owner: str) -> _Owner:
        with self._lock:
            found = self._owners.get(owner)
            if found is None:
                outbox = Outbox(
                    owner, self.config.high_water_messages, self.config.high_water_bytes
                )
                mgr = manager.start(
                    owner=outbox.mailbox, options=Options(), reconnect=self.config.reconnect
                )
                found = self._owners[owner] = _Owner(outbox, mgr)
            return found

    def _open(self, spec: Spec) -> RemoteConnection:
        """Open `spec`'s key; the lock is held."""
        owner = self._owner(spec.owner)
        conn = manager.open(
            owner.manager,
            spec.key,
            spec.host,
            spec.port,
            path=spec.path,
            headers=spec.headers,
            options=spec.options,
            ws_options=spec.ws_options,
        )
        self._specs[spec.key] = spec
        return self.translator.register(conn, spec.key)

    def _spec(self, key: Key) -> Spec:
        with self._lock:
            spec = self._specs.get(key)
        if spec is None:
            raise ManagerError(f"shard {self.index} has no connection under the key {key!r}")
        return spec

    def _manager_of(self, key: Key) -> Manager:
        return self._owner(self._spec(key).owner).manager

    def _managers(self) -> list[Manager]:
        with self._lock:
            return [owner.manager for owner in self._owners.values()]

    # -- the calls -----------------------------------------------------------------------

    def info(self) -> ShardInfo:
        with self._lock:
            owners = dict(self._owners)
            count = len(self._specs)
        return ShardInfo(
            index=self.index,
            incarnation=self.incarnation,
            pid=os.getpid(),
            node=socket.gethostname(),
            connections=count,
            queued={name: len(owner.outbox.mailbox) for name, owner in owners.items()},
            delivered={name: owner.outbox.delivered for name, owner in owners.items()},
        )

    def open(self, spec: Spec) -> RemoteConnection:
        return self.open_many([spec])[0]

    def open_many(self, specs: Sequence[Spec]) -> list[RemoteConnection]:
        """Open every key of `specs`, or none if one is in use here.

        The keys are reserved first; then each spec is filed in the store (by a pool of
        writers) while its connection is opened, and the call returns once both are done.
        A filing that fails undoes the whole call. The lock is held for the reservation
        and for each open, not in between, so the owners' batches keep flowing.
        """
        with self._lock:
            taken = [spec.key for spec in specs if spec.key in self._specs]
            if taken:
                shown = ", ".join(repr(key) for key in taken[:5])
                more = ", ..." if len(taken) > 5 else ""
                raise ManagerError(
                    f"the sharded manager already has a connection under the key "
                    f"{shown}{more}: none of the {len(specs)} keys given to this shard was opened"
                )
            for spec in specs:
                self._specs[spec.key] = spec
        filed = [self._writers.submit(self.store.put, self.index, spec) for spec in specs]
        opened: list[RemoteConnection] = []
        try:
            for spec in specs:
                with self._lock:
                    opened.append(self._open(spec))
            for done in filed:
                done.result()
        except BaseException:
            self._undo(specs)
            raise
        return opened

    def _undo(self, specs: Sequence[Spec]) -> None:
        """Forget, close and unfile the keys of an `open_many` that failed."""
        with self._lock:
            for spec in specs:
                if self._specs.get(spec.key) is spec:
                    del self._specs[spec.key]
        for spec in specs:
            with contextlib.suppress(Exception):
                manager.remove(self._owner(spec.owner).manager, spec.key)
            with contextlib.suppress(Exception):
                self.store.delete(self.index, spec.key_bytes)

    def pull(
        self, owner: str, incarnation: int, ack: int, max_batch: int, wait_ms: int
    ) -> tuple[int, int, bytes]:
        """The next batch for `owner`: (this incarnation, batch number, bytes)."""
        if owner in self._dropped:
            return self.incarnation, ack, b""
        outbox = self._owner(owner).outbox
        if incarnation != self.incarnation:
            ack = 0  # an acknowledgement for an earlier process of this shard
        seq, data = outbox.pull(ack, max_batch, wait_ms, self.translator.dumps_batch)
        return self.incarnation, seq, data

    def owner_of(self, key: Key) -> str:
        return self._spec(key).owner

    def lookup(self, key: Key) -> RemoteConnection:
        conn = manager.lookup(self._manager_of(key), key)
        with self._lock:
            return self.translator.register(conn, key)

    def keys(self, state: str | None) -> list[Hashable]:
        return [key for mgr in self._managers() for key in manager.keys(mgr, state)]

    def count(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for mgr in self._managers():
            total.update(manager.count(mgr))
        return dict(total)

    def stats(self, key: Key) -> bytes:
        return self.translator.dumps(manager.stats(self._manager_of(key), key))

    def totals(self) -> bytes:
        return self.translator.dumps(fleet_sum(manager.totals(mgr) for mgr in self._managers()))

    def broadcast(self, frames: tuple[Frame, ...], keys: list[Hashable] | None) -> int:
        return sum(manager.broadcast(mgr, frames, keys) for mgr in self._managers())

    def send(self, key: Key, frames: tuple[Frame, ...]) -> None:
        mgr = self._manager_of(key)
        stream = manager.stream_of(mgr, key)
        if stream is None:
            raise ManagerError(f"the key {key!r} is an HTTP connection: it has no WebSocket")
        websocket.send(manager.lookup(mgr, key), stream, frames)

    def remove(self, key: Key) -> None:
        with self._lock:
            spec = self._spec(key)
            del self._specs[key]
        self.store.delete(self.index, spec.key_bytes)
        with contextlib.suppress(ManagerError):
            manager.remove(self._owner(spec.owner).manager, key)

    def shutdown_all(self, graceful: bool) -> int:
        """Stop every connection (gracefully or at once) and forget every key."""
        with self._lock:
            self._specs.clear()
            self.store.delete_shard(self.index)
        stop = manager.shutdown_all if graceful else manager.close_all
        return sum(stop(mgr) for mgr in self._managers())

    def drop_owner(self, owner: str) -> int:
        """The owner is gone: stop its connections gracefully and forget its keys."""
        with self._lock:
            self._dropped.add(owner)
            found = self._owners.pop(owner, None)
            keys = [key for key, spec in self._specs.items() if spec.owner == owner]
            gone = [self._specs.pop(key) for key in keys]
        self._unfile(gone)
        if found is not None:
            found.outbox.forget_markers()
            manager.stop(found.manager)
        return len(keys)

    def release(self, shards: int) -> list[Spec]:
        """Close the keys whose place among `shards` shards is no longer here, tell each
        owner so (`GunDown` with `KeyMoved`), unfile them; their specs, for their new shard."""
        with self._lock:
            moving = [
                spec
                for key, spec in self._specs.items()
                if place(key_bytes(key), range(shards)) != self.index
            ]
            for spec in moving:
                del self._specs[spec.key]
        self._unfile(moving)
        for spec in moving:
            self._close_moving(spec, shards)
        return moving

    def _unfile(self, specs: Sequence[Spec]) -> None:
        """Delete `specs` from the store, by the pool of writers."""
        list(self._writers.map(lambda spec: self.store.delete(self.index, spec.key_bytes), specs))

    def _close_moving(self, spec: Spec, shards: int) -> None:
        key = spec.key
        owner = self._owner(spec.owner)
        try:
            conn = manager.lookup(owner.manager, key)
            stream = manager.stream_of(owner.manager, key)
        except ManagerError:
            return  # it stopped for good meanwhile
        up = conn.alive and conn.stats.state == "connected"
        upgraded = stream is not None and stream in conn.ws_streams
        if conn.alive:
            connection.close(conn)  # returns once the actor is gone: nothing follows it
        with contextlib.suppress(ManagerError):
            manager.remove(owner.manager, key)
        if up:
            to = place(key_bytes(key), range(shards))
            down = GunDown(
                conn,
                Protocol.WS if upgraded else Protocol.HTTP1,
                KeyMoved(f"the key {key!r} moved from shard {self.index} to shard {to}", key, to),
                (stream,) if upgraded and stream is not None else (),
            )
            if owner.outbox.pumping():
                owner.outbox.mark(down)
            owner.outbox.mailbox.put(down)

    def await_released(self, timeout_ms: int) -> bool:
        """Wait until the pumping owners took every `GunDown` of the moved keys."""
        deadline = time.monotonic() + timeout_ms / 1000
        with self._lock:
            outboxes = [owner.outbox for owner in self._owners.values()]
        return all([outbox.await_markers(deadline) for outbox in outboxes])

    def call(self, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Run `function(LocalShard, *args)` in this process."""
        return function(LocalShard(self), *args)


class LocalShard:
    """What code run inside a shard's process (`shards.call`) sees of its shard."""

    __slots__ = ("_shard",)

    def __init__(self, shard: Shard) -> None:
        self._shard = shard

    @property
    def index(self) -> int:
        return self._shard.index

    @property
    def incarnation(self) -> int:
        return self._shard.incarnation

    @property
    def scratch(self) -> dict[str, Any]:
        """A dict that lives as long as this shard's process: objects kept between calls
        (a server started for a benchmark, a consumer's state)."""
        return self._shard.scratch

    def mailbox(self, owner: str) -> Mailbox:
        """The mailbox of `owner` in this shard: code here may read it directly (an owner
        beside its shard), instead of a pump in another process."""
        return self._shard._owner(owner).outbox.mailbox

    def lookup(self, key: Key) -> Connection:
        """The key's local `Connection`, for the `connection`, `http` and `websocket` calls."""
        return manager.lookup(self._shard._manager_of(key), key)

    def stream_of(self, key: Key) -> StreamRef | None:
        """The key's current WebSocket stream (None for an HTTP key)."""
        return manager.stream_of(self._shard._manager_of(key), key)

    def keys(self) -> list[Hashable]:
        return self._shard.keys(None)


def fleet_sum(fleets: Iterable[FleetStats]) -> FleetStats:
    """Totals of many fleets, summed."""
    parts = list(fleets)
    states: Counter[str] = Counter()
    for part in parts:
        states.update(part.states)
    return FleetStats(
        connections=sum(p.connections for p in parts),
        states=dict(states),
        bytes_in=sum(p.bytes_in for p in parts),
        bytes_out=sum(p.bytes_out for p in parts),
        messages_in=sum(p.messages_in for p in parts),
        messages_out=sum(p.messages_out for p in parts),
        reconnects=sum(p.reconnects for p in parts),
        restarts=sum(p.restarts for p in parts),
    )


ShardActor = ray.remote(Shard)
"""`Shard` as a Ray actor class; `shards.start` sets its options (restarts, concurrency)."""

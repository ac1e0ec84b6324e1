"""What an owner in another process holds instead of a `Connection` or a `StreamRef`.

A `Connection` is a handle on an actor in one process and a `StreamRef` may carry a
mailbox: neither can cross a process boundary. Messages from a shard carry a
`RemoteConnection` (the key, the shard, the shard's incarnation and the connection's
number in it) and a `RemoteStream` instead: plain values, equal in every process. A
local reconnect keeps both; a new connection for the key (a manager restart, a shard
restarted by Ray, a move to another shard) gets a new `RemoteConnection` with the same
key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gluegun_actors._types import StreamRef
from gluegun_actors.errors import ConnectionDown

__all__ = ["KeyMoved", "RemoteConnection", "RemoteStream", "ShardLost"]


@dataclass(frozen=True, slots=True)
class RemoteConnection:
    """A connection of a sharded manager, as its owner sees it: `conn` in its messages."""

    key: Any
    """The key it was opened under (`shards.open`)."""
    shard: int
    """The index of the shard it runs on."""
    incarnation: int
    """Which start of that shard's process it belongs to (Ray restarts a dead shard)."""
    id: int
    """The connection's number inside that shard process."""

    def __repr__(self) -> str:
        return f"<RemoteConnection {self.key!r} shard {self.shard}.{self.incarnation} #{self.id}>"


@dataclass(frozen=True, slots=True, repr=False)
class RemoteStream(StreamRef):
    """A stream of a `RemoteConnection`; equal by its shard, incarnation and number."""

    shard: int = 0
    incarnation: int = 0

    def __repr__(self) -> str:
        return f"RemoteStream({self.shard}.{self.incarnation}.{self.id})"


class ShardLost(ConnectionDown):
    """The reason in the `GunDown` an owner gets for each connection that was up on a shard
    whose process died. Ray restarts the shard, which reopens the key from its spec: the
    owner then gets `GunUp` (and `GunUpgrade`) from a new `RemoteConnection`."""

    def __init__(self, message: str, shard: int, incarnation: int) -> None:
        super().__init__(message)
        self.shard = shard
        self.incarnation = incarnation


class KeyMoved(ConnectionDown):
    """The reason in the `GunDown` an owner gets when `add_shard` moved a key: the old
    connection was closed; the key is opened again on shard `to`, whose `GunUp` follows."""

    def __init__(self, message: str, key: Any, to: int) -> None:
        super().__init__(message)
        self.key = key
        self.to = to

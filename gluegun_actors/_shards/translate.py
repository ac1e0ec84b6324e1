"""Owner messages across a process boundary: to bytes in the shard, back in the owner.

Messages are the same frozen dataclasses on both sides (`GunUp`, `GunWs`, ...); only
what they point at changes on the way, in the pickler's `reducer_override`:

- a `Connection` becomes its `RemoteConnection` (the shard registers each connection's
  key as it opens it; a `Restarted` message registers the new one);
- a `StreamRef` becomes a `RemoteStream` (without its `reply_to`);
- a `Mailbox`, a Pykka `ActorRef` or a supervisor, which mean nothing elsewhere,
  become None;
- an exception is rebuilt on the other side without calling its `__init__` (its
  `args` and attributes restored as they were), so `UpgradeFailed` keeps its status and
  body and the owner can still match on its type.

Pickle's memo pickles each connection and stream once per batch, however many messages
carry it. The frames that make up nearly all the traffic (`GunWs` of a `Text` or a
`Binary`, `GunData`) travel as plain tuples and are built again on the other side: a
dataclass pickles through Python code, a tuple does not, which makes a batch several
times cheaper to encode in a busy shard.
"""

from __future__ import annotations

import io
import pickle
import threading
import weakref
from collections.abc import Hashable
from typing import Any

import pykka

from gluegun_actors._connection.handle import Connection
from gluegun_actors._shards.handles import RemoteConnection, RemoteStream
from gluegun_actors._supervision.supervisor import Supervisor
from gluegun_actors._types import StreamRef
from gluegun_actors.events import GunData, GunWs, Restarted
from gluegun_actors.mailbox import Mailbox
from gluegun_actors.message import Binary, Text

__all__ = ["Translator", "loads", "loads_batch"]

_TEXT, _BINARY, _DATA = 1, 2, 3
"""Tags of the messages a batch carries as tuples."""

_PICKLE = pickle.HIGHEST_PROTOCOL
_ABSENT = (Mailbox, pykka.ActorRef, Supervisor, threading.Event)


class Translator:
    """One shard process's view of its connections: which key each belongs to."""

    __slots__ = ("_conns", "incarnation", "lock", "shard")

    def __init__(self, shard: int, incarnation: int) -> None:
        self.shard = shard
        self.incarnation = incarnation
        self.lock = threading.RLock()
        """Held while a connection is opened and registered, and while a batch is encoded,
        so that no message of a connection is encoded before its key is known."""
        self._conns: weakref.WeakKeyDictionary[Connection, RemoteConnection] = (
            weakref.WeakKeyDictionary()
        )

    def register(self, conn: Connection, key: Hashable) -> RemoteConnection:
        """Remember `conn`'s key; its `RemoteConnection`."""
        remote = RemoteConnection(key, self.shard, self.incarnation, conn.id)
        with self.lock:
            self._conns[conn] = remote
        return remote

    def remote(self, conn: Connection) -> RemoteConnection:
        """`conn`'s `RemoteConnection` (key None for a connection it was never told of)."""
        found = self._conns.get(conn)
        if found is None:
            return RemoteConnection(None, self.shard, self.incarnation, conn.id)
        return found

    def stream(self, stream: StreamRef) -> RemoteStream:
        return RemoteStream(stream.id, None, stream.resilient, self.shard, self.incarnation)

    def dumps(self, value: object) -> bytes:
        """`value` (statistics, a handle...) as bytes for another process (`loads`)."""
        with self.lock:
            buffer = io.BytesIO()
            _Pickler(buffer, self).dump(value)
        return buffer.getvalue()

    def dumps_batch(self, messages: list[object]) -> bytes:
        """A batch of owner messages as bytes for the owner's process (`loads_batch`)."""
        items: list[object] = []
        append = items.append
        with self.lock:
            for message in messages:
                kind = type(message)
                if kind is GunWs:
                    frame = message.frame  # type: ignore[attr-defined]
                    if type(frame) is Text:
                        append((_TEXT, message.conn, message.stream, frame.text))  # type: ignore[attr-defined]
                        continue
                    if type(frame) is Binary:
                        append((_BINARY, message.conn, message.stream, frame.data))  # type: ignore[attr-defined]
                        continue
                elif kind is GunData:
                    m: GunData = message  # type: ignore[assignment]
                    append((_DATA, m.conn, m.stream, m.is_fin, m.data))
                    continue
                elif kind is Restarted:
                    self.register(message.new, message.key)  # type: ignore[attr-defined]
                append(message)
            buffer = io.BytesIO()
            _Pickler(buffer, self).dump(items)
        return buffer.getvalue()


class _Pickler(pickle.Pickler):
    def __init__(self, buffer: io.BytesIO, translator: Translator) -> None:
        super().__init__(buffer, _PICKLE)
        self._translator = translator

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is Connection:
            remote = self._translator.remote(obj)
            return RemoteConnection, (remote.key, remote.shard, remote.incarnation, remote.id)
        if kind is StreamRef:
            stream = self._translator.stream(obj)
            return RemoteStream, (
                stream.id,
                None,
                stream.resilient,
                stream.shard,
                stream.incarnation,
            )
        if isinstance(obj, BaseException):
            state = dict(getattr(obj, "__dict__", {}))
            return _rebuild_exception, (kind, obj.args, state, obj.__cause__)
        if isinstance(obj, _ABSENT):
            return _absent, ()
        return NotImplemented


def _rebuild_exception(
    kind: type[BaseException],
    args: tuple[Any, ...],
    state: dict[str, Any],
    cause: BaseException | None,
) -> BaseException:
    """An exception as it was, without its `__init__` (whose signature may differ)."""
    error = kind.__new__(kind, *args)
    error.args = args
    error.__dict__.update(state)
    error.__cause__ = cause
    return error


def _absent() -> None:
    return None


def loads(data: bytes) -> Any:
    """What `Translator.dumps` made, in the owner's process."""
    return pickle.loads(data)


def loads_batch(data: bytes) -> list[object]:
    """The messages `Translator.dumps_batch` made, in the owner's process."""
    messages: list[object] = []
    append = messages.append
    for item in pickle.loads(data):
        if type(item) is tuple:
            tag = item[0]
            if tag == _TEXT:
                append(GunWs(item[1], item[2], Text(item[3])))
            elif tag == _BINARY:
                append(GunWs(item[1], item[2], Binary(item[3])))
            else:
                append(GunData(item[1], item[2], item[3], item[4]))
        else:
            append(item)
    return messages

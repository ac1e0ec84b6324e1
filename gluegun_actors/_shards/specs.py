"""How to reopen every key, kept outside the shards: in Ray's key-value store.

A shard's process may die at any moment; what it needs to come back must not die with
it. Each key's `Spec` (address, path, headers, options, owner) is written to Ray's
internal key-value store (held by the GCS, Ray's head process) before the key's
connection is opened, and deleted when the key is removed. A shard that Ray restarts
reads the specs filed under its index and opens them again. The store also keeps the
manager's `Meta` (how many shards, how they are configured) so that a handle in any
process can find the shards, and each shard's incarnation counter.

Layout, in the namespace `gluegun_actors.<name>`: `meta`, `incarnation/<shard>`,
`spec/<shard>/<key digest>`.

Only plain data crosses: options that hold a callable, an `ssl.SSLContext` or an owner
are refused here, in the caller, with the reason.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.experimental import internal_kv

from gluegun_actors._options import Options, RetryFun
from gluegun_actors._options import WsOptions as WebSocketOptions
from gluegun_actors._shards.placement import Key, key_bytes, key_digest
from gluegun_actors._types import Headers
from gluegun_actors.errors import InvalidOptions
from gluegun_actors.manager import JitteredBackoff

__all__ = ["Meta", "ShardConfig", "Spec", "SpecStore", "portable_options", "portable_ws_options"]

_PICKLE = pickle.HIGHEST_PROTOCOL


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """What every shard of one manager is started with (the same after a restart)."""

    name: str
    """The manager's name: its shards are the named actors `<name>/<index>`."""
    namespace: str
    """The Ray namespace of the shard actors and the key-value namespace of the store."""
    reconnect: RetryFun | None
    """The local managers' `reconnect` policy (plain data: a `JitteredBackoff` or None)."""
    high_water_messages: int
    """Each remote owner's mailbox inside a shard: its high-water mark, in messages."""
    high_water_bytes: int
    """... and in payload bytes."""
    max_concurrency: int
    """Calls a shard serves at once: one long poll per remote owner, plus the rest."""
    actor_options: Mapping[str, Any] = field(default_factory=dict)
    """Ray's actor options for the shards (`num_cpus`, `scheduling_strategy`, ...)."""
    detached: bool = False
    """Shards outlive the job that started them (Ray's `lifetime="detached"`)."""


@dataclass(frozen=True, slots=True)
class Meta:
    """The manager as every process finds it: its configuration and its shard count."""

    config: ShardConfig
    shards: int


@dataclass(frozen=True, slots=True)
class Spec:
    """How to open one key's connection, in any process: plain, picklable data."""

    key: Key
    host: str
    port: int
    path: str | None
    """The WebSocket path (and query); None for an HTTP key."""
    headers: Headers
    options: Options
    ws_options: WebSocketOptions | None
    owner: str
    """The owner id whose mailbox gets the key's messages in its shard."""

    @property
    def key_bytes(self) -> bytes:
        return key_bytes(self.key)


def portable_options(options: Options) -> Options:
    """`options` if they can cross to a shard process and mean the same there."""
    if options.tls_context is not None:
        raise InvalidOptions(
            "tls_context cannot cross to a shard process (an ssl.SSLContext does not "
            "pickle): leave it unset, and wss:// and https:// verify with the system's "
            "certificates inside the shard"
        )
    if options.event_handler is not None:
        raise InvalidOptions(
            "event_handler is a callable, which cannot cross to a shard process; "
            "leave it unset for sharded connections"
        )
    if options.owner is not None:
        raise InvalidOptions(
            "owner is chosen by the sharded manager (shards.open(..., owner=owner_id) or "
            "shards.attach): leave it unset in the options"
        )
    if options.retry_fun is not None and not isinstance(options.retry_fun, JitteredBackoff):
        raise InvalidOptions(
            f"retry_fun {options.retry_fun!r} is a callable, which cannot cross to a shard "
            "process; use retry, retry_timeout, retry_backoff and retry_jitter, or a "
            "manager.JitteredBackoff"
        )
    _check_pickles("options", options)
    return options


def portable_ws_options(options: WebSocketOptions) -> WebSocketOptions:
    """`options` (WebSocket) if they can cross to a shard process."""
    if options.connection is not None:
        portable_options(options.connection)
    _check_pickles("ws_options", options)
    return options


def _check_pickles(what: str, value: object) -> None:
    try:
        pickle.dumps(value, _PICKLE)
    except Exception as error:
        raise InvalidOptions(f"{what} cannot cross to a shard process: {error}") from None


class SpecStore:
    """The specs and the meta of one manager in Ray's key-value store (see the module)."""

    __slots__ = ("namespace",)

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def meta(self) -> Meta | None:
        data = internal_kv._internal_kv_get(b"meta", namespace=self.namespace)
        return None if data is None else _loads(data, Meta)

    def put_meta(self, meta: Meta) -> None:
        internal_kv._internal_kv_put(b"meta", pickle.dumps(meta, _PICKLE), namespace=self.namespace)

    def next_incarnation(self, shard: int) -> int:
        """Count one more start of `shard`'s process (one process per shard at a time)."""
        name = f"incarnation/{shard}".encode()
        data = internal_kv._internal_kv_get(name, namespace=self.namespace)
        incarnation = 1 if data is None else int(data) + 1
        internal_kv._internal_kv_put(name, str(incarnation).encode(), namespace=self.namespace)
        return incarnation

    def put(self, shard: int, spec: Spec) -> None:
        internal_kv._internal_kv_put(
            _spec_name(shard, spec.key_bytes), pickle.dumps(spec, _PICKLE), namespace=self.namespace
        )

    def delete(self, shard: int, data: bytes) -> None:
        internal_kv._internal_kv_del(_spec_name(shard, data), namespace=self.namespace)

    def delete_shard(self, shard: int) -> None:
        """Unfile every spec of `shard`."""
        internal_kv._internal_kv_del(
            f"spec/{shard}/".encode(), del_by_prefix=True, namespace=self.namespace
        )

    def load(self, shard: int) -> list[Spec]:
        """Every spec filed under `shard`, in no particular order."""
        names = internal_kv._internal_kv_list(f"spec/{shard}/".encode(), namespace=self.namespace)
        if not names:
            return []
        values = _multi_get(names, self.namespace)
        return [_loads(value, Spec) for value in values if value is not None]

    def clear(self) -> int:
        """Delete everything of this manager; how many entries went."""
        return int(internal_kv._internal_kv_del(b"", del_by_prefix=True, namespace=self.namespace))


def _spec_name(shard: int, data: bytes) -> bytes:
    return f"spec/{shard}/{key_digest(data)}".encode()


def _multi_get(names: list[bytes], namespace: str) -> list[bytes | None]:
    """The values of `names`: in one request when this Ray has it, else one by one."""
    client = internal_kv.internal_kv_get_gcs_client()
    multi_get = getattr(client, "internal_kv_multi_get", None)
    if multi_get is not None:
        found: dict[bytes, bytes] = multi_get(names, namespace.encode())
        return [found.get(name) for name in names]
    return [internal_kv._internal_kv_get(name, namespace=namespace) for name in names]


def _loads(data: bytes, kind: type[Any]) -> Any:
    value = pickle.loads(data)
    if not isinstance(value, kind):
        raise TypeError(f"the spec store holds a {type(value).__name__}, not a {kind.__name__}")
    return value

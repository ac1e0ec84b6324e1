"""Messages a connection sends to its owner, mirroring Gun's tuples.

Each is a frozen dataclass with positional `match` support:

    match msg:
        case GunResponse(conn, stream, is_fin, status, headers) if conn is my_conn: ...
        case GunWs(_, _, Text(text)): ...
        case Down(conn, reason): ...

Ordering guarantees (Gun's): `GunUp` comes before any message of a stream; a stream's
`GunResponse` / `GunUpgrade` comes before its `GunData` / `GunWs`; `GunDown` comes after
every message that arrived before the loss; `Down` is the last message of a connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from gluegun_actors._types import Headers, Protocol, StreamRef
from gluegun_actors.message import Frame

if TYPE_CHECKING:
    from gluegun_actors._connection.handle import Connection


@dataclass(frozen=True, slots=True)
class GunUp:
    """The connection is up and speaks `protocol` (Gun's `gun_up`)."""

    conn: Connection
    protocol: Protocol


@dataclass(frozen=True, slots=True)
class GunDown:
    """The connection was lost; `killed_streams` were unfinished and are gone (`gun_down`).

    `reason` is `"normal"` (an orderly close, e.g. a WebSocket close), `"closed"` (the peer
    closed the socket) or the exception that broke the connection. With retries left the
    connection reconnects and sends `GunUp` again.
    """

    conn: Connection
    protocol: Protocol
    reason: object
    killed_streams: tuple[StreamRef, ...]


@dataclass(frozen=True, slots=True)
class GunUpgrade:
    """The stream was upgraded (to WebSocket) with the negotiated `protocols` (`gun_upgrade`)."""

    conn: Connection
    stream: StreamRef
    protocols: tuple[str, ...]
    headers: Headers


@dataclass(frozen=True, slots=True)
class GunInform:
    """A 1xx informational response (`gun_inform`)."""

    conn: Connection
    stream: StreamRef
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class GunResponse:
    """The response head; `is_fin` means there is no body (`gun_response`)."""

    conn: Connection
    stream: StreamRef
    is_fin: bool
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class GunData:
    """A piece of the response body; `is_fin` marks the last one (`gun_data`)."""

    conn: Connection
    stream: StreamRef
    is_fin: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class GunTrailers:
    """The response trailers; they end the stream (`gun_trailers`)."""

    conn: Connection
    stream: StreamRef
    headers: Headers


@dataclass(frozen=True, slots=True)
class GunWs:
    """A WebSocket frame received on an upgraded stream (`gun_ws`)."""

    conn: Connection
    stream: StreamRef
    frame: Frame


@dataclass(frozen=True, slots=True)
class GunError:
    """A stream (or, with `stream=None`, the connection) failed (`gun_error`).

    `reason` is a `GluegunError` that says what happened.
    """

    conn: Connection
    stream: StreamRef | None
    reason: BaseException


@dataclass(frozen=True, slots=True)
class Shutdown:
    """An exit reason: the connection was told to stop because of `reason` (Erlang's
    `{shutdown, Reason}`); `Shutdown("owner_down")` when its owner died."""

    reason: object


@dataclass(frozen=True, slots=True)
class Down:
    """What was watched has stopped: nothing more will come from `conn` (Erlang's 'DOWN').

    The connection tells its owner so; a monitor (`supervisor.monitor`) tells its owner so
    of any actor, a `Connection` or a `Supervisor`: then `conn` is that target and
    `monitor` the `MonitorRef` (None when the connection itself sent it).

    `reason` says why, as Gun names it (see docs/gun-semantics.md): `"normal"` after a
    graceful `shutdown`, `"shutdown"` after `close`, `Shutdown("owner_down")` when the
    owner died, or the exception that ended it (retries exhausted, a crash). The owner
    gets none after its own `close` (which returns once the actor is gone) or its death;
    a `reply_to` that still had a live stream always gets one.
    """

    conn: Connection | Any
    reason: object
    monitor: object = None


@dataclass(frozen=True, slots=True)
class Restarted:
    """A manager replaced the connection under `key`: `old` stopped for good (its `Down`
    came before this), `new` has started and will send its own `GunUp` after this.
    `stream` is the new WebSocket stream (its `GunUpgrade` follows the `GunUp`), None for
    an HTTP connection. From here on `manager.lookup(mgr, key)` gives `new`."""

    key: Any
    old: Connection
    new: Connection
    stream: StreamRef | None


OwnerMessage: TypeAlias = (
    GunUp
    | GunDown
    | GunUpgrade
    | GunInform
    | GunResponse
    | GunData
    | GunTrailers
    | GunWs
    | GunError
    | Down
    | Restarted
)


__all__ = [
    "Down",
    "GunData",
    "GunDown",
    "GunError",
    "GunInform",
    "GunResponse",
    "GunTrailers",
    "GunUp",
    "GunUpgrade",
    "GunWs",
    "OwnerMessage",
    "Restarted",
    "Shutdown",
]

"""The messages a connection actor understands, besides transport events.

Callers `tell` the first group (no round trip: the caller makes the `StreamRef`); the
public modules `ask` `Barrier`, `InfoRequest` and `SetOwner`; the runtime sends
`OwnerDied` and `TimerFired`. The actor handles them in the order they were told.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gluegun_actors._types import Headers, StreamRef
from gluegun_actors.message import Frame

if TYPE_CHECKING:
    from gluegun_actors._options import WsOptions

__all__ = [
    "Barrier",
    "Cancel",
    "CloseGracefully",
    "CloseNow",
    "Drained",
    "InfoRequest",
    "OwnerDied",
    "Request",
    "RequestData",
    "SetOwner",
    "StreamCommand",
    "StreamInfoRequest",
    "TimerFired",
    "TimerKind",
    "UpdateFlow",
    "Upgrade",
    "WsSend",
]


@dataclass(frozen=True, slots=True)
class Request:
    """Send a request; with `is_fin=False` its body follows in `RequestData`."""

    stream: StreamRef
    method: str
    target: str
    headers: Headers
    body: bytes | None
    is_fin: bool


@dataclass(frozen=True, slots=True)
class RequestData:
    """A piece of a streamed request body; `is_fin` ends it."""

    stream: StreamRef
    data: bytes
    is_fin: bool


@dataclass(frozen=True, slots=True)
class Upgrade:
    """Upgrade to WebSocket on `target`, sending `headers` beside the handshake's own."""

    stream: StreamRef
    target: str
    headers: Headers
    options: WsOptions


StreamCommand = Request | RequestData | Upgrade
"""The commands that start or feed a stream: queued while the connection is down."""


@dataclass(frozen=True, slots=True)
class WsSend:
    """Send frames, in order, on the upgraded stream."""

    stream: StreamRef
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class Cancel:
    """Deliver nothing more of `stream` (its response is still read off the wire)."""

    stream: StreamRef


@dataclass(frozen=True, slots=True)
class UpdateFlow:
    """Give `stream` more flow credits."""

    stream: StreamRef
    credits: int


@dataclass(frozen=True, slots=True)
class CloseGracefully:
    """Close gracefully: finish what is in flight, then stop."""


@dataclass(frozen=True, slots=True)
class CloseNow:
    """Close at once and deliver nothing more."""


@dataclass(frozen=True, slots=True)
class SetOwner:
    """Ask: deliver to `target` from now on, and watch it instead of the old owner."""

    target: Any


@dataclass(frozen=True, slots=True)
class Barrier:
    """Ask: answered once everything told before it is done; cancels `stream` if given."""

    stream: StreamRef | None


@dataclass(frozen=True, slots=True)
class InfoRequest:
    """Ask: answered with the connection's `ConnectionInfo`."""


@dataclass(frozen=True, slots=True)
class StreamInfoRequest:
    """Ask: answered with the stream's `StreamInfo`, or None when it is unknown."""

    stream: StreamRef


@dataclass(frozen=True, slots=True)
class OwnerDied:
    """The owner is gone: shut down, delivering nothing more."""


@dataclass(frozen=True, slots=True)
class Drained:
    """A destination that was over its high-water mark has been drained: read on."""


class TimerKind(enum.Enum):
    RETRY = "retry"
    BACKLOG = "backlog"
    KEEPALIVE = "keepalive"
    PONG = "pong"
    CLOSING = "closing"


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer of the actor fired; `generation` tells a stale one (from before a
    reconnect) from a live one."""

    kind: TimerKind
    generation: int

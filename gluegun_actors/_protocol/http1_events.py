"""What the HTTP/1.1 core reports: Gun's response messages, without the connection.

The connection actor turns each into the owner message of the same name (`Inform` into
`GunInform`, ...), except `Upgraded` (the switch to another protocol), `StreamFailed`
(a `GunError`) and `Closed` (the core's last event: the connection must close).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from gluegun_actors._types import Headers, StreamRef
from gluegun_actors.errors import GluegunError

__all__ = [
    "Closed",
    "Data",
    "Event",
    "Inform",
    "Response",
    "StreamFailed",
    "Trailers",
    "Upgraded",
]


@dataclass(frozen=True, slots=True)
class Inform:
    """A 1xx informational response other than 101 (Gun's `gun_inform`)."""

    stream: StreamRef
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Response:
    """A final response head; `is_fin` means no body follows (Gun's `gun_response`)."""

    stream: StreamRef
    is_fin: bool
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Data:
    """Response body bytes; `is_fin` marks the last piece (Gun's `gun_data`)."""

    stream: StreamRef
    is_fin: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class Trailers:
    """Trailer fields of a chunked response; they end the stream (Gun's `gun_trailers`)."""

    stream: StreamRef
    headers: Headers


@dataclass(frozen=True, slots=True)
class Upgraded:
    """The server switched protocols for `stream` (101, or 2xx to CONNECT).

    `trailing_data` are the bytes after the response head: they belong to the new
    protocol. The core is finished afterwards.
    """

    stream: StreamRef
    status: int
    headers: Headers
    trailing_data: bytes


@dataclass(frozen=True, slots=True)
class StreamFailed:
    """One stream ended with `error`; the connection itself is not ended by this event."""

    stream: StreamRef
    error: GluegunError


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection must close now; `killed` are the streams this ended, in order.

    `reason` is `"normal"` (an orderly end), `"closed"` (the peer hung up) or the
    `RemoteProtocolError` that broke the connection. `unsent` are the killed streams whose
    request never reached the wire (held behind another): safe to send again.
    """

    reason: object
    killed: tuple[StreamRef, ...]
    unsent: tuple[StreamRef, ...] = ()


Event: TypeAlias = Inform | Response | Data | Trailers | Upgraded | StreamFailed | Closed

"""What `connection.info` and `connection.stream_info` return: snapshots taken in the
connection actor's turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gluegun_actors._types import Protocol, StreamRef

if TYPE_CHECKING:
    import pykka

    from gluegun_actors.mailbox import Mailbox

__all__ = ["ConnectionInfo", "StateName", "StreamInfo", "StreamState"]

StateName = Literal["not_connected", "connecting", "connected", "closing", "stopped"]
StreamState = Literal["waiting", "running", "stopping"]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One connection at one moment. Field names are Gun's (`gun:info/1`) where Gun has one."""

    state_name: StateName
    """Where the connection is: not_connected (waiting to retry), connecting, connected,
    closing (a graceful shutdown in progress) or stopped."""
    owner: Mailbox | pykka.ActorRef[Any]
    """Where the connection's own messages (`GunUp`, `GunDown`, ...) go."""
    transport: Literal["tcp", "tls"]
    protocol: Protocol | None
    """`Protocol.HTTP1`, `Protocol.WS` once upgraded, None while not connected."""
    origin_host: str
    origin_port: int
    sock_ip: str | None
    """The local address, while connected."""
    sock_port: int | None
    peer_ip: str | None
    """The address connected to, while connected."""
    peer_port: int | None
    streams: tuple[StreamRef, ...]
    """Streams started and not yet finished, in the order they were started."""
    queued_commands: int
    """Requests and upgrades waiting for the next `GunUp`."""
    retries_left: int
    intermediaries: tuple[object, ...] = ()
    """Proxies between us and the origin, nearest first (Gun's `intermediaries`)."""
    last_error: BaseException | None = None
    """The last failed connect attempt's exception, as the socket layer raised it
    (`ConnectionRefusedError`, `socket.gaierror`, `TimeoutError`, `ssl.SSLError`...); kept
    after a later success (`state_name` says whether it is up); None if no attempt failed."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One stream at one moment (Gun's `gun:stream_info/2`, with the protocol added)."""

    ref: StreamRef
    reply_to: Mailbox | pykka.ActorRef[Any]
    """Where the stream's messages go."""
    state: StreamState
    """waiting (for the next `GunUp`: not sent yet), running, or stopping (cancelled: the
    rest of its response is read and dropped)."""
    protocol: Protocol
    """`Protocol.HTTP1` for a request or an upgrade not yet answered, `Protocol.WS` once
    upgraded."""

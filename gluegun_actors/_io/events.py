"""What a transport reports to its user: the five transport events.

A transport calls the callback given to `Reactor.connect` with one of these, always on
the reactor thread and never while the transport's own lock is held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from gluegun_actors._io.transport import Transport

__all__ = [
    "Broken",
    "ConnectFailed",
    "Connected",
    "Eof",
    "Received",
    "TransportCallback",
    "TransportEvent",
]


@dataclass(frozen=True, slots=True)
class Connected:
    """The TCP connection (and the TLS handshake, if any) is done."""

    transport: Transport


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """No connection: resolution failed, every address refused, timeout or TLS failure.

    The socket is already closed; nothing more comes from this transport.
    """

    transport: Transport
    error: BaseException


@dataclass(frozen=True, slots=True, repr=False)
class Received:
    """One read's worth of bytes. Reading is paused until `resume_reading()`."""

    transport: Transport
    data: bytes

    def __repr__(self) -> str:
        return f"Received({self.transport!r}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class Eof:
    """The peer closed its side. Reading has ended; writing may go on until `close()`."""

    transport: Transport


@dataclass(frozen=True, slots=True)
class Broken:
    """The connection was reset or a write failed. The socket is already closed."""

    transport: Transport
    error: OSError


TransportEvent: TypeAlias = Connected | ConnectFailed | Received | Eof | Broken
TransportCallback: TypeAlias = Callable[[TransportEvent], None]

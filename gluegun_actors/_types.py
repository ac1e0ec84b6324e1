"""Small value types shared by every layer: protocols, stream references, header lists.

This module imports nothing else of the package, so any module may import it.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = ["Headers", "Protocol", "StreamRef"]

Headers: TypeAlias = tuple[tuple[str, str], ...]
"""A header list: `(name, value)` pairs in order, immutable; names are lower-cased in
owner messages."""


class Protocol(enum.Enum):
    """The protocol a connection (or a `GunDown`) speaks, named as Gun names it."""

    HTTP1 = "http"
    HTTP2 = "http2"
    WS = "ws"


_stream_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class StreamRef:
    """Names one request or WebSocket stream, unique in the process (Gun's StreamRef).

    Made by the caller when it starts a stream, so starting one needs no round trip.
    Equal and hashed by `id` alone.
    """

    id: int = field(default_factory=lambda: next(_stream_ids))
    reply_to: Any = field(default=None, compare=False, repr=False)
    """Where the stream's messages go (a `Mailbox` or a Pykka `ActorRef`): what the call
    that started it was given as `reply_to`, else its caller. The await helpers wait there."""
    resilient: bool = field(default=False, compare=False, repr=False)
    """A WebSocket upgraded with `reupgrade`: it outlives its connection's losses, so a
    wait on it is not ended by a `GunDown`."""

    def __repr__(self) -> str:
        return f"StreamRef({self.id})"

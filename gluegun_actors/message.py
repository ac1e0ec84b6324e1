"""WebSocket frames as frozen dataclasses, for sending and for `match`.

`Text` and `Binary` are whole application messages (fragments are reassembled);
`Ping`, `Pong` and `Close` are control frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class Text:
    """A text message."""

    text: str


@dataclass(frozen=True, slots=True)
class Binary:
    """A binary message."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping control frame (answered by the connection itself)."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong control frame."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame; `code` is None for a close frame without a status code."""

    code: int | None = 1000
    reason: str = ""


Frame: TypeAlias = Text | Binary | Ping | Pong | Close
AppFrame: TypeAlias = Text | Binary

__all__ = ["AppFrame", "Binary", "Close", "Frame", "Ping", "Pong", "Text"]

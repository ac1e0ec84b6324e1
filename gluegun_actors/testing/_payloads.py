"""What the embedded server generates and how it reads URL parameters."""

from __future__ import annotations

from typing import Final

MAX_DELAY_MS: Final = 60_000
MAX_CHUNKS: Final = 100_000
PIECE: Final = 65520  # a multiple of the pattern length, so pieces join seamlessly
_PATTERN: Final = b"abcdefghijklmnopqrstuvwxyz0123456789"


def pattern_bytes(size: int) -> bytes:
    """The bytes of `/big`, of each `/stream` chunk and `/ws/push` message.

    A repeating `abc...xyz0123456789` pattern: recognisable in a dump, and the same
    for every call, so a test can compare what it received.
    """
    return (_PATTERN * (size // len(_PATTERN) + 1))[:size]


class BadRequest(Exception):
    """A request the server answers with an error status and then closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def int_param(query: dict[str, str], name: str, default: int, maximum: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(400, f"{name} must be an integer, got {raw!r}") from None
    if not 0 <= value <= maximum:
        raise BadRequest(400, f"{name} must be between 0 and {maximum}, got {value}")
    return value

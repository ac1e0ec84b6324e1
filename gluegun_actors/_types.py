"""Small value types shared by every layer: timeouts, protocols, stream references."""

from __future__ import annotations

import enum
import itertools
import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from gluegun_actors.errors import InvalidArgument, InvalidTimeout, LocalProtocolError

Headers: TypeAlias = list[tuple[str, str]]
"""Header lists are `(name, value)` pairs; names are lower-cased in owner messages."""


class Protocol(enum.Enum):
    """The protocol a connection (or a `GunDown`) speaks, named as Gun names it."""

    HTTP1 = "http"
    HTTP2 = "http2"
    WS = "ws"


@dataclass(frozen=True, slots=True)
class Milliseconds:
    """A timeout in milliseconds (`connection.Milliseconds(5000)`)."""

    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise InvalidTimeout(
                f"Milliseconds takes an int, got {self.value!r}; timeouts are milliseconds"
            )
        if self.value < 0:
            raise InvalidTimeout(f"a timeout cannot be negative, got {self.value} ms")


class _InfinityType:
    """Wait forever."""

    _instance: _InfinityType | None = None

    def __new__(cls) -> _InfinityType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "Infinity"

    def __reduce__(self) -> str:
        return "Infinity"


Infinity: Final = _InfinityType()

Timeout: TypeAlias = Milliseconds | _InfinityType | int


def timeout_seconds(timeout: object) -> float | None:
    """Seconds for `timeout` (None for Infinity); refuses anything that is not milliseconds."""
    if timeout is Infinity:
        return None
    if isinstance(timeout, Milliseconds):
        return timeout.value / 1000.0
    if isinstance(timeout, float):
        raise InvalidTimeout(
            "timeouts are milliseconds (int, Milliseconds or Infinity), "
            f"got the float {timeout!r}; for {timeout} seconds pass "
            f"Milliseconds({int(timeout * 1000)})"
        )
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise InvalidTimeout(
            "timeouts are milliseconds (int, Milliseconds or Infinity), "
            f"got {type(timeout).__name__} {timeout!r}"
        )
    if timeout < 0:
        raise InvalidTimeout(f"a timeout cannot be negative, got {timeout} ms")
    return timeout / 1000.0


def timeout_ms(timeout: object) -> int | None:
    """Milliseconds for `timeout` (None for Infinity), validated as `timeout_seconds` does."""
    seconds = timeout_seconds(timeout)
    return None if seconds is None else round(seconds * 1000)


_stream_ids = itertools.count(1)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True, slots=True)
class StreamRef:
    """Names one request or WebSocket stream, unique in the process (Gun's StreamRef).

    Made by the caller when it starts a stream, so starting one needs no round trip.
    """

    id: int = field(default_factory=lambda: next(_stream_ids))

    def __repr__(self) -> str:
        return f"StreamRef({self.id})"


def check_headers(headers: object, what: str = "headers") -> Headers:
    """Validate a header list from a caller and return it as a list of str pairs."""
    if isinstance(headers, dict):
        items = list(headers.items())
    elif isinstance(headers, list | tuple):
        items = list(headers)
    else:
        raise InvalidArgument(
            f"{what} must be a list of (name, value) pairs, got {type(headers).__name__}"
        )
    out: Headers = []
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise InvalidArgument(f"{what} must be (name, value) pairs, got {item!r}")
        name, value = item
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidArgument(f"header names and values must be str or bytes, got {item!r}")
        if not _TOKEN.fullmatch(name):
            raise LocalProtocolError(f"invalid header name {name!r}: it must be a non-empty token")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise LocalProtocolError(
                f"header {name!r} has a value with CR, LF or NUL ({value!r}); "
                "such a value would split the header block, so nothing was sent"
            )
        out.append((name, value))
    return out

"""Timeouts are milliseconds everywhere: `Milliseconds(n)`, a plain `int`, or `Infinity`.

A `float` is refused with a message that says so: it is almost always seconds by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from gluegun_actors.errors import InvalidTimeout

__all__ = [
    "FutureTimeout",
    "Infinity",
    "Milliseconds",
    "Timeout",
    "future_timeout_seconds",
    "timeout_ms",
    "timeout_seconds",
]


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


FutureTimeout: TypeAlias = float | Milliseconds | _InfinityType | None
"""What a future's `get(timeout=)` takes: Pykka's seconds as a float (None: forever), or
`Milliseconds` / `Infinity`. A bare `int` other than 0 is refused: Pykka reads it as
seconds, the rest of this library as milliseconds."""


def future_timeout_seconds(timeout: object) -> float | None:
    """Seconds for a future's `get(timeout=)` (see `FutureTimeout`); refuses a bare int."""
    if timeout is None or timeout is Infinity:
        return None
    if isinstance(timeout, Milliseconds):
        return timeout.value / 1000.0
    if isinstance(timeout, float):
        if timeout != timeout:  # NaN
            raise InvalidTimeout("a future's timeout cannot be NaN")
        return max(0.0, timeout)
    if timeout == 0 and type(timeout) is int:
        return 0.0  # no wait: the same in either unit
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        raise InvalidTimeout(
            f"a future's get(timeout={timeout}) is ambiguous: Pykka futures take seconds, "
            f"this library milliseconds; pass Milliseconds({timeout}) or "
            f"{float(timeout)} (seconds, as for every Pykka future)"
        )
    raise InvalidTimeout(
        "a future's timeout is seconds as a float, Milliseconds, Infinity or None, "
        f"got {type(timeout).__name__} {timeout!r}"
    )

"""Per-connection statistics, cheap enough to leave on.

The actor's turn bumps plain counters on `LiveStats` (one attribute add each: no lock,
no allocation); any thread may take a `ConnectionStats` snapshot. A snapshot taken while
the actor runs may be a message apart between fields, never torn within one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gluegun_actors._connection.info import StateName

__all__ = ["ConnectionStats", "LiveStats"]


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """One connection's counters at one moment (`connection.stats`, `manager.stats`)."""

    state: str
    """The connection's state (`connection.info`'s `state_name`); for a manager's key
    also `restarting`, between one connection and the next."""
    since: float
    """When it entered `state`, as `time.time()`."""
    bytes_in: int = 0
    """Bytes read from the socket (TLS: after decryption)."""
    bytes_out: int = 0
    """Bytes handed to the socket."""
    messages_in: int = 0
    """Messages delivered about its streams (responses, data, WebSocket frames...)."""
    messages_out: int = 0
    """Requests sent and WebSocket frames sent."""
    reconnects: int = 0
    """Connections made after the first one (for a manager's key: across restarts too)."""
    restarts: int = 0
    """Times a manager replaced the connection with a new one (0 for a lone connection)."""
    last_error: object = None
    """Why it last went down or failed to connect; None if it never did."""

    def __add__(self, other: ConnectionStats) -> ConnectionStats:
        """Counters summed; state, since and last error of `other` (the later one)."""
        return ConnectionStats(
            state=other.state,
            since=other.since,
            bytes_in=self.bytes_in + other.bytes_in,
            bytes_out=self.bytes_out + other.bytes_out,
            messages_in=self.messages_in + other.messages_in,
            messages_out=self.messages_out + other.messages_out,
            reconnects=self.reconnects + other.reconnects,
            restarts=self.restarts + other.restarts,
            last_error=other.last_error if other.last_error is not None else self.last_error,
        )


class LiveStats:
    """The counters the actor's turn writes; `snapshot()` from any thread."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "connected_once",
        "last_error",
        "messages_in",
        "messages_out",
        "reconnects",
        "since",
        "state",
    )

    def __init__(self) -> None:
        self.state: StateName = "not_connected"
        self.since = time.time()
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0
        self.reconnects = 0
        self.connected_once = False
        self.last_error: object = None

    def enter(self, state: StateName) -> None:
        if state != self.state:
            self.state = state
            self.since = time.time()

    def connected(self) -> None:
        if self.connected_once:
            self.reconnects += 1
        self.connected_once = True

    def snapshot(self) -> ConnectionStats:
        return ConnectionStats(
            state=self.state,
            since=self.since,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            reconnects=self.reconnects,
            last_error=self.last_error,
        )

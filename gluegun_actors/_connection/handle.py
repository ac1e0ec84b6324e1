"""`Connection`: the caller's handle on one connection actor (Gun's ConnPid).

The actor publishes a few facts here (its protocol, its upgraded streams, its end) so
that callers can refuse an impossible command at once, before anything is sent. The actor
stays the authority: it writes these fields before it delivers the message that makes
them visible to the owner, and it reports anything the caller could not see coming as
`GunError` to the owner.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any

from gluegun_actors._connection.stats import LiveStats
from gluegun_actors._io.addresses import host_port
from gluegun_actors._types import Protocol, StreamRef
from gluegun_actors.errors import ConnectFailed, ConnectionTerminated, describe

if TYPE_CHECKING:
    import pykka

    from gluegun_actors._connection.destination import Destination
    from gluegun_actors._connection.outage import Outage

_ids = itertools.count(1)
ALIVE: Any = object()
_CLOSED = ("shutdown", "normal")
"""Exit reasons of a connection closed on purpose (`close`, `shutdown`), as Gun's."""


class Connection:
    """A handle on one connection actor; compare and hash by identity."""

    __slots__ = (
        "__weakref__",
        "actor_ref",
        "exit_reason",
        "finished",
        "host",
        "id",
        "last_error",
        "outage",
        "owner",
        "port",
        "protocol",
        "stats",
        "ws_streams",
    )

    def __init__(self, host: str, port: int, owner: Destination) -> None:
        # Set before the actor starts, then read-only:
        self.id = next(_ids)
        self.host = host
        self.port = port
        self.actor_ref: pykka.ActorRef[Any] | None = None
        # Published by the actor's turn, read by any thread (a reference swap each):
        self.owner = owner
        self.protocol: Protocol | None = None
        self.ws_streams: frozenset[StreamRef] = frozenset()
        self.exit_reason: object = ALIVE
        self.finished = threading.Event()
        """Set once the actor has stopped and released its socket and reactor."""
        self.outage: Outage | None = None
        """The failed connect attempts since it was last up; None while up (or never failed)."""
        self.last_error: BaseException | None = None
        """The last failed connect attempt's exception; kept after a later success."""
        self.stats = LiveStats()

    @property
    def alive(self) -> bool:
        """False once the actor has stopped (after `close`, `shutdown`, or retries ran out)."""
        return self.exit_reason is ALIVE

    def check_alive(self) -> None:
        """Raise `ConnectionTerminated` (`ConnectFailed`) if the actor has stopped."""
        if self.exit_reason is not ALIVE:
            raise self.terminated(self.exit_reason, "open a new connection")

    def terminated(self, reason: object, advice: str) -> ConnectionTerminated:
        """The error for a caller that finds the actor stopped for `reason`.

        `ConnectFailed` when it stopped because it could not connect (its message names
        the last attempt's failure); `__cause__` is `reason` when that is an exception.
        """
        outage = self.outage
        if outage is not None and outage.error is reason:
            error: ConnectionTerminated = ConnectFailed(
                f"{self!r} could not connect: {outage}; {advice}", reason, outage.failures
            )
        elif reason in _CLOSED:
            error = ConnectionTerminated(f"{self!r} is closed ({reason}); {advice}", reason)
        else:
            why = "" if reason is ALIVE else f" ({describe(reason)})"
            error = ConnectionTerminated(f"{self!r} has stopped{why}; {advice}", reason)
        if isinstance(reason, BaseException):
            error.__cause__ = reason
        error.__suppress_context__ = True
        return error

    def tell(self, message: object) -> None:
        """Send a command to the actor, or raise if it is gone."""
        self.check_alive()
        assert self.actor_ref is not None
        try:
            self.actor_ref.tell(message)
        except Exception:  # pykka.ActorDeadError: it stopped in between
            error = self.terminated(self.exit_reason, "open a new connection")
            raise error from error.__cause__

    def __repr__(self) -> str:
        state = "" if self.alive else " stopped"
        return f"<Connection #{self.id} {host_port(self.host, self.port)}{state}>"

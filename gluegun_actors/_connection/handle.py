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
from gluegun_actors._types import Protocol, StreamRef
from gluegun_actors.errors import ConnectionTerminated, describe

if TYPE_CHECKING:
    import pykka

    from gluegun_actors._connection.destination import Destination

_ids = itertools.count(1)
ALIVE: Any = object()


class Connection:
    """A handle on one connection actor; compare and hash by identity."""

    __slots__ = (
        "__weakref__",
        "actor_ref",
        "exit_reason",
        "finished",
        "host",
        "id",
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
        self.stats = LiveStats()

    @property
    def alive(self) -> bool:
        """False once the actor has stopped (after `close`, `shutdown`, or retries ran out)."""
        return self.exit_reason is ALIVE

    def check_alive(self) -> None:
        """Raise `ConnectionTerminated` if the actor has stopped."""
        if self.exit_reason is not ALIVE:
            raise ConnectionTerminated(
                f"{self!r} has stopped ({describe(self.exit_reason)}); open a new connection",
                self.exit_reason,
            )

    def tell(self, message: object) -> None:
        """Send a command to the actor, or raise if it is gone."""
        self.check_alive()
        assert self.actor_ref is not None
        try:
            self.actor_ref.tell(message)
        except Exception as error:  # pykka.ActorDeadError: it stopped in between
            raise ConnectionTerminated(
                f"{self!r} has stopped; open a new connection", self.exit_reason
            ) from error

    def __repr__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        state = "" if self.alive else " stopped"
        return f"<Connection #{self.id} {host}:{self.port}{state}>"

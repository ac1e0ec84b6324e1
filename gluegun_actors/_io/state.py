"""A transport's states as tables, and the rule for when its events are delivered.

Transport phases (`Phase`; the allowed moves are the `PHASE_TRANSITIONS` table)::

    RESOLVING -> CONNECTING -> TUNNELING -> HANDSHAKING -> OPEN -> FLUSHING -> CLOSED
                 (again per  (proxy only)  (TLS only)       |
                  address)                                 +--> FAILING --> CLOSED

Every state moves to CLOSED on `close()`, on a failure and on the connect timeout.

The read side (`Reading`), active-once: PAUSED --resume--> ARMED --Received--> PAUSED,
and ARMED --Eof / Broken--> ENDED.

Delivery: a transport finds events while holding its lock and queues them; the
callback runs only once the lock is released (`delivers_after`), so a thread writing
to the transport never waits for a callback to end.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

if TYPE_CHECKING:
    from gluegun_actors._io.transport import Transport

__all__ = [
    "CONNECTING_PHASES",
    "PHASE_TRANSITIONS",
    "Loan",
    "Phase",
    "Reading",
    "delivers_after",
]


class Phase(enum.Enum):
    """Where a transport is in its life."""

    RESOLVING = "resolving"
    CONNECTING = "connecting"
    TUNNELING = "tunneling"  # asking the proxy for a tunnel to the server
    HANDSHAKING = "handshaking"
    OPEN = "open"
    FLUSHING = "flushing"  # close_after_flush: sending what is parked, then closing
    FAILING = "failing"  # a write failed off the reactor thread; Broken is on its way
    CLOSED = "closed"


PHASE_TRANSITIONS: Final[dict[Phase, frozenset[Phase]]] = {
    Phase.RESOLVING: frozenset({Phase.CONNECTING, Phase.CLOSED}),
    Phase.CONNECTING: frozenset(
        {Phase.CONNECTING, Phase.TUNNELING, Phase.HANDSHAKING, Phase.OPEN, Phase.CLOSED}
    ),
    Phase.TUNNELING: frozenset({Phase.HANDSHAKING, Phase.OPEN, Phase.CLOSED}),
    Phase.HANDSHAKING: frozenset({Phase.OPEN, Phase.CLOSED}),
    Phase.OPEN: frozenset({Phase.FLUSHING, Phase.FAILING, Phase.CLOSED}),
    Phase.FLUSHING: frozenset({Phase.CLOSED}),
    Phase.FAILING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}

CONNECTING_PHASES: Final = frozenset(
    {Phase.RESOLVING, Phase.CONNECTING, Phase.TUNNELING, Phase.HANDSHAKING}
)


class Loan(enum.Enum):
    """Who reads an armed plain socket (see `transport`): the reactor, or a caller thread."""

    NONE = "none"  # the reactor
    ACTIVE = "active"  # a borrower polls and reads it now
    PARKED = "parked"  # the borrower's wait is over; the next one takes it up again


class Reading(enum.Enum):
    """The read side, active-once."""

    PAUSED = "paused"  # a Received was delivered (or nothing asked yet): do not read
    ARMED = "armed"  # resume_reading() was called: read once when data comes
    ENDED = "ended"  # Eof, Broken or closed: never read again


_Method = TypeVar("_Method", bound=Callable[..., None])


def delivers_after(method: _Method) -> _Method:
    """A reactor-thread entry point of `Transport`: runs under the transport lock, then
    delivers the events it found with the lock released."""

    @functools.wraps(method)
    def entry(self: Transport, *args: Any) -> None:
        try:
            with self._lock:
                method(self, *args)
        finally:
            if self._pending:
                self._deliver_pending()

    return cast(_Method, entry)

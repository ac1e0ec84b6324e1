"""The connection actor's timers: retry delay, keepalive ping, pong and closing timeouts.

Each runs on the reactor's timer heap and fires as a `TimerFired` told to the actor.
Cancelling every timer (at a reconnect or a stop) starts a new generation, so a tick
that was already on its way is recognised as stale and ignored.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pykka

from gluegun_actors._connection.commands import TimerFired, TimerKind
from gluegun_actors._io.reactor import Reactor
from gluegun_actors._io.timers import TimerHandle

__all__ = ["ActorTimers"]


class ActorTimers:
    """At most one timer of each kind; used by the actor's turn only."""

    __slots__ = ("_generation", "_handles", "_ref")

    def __init__(self, ref: pykka.ActorRef[Any]) -> None:
        self._ref = ref
        self._handles: dict[TimerKind, TimerHandle] = {}
        self._generation = 0

    def start(self, reactor: Reactor, kind: TimerKind, delay_ms: int) -> None:
        """(Re)start the timer of `kind`."""
        self.cancel(kind)
        message = TimerFired(kind, self._generation)
        tell = self._ref.tell

        def fire() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                tell(message)

        self._handles[kind] = reactor.call_later(delay_ms / 1000.0, fire)

    def running(self, kind: TimerKind) -> bool:
        return kind in self._handles

    def cancel(self, kind: TimerKind) -> None:
        handle = self._handles.pop(kind, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        """Cancel every timer; ticks already on their way become stale."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._generation += 1

    def take(self, fired: TimerFired) -> bool:
        """Whether `fired` is live (then its timer is done); False for a stale tick."""
        if fired.generation != self._generation or fired.kind not in self._handles:
            return False
        del self._handles[fired.kind]
        return True

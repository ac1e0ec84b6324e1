"""Destinations: where a connection delivers (its owner, a stream's `reply_to`), and how
it notices the owner die.

A destination is a `Mailbox` (plain threads) or a Pykka `ActorRef` (messages arrive in
`on_receive`). The owner gets the connection's own messages (`GunUp`, `GunDown`, `Down`);
a stream's messages go to its `reply_to`, by default whoever started it (`caller()`), as
in Gun. Gun monitors its owner process; here a mailbox tells its monitors when its thread
ends (or it is closed), and actor owners are polled by one shared watcher on the
reactor's timer heap, however many connections they own.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

import pykka

from gluegun_actors._io.reactor import Reactor
from gluegun_actors._io.timers import TimerHandle
from gluegun_actors._io.wakeups import HeldWakeups
from gluegun_actors._runtime.caller import calling_actor
from gluegun_actors.mailbox import Mailbox, current

log = logging.getLogger("gluegun_actors.connection")

__all__ = ["ActorDestination", "Destination", "MailboxDestination", "caller", "destination"]

Target = Mailbox | pykka.ActorRef[Any]
"""What callers name as an owner or a `reply_to`."""


def caller() -> Target:
    """Where the calling code lives (Erlang's `self()`): the Pykka actor whose handler
    runs on this thread, else this thread's own mailbox."""
    return calling_actor() or current()


class Destination:
    """Where messages go, and how to learn that they can no longer go there."""

    mailbox: Mailbox | None = None
    target: Target

    def deliver(self, message: object) -> bool:
        """Hand `message` over; False when the destination is already gone."""
        raise NotImplementedError

    def deliver_all(self, messages: list[object], held: HeldWakeups | None = None) -> bool:
        """Hand `messages` over in order; False when the destination is already gone.

        `held`: the running turn's held wakeups (see `_io.wakeups`), for a mailbox.
        """
        return all(self.deliver(message) for message in messages)

    def monitor(self, callback: Callable[[], None], reactor: Reactor, interval: float) -> object:
        """Call `callback` once, from any thread, when the destination dies.

        An actor is checked every `interval` seconds on `reactor`'s timers.
        """
        raise NotImplementedError

    def demonitor(self, handle: object) -> None:
        raise NotImplementedError


class MailboxDestination(Destination):
    __slots__ = ("mailbox", "target")

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.target = mailbox

    def deliver(self, message: object) -> bool:
        self.mailbox.put(message)  # type: ignore[union-attr]
        return True

    def deliver_all(self, messages: list[object], held: HeldWakeups | None = None) -> bool:
        self.mailbox._put_all(messages, held)  # type: ignore[union-attr]
        return True

    def monitor(self, callback: Callable[[], None], reactor: Reactor, interval: float) -> object:
        return self.mailbox.monitor(callback)  # type: ignore[union-attr]

    def demonitor(self, handle: object) -> None:
        self.mailbox.demonitor(handle)  # type: ignore[union-attr]


class ActorDestination(Destination):
    __slots__ = ("ref", "target")

    def __init__(self, ref: pykka.ActorRef[Any]) -> None:
        self.ref = ref
        self.target = ref

    def deliver(self, message: object) -> bool:
        try:
            self.ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def monitor(self, callback: Callable[[], None], reactor: Reactor, interval: float) -> object:
        return _watcher.watch(self.ref, callback, reactor, interval)

    def demonitor(self, handle: object) -> None:
        _watcher.unwatch(handle)


def destination(target: Target) -> Destination:
    """The destination for a `Mailbox` or an `ActorRef`."""
    if isinstance(target, Mailbox):
        return MailboxDestination(target)
    return ActorDestination(target)


class _ActorWatcher:
    """Polls watched actor refs on one reactor timer; fires callbacks for dead ones.

    The timer runs at the shortest interval any current watch asked for.
    """

    def __init__(self) -> None:
        # Guarded by `_lock` (actors' turns watch and unwatch; the reactor thread checks):
        self._lock = threading.Lock()
        self._watches: dict[int, tuple[pykka.ActorRef[Any], Callable[[], None], float]] = {}
        self._ids = itertools.count()
        self._timer: TimerHandle | None = None
        self._reactor: Reactor | None = None

    def watch(
        self,
        ref: pykka.ActorRef[Any],
        callback: Callable[[], None],
        reactor: Reactor,
        interval: float,
    ) -> int:
        handle = next(self._ids)
        with self._lock:
            self._watches[handle] = (ref, callback, interval)
            if self._timer is None or self._reactor is not reactor:
                self._reactor = reactor
                self._timer = reactor.call_later(interval, self._check)
        return handle

    def unwatch(self, handle: object) -> None:
        with self._lock:
            self._watches.pop(handle, None)  # type: ignore[call-overload]
            if not self._watches and self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _check(self) -> None:
        with self._lock:
            dead = [(h, cb) for h, (ref, cb, _) in self._watches.items() if not ref.is_alive()]
            for handle, _ in dead:
                del self._watches[handle]
            reactor = self._reactor
            if self._watches and reactor is not None and reactor.running:
                interval = min(seconds for _, _, seconds in self._watches.values())
                self._timer = reactor.call_later(interval, self._check)
            else:
                self._timer = None
        for _, callback in dead:
            try:
                callback()
            except Exception:
                log.exception("owner-down callback failed")


_watcher = _ActorWatcher()

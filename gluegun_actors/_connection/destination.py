"""Destinations: where a connection delivers (its owner, a stream's `reply_to`), and how
it notices the owner die.

A destination is a `Mailbox` (plain threads) or a Pykka `ActorRef` (messages arrive in
`on_receive`). The owner gets the connection's own messages (`GunUp`, `GunDown`, `Down`);
a stream's messages go to its `reply_to`, by default whoever started it (`caller()`), as
in Gun. Gun monitors its owner process; here a mailbox tells its monitors when its thread
ends (or it is closed), and an actor owner is watched by its death watch
(`_runtime.deathwatch`): its death is noticed as it happens, with no polling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from gluegun_actors._io.wakeups import HeldWakeups
from gluegun_actors._runtime import deathwatch
from gluegun_actors._runtime.caller import calling_actor
from gluegun_actors.mailbox import HIGH_WATER_MESSAGES, Mailbox, current

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

    def backlogged(self, on_drained: Callable[[], None]) -> bool:
        """Whether it holds more of what was delivered than its high-water mark; a mailbox
        then calls `on_drained` once it is drained (see `mailbox`), an actor does not
        (`polled`: ask again later)."""
        raise NotImplementedError

    polled = False
    """True when `backlogged` cannot call back: the caller asks again after a while."""

    def monitor(self, callback: Callable[[], None]) -> object:
        """Call `callback` once, from any thread, when the destination dies."""
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

    def backlogged(self, on_drained: Callable[[], None]) -> bool:
        return self.mailbox._backlogged(on_drained)  # type: ignore[union-attr]

    def monitor(self, callback: Callable[[], None]) -> object:
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

    polled = True

    def backlogged(self, on_drained: Callable[[], None]) -> bool:
        inbox = self.ref.actor_inbox
        size = inbox.qsize() if hasattr(inbox, "qsize") else len(inbox)  # type: ignore[arg-type]
        return bool(size > HIGH_WATER_MESSAGES)

    def monitor(self, callback: Callable[[], None]) -> object:
        return deathwatch.watch(self.ref, lambda reason: callback())

    def demonitor(self, handle: object) -> None:
        if isinstance(handle, int):
            deathwatch.unwatch(self.ref, handle)


def destination(target: Target) -> Destination:
    """The destination for a `Mailbox` or an `ActorRef`."""
    if isinstance(target, Mailbox):
        return MailboxDestination(target)
    return ActorDestination(target)

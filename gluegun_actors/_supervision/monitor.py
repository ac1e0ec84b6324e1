"""Monitors (Erlang's `erlang:monitor/2`): one `Down` when a target stops, whatever ends it.

A target is a Pykka `ActorRef` (any runtime: pooled, threading), a `Connection` or a
`Supervisor`. The owner (a `Mailbox` or an `ActorRef`, by default the caller) gets
exactly one `events.Down(target, reason, monitor)`: at once, with `"noproc"` (or the
known reason) when the target is already gone. Under it is `_runtime.deathwatch`.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Protocol

import pykka

from gluegun_actors._connection.destination import caller, destination
from gluegun_actors._connection.handle import Connection
from gluegun_actors._runtime import deathwatch
from gluegun_actors.errors import InvalidArgument
from gluegun_actors.events import Down
from gluegun_actors.mailbox import Mailbox

__all__ = ["MonitorRef", "Monitorable", "actor_ref_of", "demonitor", "monitor"]

_ids = itertools.count(1)


class Monitorable(Protocol):
    """Anything with an `actor_ref` can be monitored (a `Supervisor` is)."""

    @property
    def actor_ref(self) -> pykka.ActorRef[Any]: ...


class MonitorRef:
    """Names one monitor (Erlang's monitor reference); compares by identity."""

    __slots__ = ("_handle", "_off", "id", "owner", "target")

    def __init__(self, target: object, owner: Mailbox | pykka.ActorRef[Any]) -> None:
        self.id = next(_ids)
        self.target = target
        """What is watched."""
        self.owner = owner
        """Where its `Down` goes."""
        self._off = False  # its Down was sent, or it was demonitored (under _lock)
        self._handle: tuple[pykka.ActorRef[Any], int] | None = None

    def __repr__(self) -> str:
        return f"MonitorRef({self.id})"


_lock = threading.Lock()  # orders a demonitor with the Down it races


def actor_ref_of(target: object) -> pykka.ActorRef[Any]:
    """The `ActorRef` behind a monitorable target; `InvalidArgument` for anything else."""
    if isinstance(target, pykka.ActorRef):
        return target
    if isinstance(target, Connection):
        if target.actor_ref is None:  # pragma: no cover - set by open() before it returns
            raise InvalidArgument(f"{target!r} has no actor yet")
        return target.actor_ref
    ref = getattr(target, "actor_ref", None)
    if isinstance(ref, pykka.ActorRef):
        return ref
    raise InvalidArgument(
        "monitor takes a pykka.ActorRef, a Connection or a Supervisor, "
        f"got {type(target).__name__} {target!r}"
    )


def monitor(target: object, owner: Mailbox | pykka.ActorRef[Any] | None = None) -> MonitorRef:
    """Watch `target`: `owner` gets one `Down(target, reason, monitor_ref)` when it stops.

    `reason` is `"normal"` for an actor that was stopped (or stopped itself), the exception
    that ended it, a connection's exit reason, or `"noproc"` when it was already gone.
    `owner` is a `Mailbox` or an `ActorRef`; by default the caller (the calling Pykka
    actor, else the calling thread's mailbox).

    Raises:
        InvalidArgument: `target` is not an `ActorRef`, `Connection` or `Supervisor`, or
            `owner` is neither a `Mailbox` nor an `ActorRef`.

    Example:
        ```python
        ref = supervisor.monitor(worker_ref)
        down = mailbox.current().receive(lambda m: isinstance(m, Down) and m.monitor is ref)
        print(down.reason)  # "normal", or the exception that ended it
        ```
    """
    ref = actor_ref_of(target)
    if owner is None:
        owner = caller()
    elif not isinstance(owner, Mailbox | pykka.ActorRef):
        raise InvalidArgument(f"owner must be a Mailbox or a pykka.ActorRef, got {owner!r}")
    monitor_ref = MonitorRef(target=target, owner=owner)
    to = destination(owner)

    def down(reason: object) -> None:
        with _lock:
            if monitor_ref._off:
                return
            monitor_ref._off = True
        to.deliver(Down(target, _reason(target, reason), monitor_ref))

    handle = deathwatch.watch(ref, down)
    if handle is not None:
        monitor_ref._handle = (ref, handle)
    return monitor_ref


def demonitor(monitor_ref: MonitorRef, *, flush: bool = False) -> bool:
    """Stop a monitor; True if its `Down` had not been sent. With `flush`, a `Down` it
    already sent is removed from the owner's mailbox (when the owner is a `Mailbox`).

    Raises:
        InvalidArgument: `monitor_ref` is not a `MonitorRef`.

    Example:
        ```python
        ref = supervisor.monitor(conn)
        ...
        supervisor.demonitor(ref, flush=True)  # no Down from it is left behind
        ```
    """
    if not isinstance(monitor_ref, MonitorRef):
        raise InvalidArgument(f"demonitor takes a MonitorRef, got {monitor_ref!r}")
    with _lock:
        active = not monitor_ref._off
        monitor_ref._off = True
    if monitor_ref._handle is not None:
        deathwatch.unwatch(*monitor_ref._handle)
    owner = monitor_ref.owner
    if flush and isinstance(owner, Mailbox):
        owner.flush(lambda m: isinstance(m, Down) and m.monitor is monitor_ref)
    return active


def _reason(target: object, reason: object) -> object:
    """A connection's own exit reason says more than its actor's."""
    if isinstance(target, Connection) and not target.alive:
        return target.exit_reason
    return reason

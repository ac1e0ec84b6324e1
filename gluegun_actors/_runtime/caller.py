"""Who is calling: the Pykka actor whose handler runs on this thread, if any.

Erlang's `self()` inside a process is that process. A caller that opens a connection or
starts a stream without naming an owner or a `reply_to` gets its messages where it
lives: its own actor when the call comes from a Pykka actor's handler, else its thread's
mailbox (`mailbox.current()`).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pykka

from gluegun_actors._runtime.pool import running_actor

__all__ = ["calling_actor"]

_ACTOR_LOOP = pykka.Actor._actor_loop.__code__
_MAX_DEPTH = 256


class _Found(threading.local):
    """The `ThreadingActor` a thread was started for (looked up once per thread)."""

    known = False
    actor: pykka.Actor | None = None


_found = _Found()


def calling_actor() -> pykka.ActorRef[Any] | None:
    """The actor whose handler the calling thread is running, or None for a plain thread.

    A pooled actor's turn is known to the pool; a `ThreadingActor` is found once per
    thread, as the `self` of Pykka's actor loop at the bottom of the thread's stack.
    """
    pooled = running_actor()
    if pooled is not None:
        return pooled.actor_ref
    if not _found.known:
        _found.actor = _threading_actor()
        _found.known = True
    actor = _found.actor
    return None if actor is None else actor.actor_ref


def _threading_actor() -> pykka.Actor | None:
    frame = sys._getframe(1)
    for _ in range(_MAX_DEPTH):
        if frame.f_code is _ACTOR_LOOP:
            actor = frame.f_locals.get("self")
            return actor if isinstance(actor, pykka.Actor) else None
        if frame.f_back is None:
            return None
        frame = frame.f_back
    return None

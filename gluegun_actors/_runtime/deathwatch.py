"""Death watch for any Pykka actor: call back once when it has stopped, and say why.

Pykka has no monitors. An actor's life ends in a few places, all of them methods the
runtime looks up on the instance when it calls them, so a watch wraps them on the
instance, once per actor:

- `_handle_failure(type, value, tb)`: an exception in `on_start`, in a told message's
  handler, or in `on_stop`: the reason is that exception;
- `_stop()`: a stop, asked from outside or by the actor itself; called from inside an
  `except` block when a handler raised a `BaseException` (Pykka then stops every actor):
  the reason is that exception, else `NORMAL`;
- the end of the actor's loop (`_actor_loop_teardown` for Pykka's loop-based runtimes;
  `exited()`, called by the pooled runtime once its actor is finished): only then has
  the actor fully stopped, its `on_stop` or `on_failure` done, and the callbacks run,
  each once, in the thread that ran the actor's last turn.

A runtime that records its actors' reasons itself (the pooled one, which calls `record`
and `exited`) needs no wrapping, so its reasons are known even when nobody watched the
actor yet. For another runtime's actor, a watch set after it stopped cannot know why:
it calls back at once with `NOPROC` (Erlang's answer for a monitor on a dead process);
a watch on an actor that is stopping calls back at once too, with the reason so far.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

import pykka

log = logging.getLogger("gluegun_actors.supervisor")

__all__ = ["NOPROC", "NORMAL", "Watch", "exited", "reason_of", "record", "unwatch", "watch"]

NORMAL: Final = "normal"
"""The reason of an actor that stopped because it was asked to (or asked itself)."""
NOPROC: Final = "noproc"
"""The reason given for an actor that was already gone, and why is not known."""

Callback = Callable[[object], None]
"""Called with the reason, once, when the watched actor has stopped."""

_install_lock = threading.Lock()
_handles = itertools.count(1)


class Watch:
    """One actor's death watch: its reason so far, and who to tell when it is over."""

    __slots__ = ("_callbacks", "_lock", "exited", "reason")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callback] = {}  # guarded by _lock
        self.reason: object = None  # the first reason recorded (None: none yet)
        self.exited = False  # set once, under _lock

    def record(self, reason: object) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason

    def add(self, callback: Callback, stopped: bool) -> int | None:
        """Register `callback`; None if it was called at once (the actor is gone)."""
        with self._lock:
            if not self.exited and not stopped:
                handle = next(_handles)
                self._callbacks[handle] = callback
                return handle
            self.exited = True
            reason = self.reason if self.reason is not None else NOPROC
            self.reason = reason
            waiting = list(self._callbacks.values())
            self._callbacks.clear()
        _call([*waiting, callback], reason)
        return None

    def remove(self, handle: int) -> bool:
        with self._lock:
            return self._callbacks.pop(handle, None) is not None

    def fire(self) -> None:
        """The actor has fully stopped: call every callback, once."""
        with self._lock:
            if self.exited:
                return
            self.exited = True
            if self.reason is None:
                self.reason = NORMAL
            reason = self.reason
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        _call(callbacks, reason)


def _call(callbacks: list[Callback], reason: object) -> None:
    for callback in callbacks:
        try:
            callback(reason)
        except Exception:
            log.exception("a death-watch callback %r raised; ignored", callback)


def _watch_of(actor: pykka.Actor) -> Watch:
    """The actor's watch, installed on first use (its methods wrapped, unless its runtime
    records for itself)."""
    found: Watch | None = actor.__dict__.get("_gluegun_watch")
    if found is not None:
        return found
    with _install_lock:
        again: Watch | None = actor.__dict__.get("_gluegun_watch")
        if again is not None:
            return again
        w = Watch()
        if getattr(type(actor), "_records_its_exit", False):
            actor.__dict__["_gluegun_watch"] = w
            return w
        handle_failure = actor._handle_failure
        stop = actor._stop
        teardown = actor._actor_loop_teardown

        def _handle_failure(
            exc_type: type[BaseException] | None,
            exc_value: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            w.record(exc_value)
            handle_failure(exc_type, exc_value, tb)

        def _stop() -> None:
            raised = sys.exc_info()[1]  # inside `except BaseException`: Pykka's stop-all
            w.record(raised if raised is not None else NORMAL)
            stop()

        def _actor_loop_teardown() -> None:
            try:
                teardown()
            finally:
                w.fire()

        actor.__dict__["_handle_failure"] = _handle_failure
        actor.__dict__["_stop"] = _stop
        actor.__dict__["_actor_loop_teardown"] = _actor_loop_teardown
        actor.__dict__["_gluegun_watch"] = w
        return w


def watch(ref: pykka.ActorRef[Any], callback: Callback) -> int | None:
    """Call `callback(reason)` once when the actor behind `ref` has stopped.

    Returns a handle for `unwatch`, or None when the actor was already gone (then the
    callback has already been called, in this thread).
    """
    actor = ref._actor_weakref()
    if actor is None:  # collected: long gone
        _call([callback], NOPROC)
        return None
    w = _watch_of(actor)
    return w.add(callback, stopped=ref.actor_stopped.is_set())


def unwatch(ref: pykka.ActorRef[Any], handle: int) -> bool:
    """Forget a watch; False if it already fired (or was forgotten)."""
    actor = ref._actor_weakref()
    if actor is None:
        return False
    found: Watch | None = actor.__dict__.get("_gluegun_watch")
    return found is not None and found.remove(handle)


def record(actor: pykka.Actor, reason: object) -> None:
    """For a runtime that records its actors' reasons (the pooled one): why `actor` stops
    (the first reason recorded wins)."""
    _watch_of(actor).record(reason)


def exited(actor: pykka.Actor) -> None:
    """For a runtime without Pykka's loop (the pooled one): `actor` has fully stopped."""
    found: Watch | None = actor.__dict__.get("_gluegun_watch")
    if found is not None:
        found.fire()


def reason_of(ref: pykka.ActorRef[Any]) -> object:
    """Why the actor behind `ref` stopped, if it was watched and has; else None."""
    actor = ref._actor_weakref()
    found: Watch | None = None if actor is None else actor.__dict__.get("_gluegun_watch")
    return None if found is None else found.reason

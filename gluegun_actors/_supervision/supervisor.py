"""The supervisor actor (OTP's `supervisor`, Elixir's `DynamicSupervisor`).

Theory of operation
-------------------
A supervisor starts its children in order, watches each (`_runtime.deathwatch`), and
when one exits applies its restart type and the strategy:

- `one_for_one`: restart that child;
- `one_for_all`: stop every other child (in reverse start order), then start them all;
- `rest_for_one`: stop the children started after it (in reverse), then start it and them.

Restarts count against the intensity: more than `intensity` restarts within `period` ms
and the supervisor gives up: it stops every child in reverse start order and stops with
`Shutdown("reached_max_restart_intensity")`, which its own supervisor (or owner) sees. A
child with a `Backoff` is restarted after a growing delay instead of at once.

Stopping a child is graceful first (`connection.shutdown`, `ActorRef.stop`, a child
supervisor's own stop) and forced after its `shutdown` ms: a connection is closed, an
actor is unregistered and marked stopped (Python cannot kill a thread: one stuck in a
handler ends when the handler returns).

A dynamic supervisor (`start_dynamic`) has one template spec and starts children on
demand with extra arguments, always one_for_one; a child that exits for good is
forgotten.

The supervisor is a `pykka.ThreadingActor`: stopping children waits, and start
callables may block, neither of which a pooled actor may do. Its owner gets
`Down(supervisor, reason)` when it stops; its owner's death stops it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

import pykka
from pykka._envelope import Envelope
from pykka.messages import ProxyGetAttr

from gluegun_actors import connection
from gluegun_actors._connection.commands import CloseNow
from gluegun_actors._connection.destination import Destination
from gluegun_actors._connection.handle import Connection
from gluegun_actors._io import Reactor, TimerHandle, acquire_reactor, release_reactor
from gluegun_actors._runtime import deathwatch
from gluegun_actors._supervision.spec import ChildSpec
from gluegun_actors.errors import (
    ChildStartError,
    ConnectionTerminated,
    SupervisorError,
    describe,
)
from gluegun_actors.events import Down, Shutdown

log = logging.getLogger("gluegun_actors.supervisor")

__all__ = [
    "ChildCount",
    "ChildInfo",
    "Strategy",
    "Supervisor",
    "SupervisorActor",
]

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
AutoShutdown = Literal["never", "any_significant", "all_significant"]
Target = pykka.ActorRef[Any] | Connection | Any  # (a Supervisor too)

_START_WAIT = 60.0
"""Seconds a child's on_start may take before the supervisor goes on without waiting."""
_CLOSE_WAIT = 10.0
"""Seconds a connection told to close at once may take before its actor is forced."""
KILLED = "killed"
"""The reason of a child whose stop was forced."""
INTENSITY = Shutdown("reached_max_restart_intensity")


def normal_exit(reason: object) -> bool:
    """OTP's rule: `normal`, `shutdown` and `{shutdown, _}` are not failures."""
    return reason in (deathwatch.NORMAL, "shutdown") or isinstance(reason, Shutdown)


class Supervisor:
    """A handle on a supervisor (what `supervisor.start` returns); compares by identity."""

    __slots__ = ("__weakref__", "actor_ref", "dynamic")

    def __init__(self, actor_ref: pykka.ActorRef[Any], dynamic: bool) -> None:
        self.actor_ref = actor_ref
        self.dynamic = dynamic

    @property
    def alive(self) -> bool:
        return self.actor_ref.is_alive()

    def __repr__(self) -> str:
        kind = "DynamicSupervisor" if self.dynamic else "Supervisor"
        state = "" if self.alive else " stopped"
        return f"<{kind} {self.actor_ref.actor_urn[-8:]}{state}>"


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One child, as `which_children` sees it: `ref` is None while it is not running."""

    id: Hashable
    ref: Target | None
    type: Literal["worker", "supervisor"]
    restart: str


@dataclass(frozen=True, slots=True)
class ChildCount:
    """`count_children`: specs known, children running, of each type."""

    specs: int
    active: int
    supervisors: int
    workers: int


class _Child:
    """A child spec and its current incarnation (`target`, None while not running)."""

    __slots__ = ("args", "id", "restarts", "spec", "started_at", "target")

    def __init__(self, spec: ChildSpec, id: Hashable, args: tuple[Any, ...] = ()) -> None:
        self.spec = spec
        self.id = id
        self.args = args
        self.target: Target | None = None
        self.started_at = 0.0
        self.restarts = 0  # in a row, for the backoff


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ChildExited:
    child: _Child
    target: Target
    reason: object


@dataclass(frozen=True, slots=True)
class _RestartDue:
    child: _Child


@dataclass(frozen=True, slots=True)
class _OwnerDied:
    pass


@dataclass(frozen=True, slots=True)
class Call:
    """An API call, asked: `name` with `args`; the answer is its result or exception."""

    name: str
    args: tuple[Any, ...] = ()


# -- the actor --------------------------------------------------------------------------


class SupervisorActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        specs: list[ChildSpec],
        *,
        strategy: Strategy,
        intensity: int | None,
        period: int,
        auto_shutdown: AutoShutdown,
        owner: Destination | None,
        template: ChildSpec | None = None,
        max_children: int | None = None,
    ) -> None:
        super().__init__()
        self.children: list[_Child] = [_Child(spec, spec.id) for spec in specs]
        self.strategy = strategy
        self.intensity = intensity
        self.period = period / 1000.0
        self.auto_shutdown = auto_shutdown
        self.owner = owner
        self.owner_watch: object = None
        self.owner_quiet = False  # stopped by a caller that wants no Down
        self.template = template
        self.max_children = max_children
        self.restarts: deque[float] = deque()
        self.reason: object = deathwatch.NORMAL
        self.stopping = False
        self.reactor: Reactor | None = None
        self.timers: dict[_Child, TimerHandle] = {}
        self.ids = itertools.count(1)
        self.handle: Supervisor | None = None

    # -- life ------------------------------------------------------------------------

    def on_stop(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        if self.reactor is not None:
            release_reactor(self.reactor)
            self.reactor = None
        if self.owner is not None:
            if self.owner_watch is not None:
                self.owner.demonitor(self.owner_watch)
            if self.reason != Shutdown("owner_down") and not self.owner_quiet:
                self.owner.deliver(Down(self.handle, self.reason))

    def on_receive(self, message: Any) -> Any:
        match message:
            case Call(name=name, args=args):
                return getattr(self, f"call_{name}")(*args)
            case _ChildExited(child=child, target=target, reason=reason):
                if child.target is target and not self.stopping:
                    self._exited(child, reason)
            case _RestartDue(child=child):
                self.timers.pop(child, None)
                if child.target is None and not self.stopping and self._known(child):
                    self._start_or_crash(child)
            case _OwnerDied():
                self._shut_down(Shutdown("owner_down"))
            case _:
                log.debug("%s ignored %r (a start callable should name its owner)", self, message)
        return None

    def __str__(self) -> str:
        return repr(self.handle) if self.handle is not None else "a supervisor"

    # -- calls (asked by the public functions) -----------------------------------------

    def call_init(self, handle: Supervisor) -> None:
        self.handle = handle
        if self.owner is not None:
            self.owner_watch = self.owner.monitor(self._owner_died)
        for child in self.children:
            try:
                self._start(child)
            except ChildStartError:
                self.reason = "failed_to_start_child"
                self._stop_children(self.children)
                self.owner = None  # the caller is told by the exception
                self.stop()
                raise

    def call_start_child(self, spec_or_args: ChildSpec | tuple[Any, ...], id: object) -> Target:
        self._check_live()
        if self.template is not None:
            assert isinstance(spec_or_args, tuple)
            if self.max_children is not None and len(self.children) >= self.max_children:
                raise SupervisorError(
                    f"{self} already runs max_children={self.max_children} children"
                )
            child_id = next(self.ids) if id is None else id
            if any(c.id == child_id for c in self.children):
                raise SupervisorError(f"{self} already has a child with id {child_id!r}")
            child = _Child(self.template, child_id, spec_or_args)
        else:
            assert isinstance(spec_or_args, ChildSpec)
            if any(c.id == spec_or_args.id for c in self.children):
                raise SupervisorError(f"{self} already has a child with id {spec_or_args.id!r}")
            child = _Child(spec_or_args, spec_or_args.id)
        self._start(child)
        self.children.append(child)
        assert child.target is not None
        return child.target

    def call_terminate_child(self, id: object) -> None:
        self._check_live()
        child = self._find(id)
        self._cancel_restart(child)
        self._stop_children([child])
        if self.template is not None or child.spec.restart == "temporary":
            self.children.remove(child)

    def call_restart_child(self, id: object) -> Target:
        self._check_live()
        if self.template is not None:
            raise SupervisorError("a dynamic supervisor cannot restart a child: start another")
        child = self._find(id)
        if child.target is not None:
            raise SupervisorError(f"child {id!r} of {self} is running")
        self._cancel_restart(child)
        self._start(child)
        assert child.target is not None
        return child.target

    def call_delete_child(self, id: object) -> None:
        self._check_live()
        if self.template is not None:
            raise SupervisorError("a dynamic supervisor has no specs to delete: terminate_child")
        child = self._find(id)
        if child.target is not None:
            raise SupervisorError(f"child {id!r} of {self} is running: terminate it first")
        self._cancel_restart(child)
        self.children.remove(child)

    def call_which_children(self) -> list[ChildInfo]:
        return [ChildInfo(c.id, c.target, c.spec.type, c.spec.restart) for c in self.children]

    def call_count_children(self) -> ChildCount:
        running = [c for c in self.children if c.target is not None]
        supervisors = sum(1 for c in running if c.spec.type == "supervisor")
        return ChildCount(len(self.children), len(running), supervisors, len(running) - supervisors)

    def call_stop(self, reason: object, notify: bool = True) -> None:
        if not notify:
            self.owner_quiet = True
        self._shut_down(reason)

    # -- children ----------------------------------------------------------------------

    def _start(self, child: _Child) -> None:
        """Start `child` and watch it; `ChildStartError` if it will not start."""
        child.started_at = time.monotonic()  # a start that fails had no uptime: backoff
        try:
            target = child.spec.start(*child.args)
        except Exception as error:
            log.error("%s could not start child %r", self, child.id, exc_info=True)
            raise ChildStartError(
                f"child {child.id!r} of {self} did not start: {describe(error)}", child.id
            ) from error
        try:
            ref = _ref_of(target)
        except TypeError as error:
            raise ChildStartError(
                f"child {child.id!r} of {self}: its start returned {target!r}, not a "
                "started pykka.ActorRef, Connection or Supervisor",
                child.id,
            ) from error
        child.target = target
        tell = self.actor_ref.tell

        def exited(reason: object) -> None:
            with contextlib.suppress(pykka.ActorDeadError):  # the supervisor is gone
                tell(_ChildExited(child, target, exit_reason(target, reason)))

        deathwatch.watch(ref, exited)
        _await_started(ref)

    def _exited(self, child: _Child, reason: object) -> None:
        """A running child exited on its own: its restart type, then the strategy."""
        child.target = None
        abnormal = not normal_exit(reason)
        if abnormal:
            log.error(
                "%s: child %r exited: %s",
                self,
                child.id,
                describe(reason),
                exc_info=reason if isinstance(reason, BaseException) else None,
            )
        restart = child.spec.restart == "permanent" or (
            child.spec.restart == "transient" and abnormal
        )
        if not restart:
            if child.spec.restart == "temporary" or self.template is not None:
                self.children.remove(child)
            if child.spec.significant and self._auto_shutdown_due():
                self._shut_down("shutdown")
            return
        if not self._count_restart():
            log.error(
                "%s: too many restarts (%d in %d ms); giving up",
                self,
                self.intensity,
                int(self.period * 1000),
            )
            self._shut_down(INTENSITY)
            return
        uptime = time.monotonic() - child.started_at
        match self.strategy:
            case "one_for_one":
                self._restart([child], uptime)
            case "one_for_all":
                self._stop_children([c for c in self.children if c is not child])
                self._restart(list(self.children), uptime)
            case "rest_for_one":
                later = self.children[self.children.index(child) + 1 :]
                self._stop_children(later)
                self._restart([child, *later], uptime)

    def _restart(self, children: list[_Child], uptime: float) -> None:
        """Start `children` again, in start order (after a backoff where the spec says)."""
        for child in children:
            backoff = child.spec.backoff
            if backoff is not None and uptime < backoff.max_ms / 1000.0:
                self._restart_later(child, backoff.delay(child.restarts))
                child.restarts += 1
                continue
            child.restarts = 0
            if not self._start_or_crash(child):
                return

    def _start_or_crash(self, child: _Child) -> bool:
        """Start a child again; one that will not start counts as another crash."""
        try:
            self._start(child)
        except ChildStartError as error:
            self._exited(child, error)
            return False
        return True

    def _restart_later(self, child: _Child, delay_ms: int) -> None:
        if self.reactor is None:
            self.reactor = acquire_reactor()
        tell = self.actor_ref.tell

        def due() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                tell(_RestartDue(child))

        log.info("%s: restarting child %r in %d ms", self, child.id, delay_ms)
        self.timers[child] = self.reactor.call_later(delay_ms / 1000.0, due)

    def _count_restart(self) -> bool:
        """Count a restart; False once more than `intensity` fall within `period`."""
        if self.intensity is None:
            return True
        now = time.monotonic()
        self.restarts.append(now)
        while self.restarts and now - self.restarts[0] > self.period:
            self.restarts.popleft()
        return len(self.restarts) <= self.intensity

    def _auto_shutdown_due(self) -> bool:
        match self.auto_shutdown:
            case "any_significant":
                return True
            case "all_significant":
                return not any(c.spec.significant and c.target is not None for c in self.children)
        return False

    def call_terminate_all(self, shutdown: int | None) -> int:
        """A dynamic supervisor's children all stopped at once (by `shutdown` ms, else
        their spec's) and forgotten; how many were running."""
        self._check_live()
        if self.template is None:
            raise SupervisorError("terminate_all is for a dynamic supervisor")
        for child in list(self.timers):
            self._cancel_restart(child)
        running = [c for c in self.children if c.target is not None]
        self._stop_children(self.children, shutdown)
        self.children.clear()
        return len(running)

    def _stop_children(self, children: list[_Child], shutdown: int | None = -1) -> None:
        """Stop the running ones among `children`: in reverse start order, each in turn,
        or (a dynamic supervisor's, as OTP) all at once. `shutdown` overrides the specs'."""
        targets: list[tuple[Target, int | None]] = []
        for child in reversed(children):
            target = child.target
            if target is None:
                continue
            child.target = None  # its exit, when it comes, is expected: not a crash
            targets.append((target, child.spec.shutdown if shutdown == -1 else shutdown))
        if self.template is not None:
            _stop_all(targets)
        else:
            for target, shutdown_ms in targets:
                _stop_all([(target, shutdown_ms)])

    def _shut_down(self, reason: object) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.reason = reason
        for child in list(self.timers):
            self._cancel_restart(child)
        self._stop_children(self.children)
        self.stop()

    # -- helpers -----------------------------------------------------------------------

    def _owner_died(self) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_OwnerDied())

    def _cancel_restart(self, child: _Child) -> None:
        timer = self.timers.pop(child, None)
        if timer is not None:
            timer.cancel()

    def _known(self, child: _Child) -> bool:
        return any(c is child for c in self.children)

    def _find(self, id: object) -> _Child:
        for child in self.children:
            if child.id == id or (child.target is not None and child.target == id):
                return child
        raise SupervisorError(f"{self} has no child {id!r}")

    def _check_live(self) -> None:
        if self.stopping:
            raise SupervisorError(f"{self} is stopping")


# -- stopping one child -------------------------------------------------------------------


def _ref_of(target: object) -> pykka.ActorRef[Any]:
    if isinstance(target, pykka.ActorRef):
        return target
    if isinstance(target, Connection) and target.actor_ref is not None:
        return target.actor_ref
    if isinstance(target, Supervisor):
        return target.actor_ref
    raise TypeError(target)


def _await_started(ref: pykka.ActorRef[Any]) -> None:
    """Return once the child's `on_start` has run, as OTP starts children one at a time,
    each initialised before the next. A child that failed in `on_start` has stopped: its
    watch reports the failure, and the strategy deals with it as with any exit."""
    try:
        ref.ask(ProxyGetAttr(attr_path=("actor_urn",)), timeout=_START_WAIT)
    except pykka.ActorDeadError:
        pass
    except pykka.Timeout:
        log.warning("%r has not finished on_start after %.0f s; going on", ref, _START_WAIT)


def exit_reason(target: object, reason: object) -> object:
    """Why `target` stopped: a connection's own reason (the one its `Down` carries),
    else what its watch reported."""
    if isinstance(target, Connection) and not target.alive:
        return target.exit_reason
    return reason


def _stop_all(targets: list[tuple[Target, int | None]]) -> None:
    """Stop each target gracefully, all at once, forcing each one still running after its
    `shutdown` ms (0: at once; None: never)."""
    waiting: list[tuple[Target, int | None, threading.Event]] = []
    for target, shutdown_ms in targets:
        if shutdown_ms == 0 and not isinstance(target, Connection):
            _force(target)  # brutal_kill: nothing to wait for
            continue
        done = threading.Event()
        if deathwatch.watch(_ref_of(target), _setter(done)) is None:
            continue  # already gone
        waiting.append((target, shutdown_ms, done))
        if isinstance(target, Connection) and shutdown_ms == 0:
            _ask_to_close(target)
        else:
            _ask_to_stop(target)
    started = time.monotonic()
    for target, shutdown_ms, done in waiting:
        if shutdown_ms is None:
            done.wait()
            continue
        left = max(shutdown_ms / 1000.0 - (time.monotonic() - started), 0.0)
        if shutdown_ms and not done.wait(left):
            log.warning("%r did not stop within %d ms: forcing it", target, shutdown_ms)
            _force(target)
        elif not shutdown_ms and not done.wait(_CLOSE_WAIT):
            _force(target)


def _setter(event: threading.Event) -> Callable[[object], None]:
    return lambda reason: event.set()


def _ask_to_close(target: Connection) -> None:
    """Ask a connection to close at once, without waiting."""
    if target.actor_ref is not None:
        with contextlib.suppress(pykka.ActorDeadError):
            target.actor_ref.tell(CloseNow())


def _ask_to_stop(target: Target) -> None:
    try:
        if isinstance(target, Connection):
            connection.shutdown(target)
        elif isinstance(target, Supervisor):
            target.actor_ref.tell(Call("stop", ("shutdown",)))
        else:
            target.stop(block=False)
    except (pykka.ActorDeadError, ConnectionTerminated):
        pass


def _force(target: Target) -> None:
    """Stop without waiting: close a connection, mark an actor stopped and forget it."""
    if isinstance(target, Connection):
        connection.close(target)  # it stops at once unless stuck in a handler
        if target.alive:
            _force_actor(_ref_of(target))
        return
    _force_actor(_ref_of(target))


def _force_actor(ref: pykka.ActorRef[Any]) -> None:
    actor = ref._actor_weakref()
    if actor is not None:
        deathwatch.record(actor, KILLED)
    pykka.ActorRegistry.unregister(ref)
    ref.actor_stopped.set()  # its loop ends as soon as its current handler returns
    with contextlib.suppress(Exception):  # an idle actor wakes up to notice (a dead
        ref.actor_inbox.put(Envelope(pykka.messages._ActorStop()))  # pooled inbox refuses)

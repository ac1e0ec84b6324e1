"""Fault tolerance for Pykka actors, connections included: monitors and OTP's supervisors.

Monitors (`monitor`, `demonitor`) watch a Pykka `ActorRef` (pooled or threading), a
`Connection` or a `Supervisor`: the owner (a `Mailbox` or an `ActorRef`, by default the
caller) gets exactly one `events.Down(target, reason, monitor_ref)` however the target
stops, at once if it is already gone.

Supervisors (`start`, `start_dynamic`) start children from specs (`child`), watch them,
and restart them by their restart type and the strategy (`one_for_one`, `one_for_all`,
`rest_for_one`), within a restart intensity; they nest into trees. See
docs/supervision.md.

    sup = supervisor.start([
        supervisor.child("feed", lambda: open_feed(), restart="permanent"),
        supervisor.child("audit", AuditActor.start, restart="transient"),
    ], strategy="one_for_one", intensity=3, period=5000)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import pykka

from gluegun_actors._connection.destination import caller, destination
from gluegun_actors._runtime.deathwatch import NOPROC, NORMAL
from gluegun_actors._supervision.monitor import MonitorRef, demonitor, monitor
from gluegun_actors._supervision.spec import Backoff, ChildSpec, make_child
from gluegun_actors._supervision.supervisor import (
    INTENSITY,
    KILLED,
    Call,
    ChildCount,
    ChildInfo,
    Supervisor,
    SupervisorActor,
)
from gluegun_actors._timeouts import Infinity, Timeout, timeout_seconds
from gluegun_actors.errors import InvalidArgument, InvalidOptions, SupervisorError
from gluegun_actors.mailbox import Mailbox

__all__ = [
    "INTENSITY",
    "KILLED",
    "NOPROC",
    "NORMAL",
    "Backoff",
    "ChildCount",
    "ChildInfo",
    "ChildSpec",
    "MonitorRef",
    "Supervisor",
    "child",
    "count_children",
    "delete_child",
    "demonitor",
    "monitor",
    "restart_child",
    "start",
    "start_child",
    "start_dynamic",
    "stop",
    "terminate_child",
    "which_children",
]

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
AUTO_SHUTDOWNS = ("never", "any_significant", "all_significant")
_CALL_TIMEOUT = 60.0
"""Seconds a call to a supervisor may take (stopping children waits for them)."""


def child(
    id: Hashable,
    start: Callable[..., Any],
    *,
    restart: str = "permanent",
    shutdown: object = None,
    type: str = "worker",
    significant: bool = False,
    backoff: tuple[int, int] | Backoff | None = None,
) -> ChildSpec:
    """A child spec: `start()` returns a started `ActorRef`, `Connection` or `Supervisor`.

    `restart`: permanent (always restarted), transient (after an abnormal exit only) or
    temporary (never). `shutdown`: ms to stop gracefully before the stop is forced
    (`"brutal_kill"` or 0: at once; `Infinity`: wait); by default 5000 for a worker and
    `Infinity` for a supervisor, as in OTP. `backoff`: `(min_ms, max_ms)` between
    restarts of a child that keeps crashing.

    Raises:
        InvalidOptions: an unhashable id, a `start` that is not callable, an unknown
            `restart` or `type`, a significant permanent child, a bad backoff.

    Example:
        ```python
        feed = supervisor.child(
            "feed",
            lambda: connection.open("localhost", 8080, connection.options(owner=inbox)),
            restart="transient",
            backoff=(100, 5000),
        )
        ```
    """
    if shutdown is None:
        shutdown = Infinity if type == "supervisor" else 5000
    return make_child(
        id,
        start,
        restart=restart,
        shutdown=shutdown,
        type=type,
        significant=significant,
        backoff=backoff,
    )


def start(
    children: Sequence[ChildSpec],
    *,
    strategy: str = "one_for_one",
    intensity: int | None = 3,
    period: int = 5000,
    auto_shutdown: str = "never",
    owner: Mailbox | pykka.ActorRef[Any] | None = None,
) -> Supervisor:
    """Start a supervisor and its children, in order; return once they are all started.

    A child that will not start stops the ones started before it (in reverse order) and
    raises `ChildStartError`; nothing is left running. More than `intensity` restarts in
    `period` ms stops the supervisor with `INTENSITY` (None: never, for children that
    all have a backoff). The owner (by default the caller)
    gets `Down(supervisor, reason)` when it stops, and its death stops the supervisor.

    Raises:
        ChildStartError: a child would not start (`__cause__`: what its start raised).
        InvalidArgument: a child that is not a `ChildSpec`, an owner of the wrong type.
        InvalidOptions: duplicate ids, an unknown strategy or `auto_shutdown`, a bad
            intensity or period (ms).

    Example:
        ```python
        sup = supervisor.start(
            [supervisor.child("feed", open_feed), supervisor.child("audit", Audit.start)],
            strategy="one_for_all", intensity=3, period=5000,
        )
        ```
    """
    specs = list(children)
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise InvalidArgument(f"children must be made by supervisor.child(), got {spec!r}")
    ids = [spec.id for spec in specs]
    if len(set(ids)) != len(ids):
        raise InvalidOptions(f"child ids must be unique, got {ids!r}")
    if strategy not in STRATEGIES:
        raise InvalidOptions(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if auto_shutdown not in AUTO_SHUTDOWNS:
        raise InvalidOptions(
            f"auto_shutdown must be one of {', '.join(AUTO_SHUTDOWNS)}, got {auto_shutdown!r}"
        )
    return _launch(
        specs,
        strategy=strategy,
        intensity=intensity,
        period=period,
        auto_shutdown=auto_shutdown,
        owner=owner,
    )


def start_dynamic(
    spec: ChildSpec,
    *,
    intensity: int | None = 3,
    period: int = 5000,
    max_children: int | None = None,
    owner: Mailbox | pykka.ActorRef[Any] | None = None,
) -> Supervisor:
    """A supervisor of many children of one spec, started on demand with `start_child(sup,
    *args)` (OTP's simple_one_for_one, Elixir's DynamicSupervisor): one_for_one; a child
    that exits for good is forgotten; stopping it stops its children all at once.
    `intensity=None` never gives up: give the spec a `backoff` then, so that a child
    that cannot start is retried at a pace, not in a loop.

    Raises:
        InvalidArgument: `spec` is not a `ChildSpec`.
        InvalidOptions: a bad `max_children`, intensity or period; `intensity=None`
            with a spec without backoff.

    Example:
        ```python
        spec = supervisor.child("conn", lambda host, port: connection.open(host, port),
                                restart="transient", backoff=(500, 30_000))
        pool = supervisor.start_dynamic(spec, intensity=None, max_children=1000)
        conn = supervisor.start_child(pool, "127.0.0.1", 8080)
        ```
    """
    if not isinstance(spec, ChildSpec):
        raise InvalidArgument(f"the template must be made by supervisor.child(), got {spec!r}")
    if max_children is not None and (not isinstance(max_children, int) or max_children < 1):
        raise InvalidOptions(f"max_children must be a positive int or None, got {max_children!r}")
    return _launch(
        [],
        strategy="one_for_one",
        intensity=intensity,
        period=period,
        auto_shutdown="never",
        owner=owner,
        template=spec,
        max_children=max_children,
    )


def _launch(specs: list[ChildSpec], **options: Any) -> Supervisor:
    intensity, period = options["intensity"], options["period"]
    template = options.get("template")
    if intensity is None and any(s.backoff is None for s in [*specs, *filter(None, [template])]):
        raise InvalidOptions(
            "intensity=None (never give up) needs every child spec to have a backoff"
        )
    if intensity is not None and (
        isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0
    ):
        raise InvalidOptions(f"intensity must be a non-negative int or None, got {intensity!r}")
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise InvalidOptions(f"period must be a positive int (ms), got {period!r}")
    owner = options.pop("owner")
    if owner is None:
        owner = caller()
    elif not isinstance(owner, Mailbox | pykka.ActorRef):
        raise InvalidArgument(f"owner must be a Mailbox or a pykka.ActorRef, got {owner!r}")
    ref = SupervisorActor.start(specs, owner=destination(owner), **options)
    sup = Supervisor(ref, dynamic=options.get("template") is not None)
    try:
        ref.ask(Call("init", (sup,)), timeout=_CALL_TIMEOUT)
    except BaseException:
        ref.actor_stopped.wait(_CALL_TIMEOUT)
        raise
    return sup


def start_child(sup: Supervisor, *spec_or_args: Any, id: Hashable = None) -> Any:
    """Start a child: `start_child(sup, spec)` for a supervisor, `start_child(sup, *args)`
    (with an optional `id`) for a dynamic one. Returns the started child.

    Raises:
        SupervisorError: a duplicate id, `max_children` reached, a stopped supervisor.
        ChildStartError: the child would not start (`__cause__`: what its start raised).
        InvalidArgument: a static supervisor given something other than one spec.

    Example:
        ```python
        supervisor.start_child(sup, supervisor.child("metrics", Metrics.start))
        conn = supervisor.start_child(pool, "127.0.0.1", 8080, id="local")  # dynamic
        ```
    """
    _check(sup)
    if sup.dynamic:
        return _call(sup, "start_child", spec_or_args, id)
    if len(spec_or_args) != 1 or not isinstance(spec_or_args[0], ChildSpec):
        raise InvalidArgument("start_child(sup, spec) takes one spec made by supervisor.child()")
    return _call(sup, "start_child", spec_or_args[0], None)


def terminate_child(sup: Supervisor, id: object) -> None:
    """Stop a child (by id, or by its current ref) as the strategy would; it is not
    restarted. A static supervisor keeps its spec (see `restart_child`, `delete_child`).

    Raises:
        SupervisorError: an unknown id, or the supervisor has stopped.

    Example:
        ```python
        supervisor.terminate_child(sup, "audit")
        ```
    """
    _call(_check(sup), "terminate_child", id)


def restart_child(sup: Supervisor, id: Hashable) -> Any:
    """Start again a child that was terminated; returns it.

    Raises:
        SupervisorError: an unknown id, a child that is running, a stopped supervisor.
        ChildStartError: the child would not start.

    Example:
        ```python
        supervisor.terminate_child(sup, "audit")
        audit = supervisor.restart_child(sup, "audit")
        ```
    """
    return _call(_check(sup), "restart_child", id)


def delete_child(sup: Supervisor, id: Hashable) -> None:
    """Forget the spec of a child that is not running.

    Raises:
        SupervisorError: an unknown id, a child that is running, a stopped supervisor.

    Example:
        ```python
        supervisor.terminate_child(sup, "audit")
        supervisor.delete_child(sup, "audit")
        ```
    """
    _call(_check(sup), "delete_child", id)


def which_children(sup: Supervisor) -> list[ChildInfo]:
    """Every child, in start order: `.id`, the current `.ref` (None while not running).

    Raises:
        SupervisorError: the supervisor has stopped.

    Example:
        ```python
        feed = next(c.ref for c in supervisor.which_children(sup) if c.id == "feed")
        ```
    """
    result: list[ChildInfo] = _call(_check(sup), "which_children")
    return result


def count_children(sup: Supervisor) -> ChildCount:
    """How many specs, running children, supervisors and workers.

    Raises:
        SupervisorError: the supervisor has stopped.

    Example:
        ```python
        counts = supervisor.count_children(sup)
        print(counts.active, "of", counts.specs, "running")
        ```
    """
    result: ChildCount = _call(_check(sup), "count_children")
    return result


def stop(sup: Supervisor, timeout: Timeout = Infinity) -> None:
    """Stop every child in reverse start order, then the supervisor; return once it has
    stopped (or `timeout` ms passed). Stopping a stopped supervisor does nothing.

    Each child gets its spec's `shutdown` time (ms) to stop gracefully before it is
    forced. The owner gets `Down(sup, "normal")`.

    Raises:
        InvalidArgument: `sup` is not a `Supervisor`.
        InvalidTimeout: `timeout` is a `float`.

    Example:
        ```python
        supervisor.stop(sup, 30_000)
        ```
    """
    _check(sup)
    seconds = timeout_seconds(timeout)
    try:
        sup.actor_ref.ask(Call("stop", (NORMAL,)), block=False)
    except pykka.ActorDeadError:
        return
    sup.actor_ref.actor_stopped.wait(seconds)


def _check(sup: object) -> Supervisor:
    if not isinstance(sup, Supervisor):
        raise InvalidArgument(f"expected a Supervisor (from supervisor.start), got {sup!r}")
    return sup


def _call(sup: Supervisor, name: str, *args: Any) -> Any:
    try:
        return sup.actor_ref.ask(Call(name, args), timeout=_CALL_TIMEOUT)
    except pykka.ActorDeadError:
        raise SupervisorError(f"{sup!r} has stopped") from None

"""Child specifications (OTP's child_spec): what a supervisor starts, and how it treats
the child's exits. Each field is checked where the spec is built (`child()`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Literal

from gluegun_actors._options import milliseconds
from gluegun_actors.errors import InvalidOptions

__all__ = ["RESTARTS", "Backoff", "ChildSpec", "Restart", "make_child"]

Restart = Literal["permanent", "transient", "temporary"]
RESTARTS: Final = ("permanent", "transient", "temporary")
ChildType = Literal["worker", "supervisor"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart delays for a child that keeps crashing (Akka's backoff supervisor): the
    first restart waits `min_ms`, each next one twice as long up to `max_ms`, spread by
    `jitter` either way; a child that stayed up `max_ms` starts over from `min_ms`."""

    min_ms: int
    max_ms: int
    jitter: float = 0.2

    def delay(self, restarts: int) -> int:
        """The delay before restart number `restarts` (0-based) in a row."""
        base: int = min(self.min_ms * (2 ** min(restarts, 30)), self.max_ms)
        if self.jitter:
            base = int(base * (1.0 + random.uniform(-self.jitter, self.jitter)))
        return max(0, base)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child: how to start it, whether to restart it, how long to let it stop."""

    id: Hashable
    start: Callable[..., Any]
    """Returns a started Pykka `ActorRef`, a `Connection` or a `Supervisor`."""
    restart: Restart = "permanent"
    """permanent: always restarted; transient: restarted after an abnormal exit only;
    temporary: never restarted (and forgotten once it exits)."""
    shutdown: int | None = 5000
    """ms to stop gracefully before the stop is forced; 0 forces at once (brutal_kill);
    None waits forever (OTP's infinity, the usual choice for a supervisor child)."""
    type: ChildType = "worker"
    significant: bool = False
    """Its exit may stop the supervisor (see `auto_shutdown`); transient or temporary only."""
    backoff: Backoff | None = None


def make_child(
    id: Hashable,
    start: Callable[..., Any],
    *,
    restart: str = "permanent",
    shutdown: object = 5000,
    type: str = "worker",
    significant: bool = False,
    backoff: tuple[int, int] | Backoff | None = None,
) -> ChildSpec:
    """A `ChildSpec`, every field checked (`InvalidOptions` says which)."""
    try:
        hash(id)
    except TypeError:
        raise InvalidOptions(f"a child id must be hashable, got {id!r}") from None
    if not callable(start):
        raise InvalidOptions(f"start must be callable, got {start!r}")
    if restart not in RESTARTS:
        raise InvalidOptions(f"restart must be one of {', '.join(RESTARTS)}, got {restart!r}")
    if type not in ("worker", "supervisor"):
        raise InvalidOptions(f"type must be 'worker' or 'supervisor', got {type!r}")
    if not isinstance(significant, bool):
        raise InvalidOptions(f"significant must be a bool, got {significant!r}")
    if significant and restart == "permanent":
        raise InvalidOptions("a significant child must be transient or temporary (as in OTP)")
    return ChildSpec(
        id=id,
        start=start,
        restart=restart,  # type: ignore[arg-type]
        shutdown=_shutdown(shutdown),
        type=type,  # type: ignore[arg-type]
        significant=significant,
        backoff=_backoff(backoff),
    )


def _shutdown(value: object) -> int | None:
    if value == "brutal_kill":
        return 0
    return milliseconds("shutdown", value, optional=True)


def _backoff(value: object) -> Backoff | None:
    if value is None or isinstance(value, Backoff):
        return value
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 0 <= value[0] <= value[1]
    ):
        return Backoff(value[0], value[1])
    raise InvalidOptions(f"backoff must be (min_ms, max_ms) with min <= max, got {value!r}")

"""Pooled actors: many Pykka actors on a few worker threads, Erlang-scheduler style.

Theory of operation
-------------------
A `pykka.ThreadingActor` parks one thread on its inbox, so ten thousand idle
connections cost ten thousand threads (stacks, scheduler work, ~34 KiB RSS each). A
`PooledActor` has no thread. Its inbox is a deque plus a small state machine under a
lock; a `Scheduler` owns a run queue of inboxes and a few worker threads.

A `tell` appends the envelope and, if the inbox was idle, marks it scheduled and puts
it on the run queue: one lock, one append, sometimes one queue put. A worker takes an
inbox off the run queue and handles up to `batch` messages in order. If more remain it
puts the inbox back at the end of the run queue, so a flooded actor yields to the
others after each batch; otherwise the inbox goes idle. An inbox is on the run queue
at most once and only the worker that took it touches the actor, so one actor is never
run by two workers at once and its messages are handled in the order they were told.

Inbox states (`_State`); a put moves IDLE to SCHEDULED and queues the inbox, any other
live state just appends::

    NEW --start--> STARTING --on_start done--> SCHEDULED <--put-- IDLE
                                                   |  ^            ^
                                                   |  +-- batch ---+ (more left: requeue)
                                                   +--- inbox empty ---> IDLE
    STARTING / SCHEDULED --actor stopped or failed--> DEAD (puts refused)

The life cycle is Pykka's: `on_start` runs on a worker before any message; an exception
in a told message's handler calls `on_failure` and stops the actor (`on_stop` is not
called); an exception in an asked message's handler goes to the caller's future;
`stop()` handles what was told before it, runs `on_stop` and unregisters. The log records
of that life cycle are Pykka's, in its words and on its ``pykka`` logger (an exception
returned to an asker at INFO, a `BaseException` stopping all actors at DEBUG); the pool's
own records go to ``gluegun_actors.pool``. Messages left
in the inbox of a stopped actor are answered with `ActorDeadError`. Once the inbox is
DEAD, `tell` raises `ActorDeadError` and `ask` returns a future holding it, even when the
sender passed Pykka's liveness check just before the actor died: no ask waits forever.

Blocking. A handler runs on a worker, so a handler that blocks (a socket call, a
`future.get()`, `ActorRef.stop(block=True)`) holds that worker and every actor queued
behind it waits. When all workers block on replies from actors that are queued on the
same scheduler, the pool deadlocks. Handlers should reply with messages, not wait; an
actor that must block belongs on its own `Scheduler` or stays a `ThreadingActor`.

Direct handoff. When a thread that is not running an actor tells an idle actor of a
scheduler made with `handoff=True` (the default), that thread runs the actor's turn
itself instead of waking a worker, as Erlang's scheduler runs the process it just woke:
a request from a caller is written to the socket without a thread switch, and the
reactor thread parses what it read without one either. It is still the actor's turn:
the inbox is marked scheduled first, so no other thread runs the actor meanwhile, and
anything left after one batch goes to the workers. A thread already inside an actor's
turn (a worker, or a handoff in progress) only queues, so turns never nest. Only tells
hand off: an ask (a message with a reply future, `stop()` included) is always queued for a
worker, so the asker waits no longer than its timeout and `ask(block=False)` returns at
once however long the handler takes, as Pykka promises. A `KeyboardInterrupt` that lands
in a handed-off turn stops the actors as any `BaseException` from a handler does, then
goes on up to the caller whose thread it interrupted. Two explicit variants of `tell`
choose for the caller: `tell_queued` always leaves the turn to the
workers (for code that must not run a turn where it stands, such as a callback from a
thread that is being torn down), and `tell_holding` hands the turn the thread's
`HeldWakeups` (the reactor's), which the actor passes on to the mailboxes it delivers to.

Workers start with the first live actor of a scheduler and are told to exit when its
last actor has stopped (a reference count, like `_io.acquire_reactor`), so nothing
lingers; `Scheduler.join` waits for them. Workers are daemon threads named
``gluegun-worker-N``; like a daemon `ThreadingActor`, an actor alive at interpreter exit
gets no `on_stop`.
"""

from __future__ import annotations

import enum
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final

import pykka
from pykka import ActorDeadError, ActorRegistry, messages
from pykka._envelope import Envelope

from gluegun_actors._io.wakeups import HeldWakeups
from gluegun_actors._runtime.deathwatch import NORMAL, exited, record

if TYPE_CHECKING:
    from pykka._actor import ActorInbox

log = logging.getLogger("gluegun_actors.pool")
pykka_log = logging.getLogger("pykka")
"""Pykka's logger, for the records Pykka's own actor loop would write."""

DEFAULT_WORKERS: Final = min(4, os.cpu_count() or 1)
"""Worker threads of a scheduler: enough to overlap a few blocking handlers, no more."""

DEFAULT_BATCH: Final = 64
"""Messages one actor handles before it yields its worker to the next queued actor."""

DEFAULT_NAME: Final = "gluegun-worker"
"""Worker threads are named ``{name}-{index}``."""


class Scheduler:
    """A run queue of actor inboxes and `workers` threads that drain it.

    Threads start when the first actor of the scheduler starts and are told to exit when
    the last one has stopped; a later actor starts a fresh set. One scheduler may serve
    any number of `PooledActor` classes.
    """

    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        *,
        batch: int = DEFAULT_BATCH,
        name: str = DEFAULT_NAME,
        handoff: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.workers: Final = workers
        self.batch: Final = batch
        self.name: Final = name
        self.handoff: Final = handoff
        # Guarded by `_changed` (actors start and stop on any thread):
        self._changed = threading.Condition(threading.Lock())
        self._actors = 0  # live actors
        self._crew: _Crew | None = None  # the running threads while _actors > 0
        self._retired: list[threading.Thread] = []  # told to exit, maybe not gone yet

    def __repr__(self) -> str:
        return (
            f"<Scheduler {self.name!r} workers={self.workers} batch={self.batch} "
            f"actors={self._actors}>"
        )

    @property
    def actor_count(self) -> int:
        """Started actors of this scheduler that have not finished stopping."""
        with self._changed:
            return self._actors

    @property
    def running(self) -> bool:
        """Whether worker threads are up (true exactly while `actor_count` > 0)."""
        with self._changed:
            return self._crew is not None

    def join(self, timeout: float | None = None) -> bool:
        """Wait until no actor is alive and every worker thread has exited.

        Returns False if that did not happen within `timeout` seconds. Must not be called
        from one of this scheduler's workers (it would wait for itself).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        with self._changed:
            if (self._crew is not None and me in self._crew.threads) or me in self._retired:
                raise RuntimeError(f"{self!r}.join() called from its own worker")
            while self._actors:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            retired = list(self._retired)
        for thread in retired:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        with self._changed:
            self._retired = [t for t in self._retired if t.is_alive()]
        return True

    def _acquire(self) -> Callable[[_Inbox], None]:
        """Count one more live actor; returns the run queue's put."""
        with self._changed:
            crew = self._crew
            if crew is None:
                crew = self._crew = _Crew(self)
            self._actors += 1
            return crew.runnable.put

    def _wake(self, enqueue: Callable[[_Inbox], None]) -> _Wake:
        """How a put wakes an idle inbox: a handoff to the telling thread, or the run queue."""
        if not self.handoff:
            return lambda inbox, held: enqueue(inbox)
        batch = self.batch

        def wake(inbox: _Inbox, held: HeldWakeups | None) -> None:
            if _turn.active:
                enqueue(inbox)
                return
            _turn.active = True
            try:
                inbox.run(batch, held)
            except KeyboardInterrupt:  # the caller's, not the actor's: it goes on up
                inbox.abort()
                raise
            except BaseException:
                log.exception("a handed-off turn of %s failed; stopping that actor", inbox)
                inbox.abort()
            finally:
                _turn.active = False

        return wake

    def _release(self) -> None:
        """Count one actor less; the last one tells the workers to exit."""
        with self._changed:
            if self._actors <= 0:
                raise RuntimeError(f"{self!r} released more actors than it started")
            self._actors -= 1
            if self._actors:
                return
            crew, self._crew = self._crew, None
            assert crew is not None
            for _ in crew.threads:
                crew.runnable.put(None)
            self._retired = [t for t in self._retired if t.is_alive()]
            self._retired.extend(crew.threads)
            self._changed.notify_all()


class _Crew:
    """One generation of worker threads and their run queue (None tells a worker to exit)."""

    __slots__ = ("runnable", "threads")

    def __init__(self, scheduler: Scheduler) -> None:
        self.runnable: queue.SimpleQueue[_Inbox | None] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(
                target=_work,
                args=(self.runnable, scheduler.batch),
                name=f"{scheduler.name}-{index}",
                daemon=True,
            )
            for index in range(scheduler.workers)
        ]
        for thread in self.threads:
            thread.start()


class _Turn(threading.local):
    """Whether this thread is inside an actor's turn (then a put never hands off), and
    whose turn it is running.

    The pool's own bookkeeping: set only here, by workers and handoffs.
    """

    active = False
    actor: PooledActor | None = None


_turn = _Turn()


def running_actor() -> PooledActor | None:
    """The pooled actor whose turn the calling thread is running, if any."""
    return _turn.actor


def in_turn() -> bool:
    """Whether the calling thread is a worker or inside a handed-off turn: a tell from it
    only queues."""
    return _turn.active


_Wake = Callable[["_Inbox", HeldWakeups | None], None]
"""How a put wakes an idle inbox: `(inbox, held)`."""


def tell_queued(ref: pykka.ActorRef[Any], message: Any) -> None:
    """`ref.tell(message)`, leaving the turn to the workers even when the actor is idle.

    For a pooled actor; raises `ActorDeadError` as `tell` does.
    """
    inbox = ref.actor_inbox
    assert isinstance(inbox, _Inbox)
    inbox.put(Envelope(message), queued=True)


def tell_holding(ref: pykka.ActorRef[Any], message: Any, held: HeldWakeups) -> None:
    """`ref.tell(message)`; a turn this runs by handoff holds its wakeups in `held`.

    `held` belongs to the calling thread, which releases it before it blocks.
    """
    inbox = ref.actor_inbox
    assert isinstance(inbox, _Inbox)
    inbox.put(Envelope(message), held=held)


def _work(runnable: queue.SimpleQueue[_Inbox | None], batch: int) -> None:
    """A worker: run queued inboxes until told to exit. Never dies of an actor's fault."""
    _turn.active = True
    get = runnable.get
    while (inbox := get()) is not None:
        try:
            inbox.run(batch)
        except BaseException:  # the worker serves every other actor too
            log.exception("worker crashed while running %s; stopping that actor", inbox)
            inbox.abort()


_default: Scheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    """The process's shared scheduler (`DEFAULT_WORKERS` workers), made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Scheduler()
        return _default


class _State(enum.Enum):
    NEW = "new"  # created, not started: puts wait for start
    STARTING = "starting"  # queued for on_start
    IDLE = "idle"  # nothing to do, not on the run queue
    SCHEDULED = "scheduled"  # on the run queue or being run
    DEAD = "dead"  # stopped: puts are refused


# Module aliases: the put fast path compares identities without an attribute lookup.
_NEW: Final = _State.NEW
_STARTING: Final = _State.STARTING
_IDLE: Final = _State.IDLE
_SCHEDULED: Final = _State.SCHEDULED
_DEAD: Final = _State.DEAD


class _Inbox:
    """A pooled actor's inbox and the unit the scheduler runs.

    Producers append under the lock. The one worker running the inbox pops without it:
    `deque.append` and `popleft` are atomic, and a producer only moves IDLE to SCHEDULED,
    so the lock is needed only where the worker concludes "empty, go idle".
    """

    __slots__ = (
        "_actor",
        "_enqueue",
        "_label",
        "_lock",
        "_messages",
        "_release",
        "_state",
        "_wake",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Appended by any thread; popped by the thread running the turn (atomic deque ops):
        self._messages: deque[Envelope[Any]] = deque()
        # Guarded by `_lock` (read unlocked only by the running turn, which owns SCHEDULED):
        self._state = _NEW
        # Set by `start` under `_lock`, before any turn; cleared by the turn that finishes:
        self._actor: PooledActor | None = None
        self._enqueue: Callable[[_Inbox], None] | None = None
        self._wake: _Wake | None = None
        self._release: Callable[[], None] | None = None
        self._label = "an unstarted pooled actor"

    def __repr__(self) -> str:
        return f"<inbox of {self._label} {self._state.value} queued={len(self._messages)}>"

    # -- Pykka's ActorInbox protocol ----------------------------------------------------

    def put(
        self,
        envelope: Envelope[Any],
        /,
        held: HeldWakeups | None = None,
        *,
        queued: bool = False,
    ) -> None:
        """Append; schedule the actor if it was idle. Refused once the actor is dead.

        `queued` leaves the turn to the workers, as does an ask (`envelope.reply_to`): the
        asker's timeout must hold. `held` is handed to a turn run here.
        """
        with self._lock:
            state = self._state
            if state is not _DEAD:
                self._messages.append(envelope)
                if state is not _IDLE:
                    return
                self._state = _SCHEDULED
        if state is _DEAD:
            self._refuse(envelope)
            return
        if queued or envelope.reply_to is not None:
            enqueue = self._enqueue
            assert enqueue is not None
            enqueue(self)
            return
        wake = self._wake
        assert wake is not None
        wake(self, held)

    def get(self) -> Envelope[Any]:
        """Pop the oldest envelope without waiting (the scheduler, not a loop, drains us)."""
        try:
            return self._messages.popleft()
        except IndexError:
            raise queue.Empty from None

    def empty(self) -> bool:
        return not self._messages

    def __len__(self) -> int:
        return len(self._messages)

    # -- scheduling ---------------------------------------------------------------------

    def start(
        self,
        actor: PooledActor,
        enqueue: Callable[[_Inbox], None],
        release: Callable[[], None],
        wake: _Wake | None = None,
    ) -> None:
        with self._lock:
            if self._state is not _NEW:
                raise RuntimeError(f"{actor} was already started")
            self._actor = actor
            self._enqueue = enqueue
            self._wake = wake or (lambda inbox, held: enqueue(inbox))
            self._release = release
            self._label = str(actor)
            self._state = _STARTING
        enqueue(self)

    def run(self, batch: int, held: HeldWakeups | None = None) -> None:
        """One turn: on_start if due, then up to `batch` messages; requeue or go idle.

        The actor sees `held` as its `held_wakeups` for the length of the turn.
        """
        actor = self._actor
        assert actor is not None
        actor.held_wakeups = held
        turn = _turn
        turn.actor = actor
        try:
            self._turn(actor, batch)
        finally:
            actor.held_wakeups = None
            turn.actor = None

    def _turn(self, actor: PooledActor, batch: int) -> None:
        stopped = actor.actor_stopped.is_set
        if self._state is _STARTING:
            actor._pool_start()
            with self._lock:
                self._state = _SCHEDULED
            if stopped():
                self._finish(actor)
                return
        messages = self._messages
        popleft = messages.popleft
        handle = actor._pool_handle
        for _ in range(batch):
            if not messages:
                with self._lock:
                    if not messages:
                        self._state = _IDLE
                        return
            handle(popleft())
            if stopped():
                self._finish(actor)
                return
        if not messages:
            with self._lock:
                if not messages:
                    self._state = _IDLE
                    return
        enqueue = self._enqueue
        assert enqueue is not None
        enqueue(self)

    def abort(self) -> None:
        """After a worker caught an error escaping `run`: stop the actor, free the rest."""
        actor = self._actor
        if actor is None:
            return
        ActorRegistry.unregister(actor.actor_ref)
        actor.actor_stopped.set()
        self._finish(actor)

    def _finish(self, actor: PooledActor) -> None:
        """The actor has stopped: refuse new puts, answer what is left, release the pool."""
        with self._lock:
            if self._state is _DEAD:
                return
            self._state = _DEAD
            leftovers = list(self._messages)
            self._messages.clear()
        for envelope in leftovers:
            reply_to = envelope.reply_to
            if reply_to is None:
                continue
            if isinstance(envelope.message, messages._ActorStop):
                reply_to.set(None)  # it was stopping anyway: stop() reports True
            else:
                reply_to.set_exception(_dead(f"{actor.actor_ref} stopped before handling it"))
        self._actor = None
        exited(actor)  # its death watch, if any, fires now: the actor is fully stopped
        release = self._release
        assert release is not None
        release()

    def _refuse(self, envelope: Envelope[Any]) -> None:
        error = _dead(f"{self._label} not found")
        if envelope.reply_to is None:
            raise error[1]
        envelope.reply_to.set_exception(error)


def _dead(text: str) -> tuple[type[ActorDeadError], ActorDeadError, None]:
    return (ActorDeadError, ActorDeadError(text), None)


class PooledActor(pykka.Actor):
    """A Pykka actor that runs on a `Scheduler`'s workers instead of its own thread.

    Used like `pykka.ThreadingActor`: `start()`, `tell`, `ask`, proxies, `stop()`, the
    registry and the `on_*` hooks behave the same, and futures are `ThreadingFuture`s.
    Handlers must not block for long (see the module docstring).
    """

    scheduler: ClassVar[Scheduler | None] = None
    """The scheduler new actors of this class run on; None means `default_scheduler()`.

    Read when the actor starts; changing it later does not move running actors.
    """

    _records_its_exit: ClassVar[bool] = True
    """Its death watch needs no wrapping: `_handle_failure` and `_stop` record why it
    stops (see `_runtime.deathwatch`)."""

    held_wakeups: HeldWakeups | None = None
    """During a turn run by `tell_holding`'s handoff: the wakeups the running thread holds
    back (pass them to `Mailbox` deliveries); None otherwise. Set by the pool, per turn."""

    @staticmethod
    def _create_actor_inbox() -> ActorInbox:
        return _Inbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    def _start_actor_loop(self) -> None:
        scheduler = type(self).scheduler
        if scheduler is None:
            scheduler = default_scheduler()
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        enqueue = scheduler._acquire()
        try:
            inbox.start(self, enqueue, scheduler._release, scheduler._wake(enqueue))
        except BaseException:
            scheduler._release()
            ActorRegistry.unregister(self.actor_ref)
            raise

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        record(self, exception_value)
        super()._handle_failure(exception_type, exception_value, traceback)

    def _stop(self) -> None:
        record(self, NORMAL)  # unless a BaseException was recorded first (_pool_handle)
        super()._stop()

    def _pool_start(self) -> None:
        """Pykka's loop setup: on_start; a failure is logged and stops the actor."""
        try:
            self.on_start()
        except Exception:  # Pykka's contract: log and stop
            self._handle_failure(*sys.exc_info())

    def _pool_handle(self, envelope: Envelope[Any]) -> None:
        """One turn of Pykka's loop, with the same failure rules."""
        reply_to = envelope.reply_to
        try:
            response = self._handle_receive(envelope.message)
            if reply_to is not None:
                reply_to.set(response)
        except Exception:
            if reply_to is not None:
                pykka_log.info("Exception returned from %s to caller:", self, exc_info=True)
                reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:  # Pykka's contract: log and stop
                    self._handle_failure(*sys.exc_info())
        except BaseException as error:  # Pykka stops everything on these
            pykka_log.debug("%r in %s. Stopping all actors.", error, self)
            record(self, error)
            self._stop()
            ActorRegistry.stop_all(block=False)  # blocking here could wait on this worker
            if isinstance(error, KeyboardInterrupt):
                # Only a turn run by handoff in the main thread can see one: Ctrl-C belongs
                # to that thread's caller, which a ThreadingActor would never have hidden.
                raise


__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_NAME",
    "DEFAULT_WORKERS",
    "PooledActor",
    "Scheduler",
    "default_scheduler",
    "in_turn",
    "running_actor",
    "tell_holding",
    "tell_queued",
]

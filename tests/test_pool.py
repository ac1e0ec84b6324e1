"""PooledActor and Scheduler: Pykka's actor contract on a few shared worker threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import pykka
import pytest
from polling import wait_until

from gluegun_actors._io.wakeups import HeldWakeups
from gluegun_actors._runtime import pool as _pool
from gluegun_actors._runtime.pool import (
    DEFAULT_BATCH,
    DEFAULT_WORKERS,
    PooledActor,
    Scheduler,
    default_scheduler,
)

WAIT = 5.0  # seconds any single wait in these tests may take before it counts as a hang

A = TypeVar("A", bound=PooledActor)


def on(scheduler: Scheduler, actor_class: type[A]) -> type[A]:
    """`actor_class` bound to `scheduler` (a subclass, so tests do not share state)."""
    return type(actor_class.__name__, (actor_class,), {"scheduler": scheduler})


def worker_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{name}-")]


@pytest.fixture
def pool() -> Iterator[Scheduler]:
    """A two-worker scheduler; afterwards every actor on it is stopped and its threads gone."""
    scheduler = Scheduler(2, name="test-pool")
    yield scheduler
    for ref in pykka.ActorRegistry.get_by_class(PooledActor):
        if getattr(ref.actor_class, "scheduler", None) is scheduler:
            ref.stop(block=False)
    assert scheduler.join(timeout=WAIT), f"{scheduler!r} still has workers"


class Recorder(PooledActor):
    """Remembers what it saw, in order, and which thread ran it."""

    def __init__(self, expected: int = 0) -> None:
        super().__init__()
        self.seen: list[Any] = []
        self.events: list[str] = []
        self.threads: set[str] = set()
        self.expected = expected
        self.done = threading.Event()

    def on_start(self) -> None:
        self.events.append("start")
        self.threads.add(threading.current_thread().name)

    def on_stop(self) -> None:
        self.events.append("stop")

    def on_failure(self, *exc_info: Any) -> None:
        self.events.append(f"failure:{exc_info[1]}")

    def on_receive(self, message: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        match message:
            case ("raise", text):
                raise ValueError(text)
            case "stop yourself":
                self.stop()
            case "wait" | ("wait", _):
                self.seen.append(message)
                return list(self.seen)
        self.seen.append(message)
        if len(self.seen) == self.expected:
            self.done.set()
        return message


def actor_of(ref: pykka.ActorRef[A]) -> A:
    actor = ref._actor_weakref()
    assert actor is not None
    return actor


# -- the Pykka contract --------------------------------------------------------------------


def test_start_returns_a_ref_registered_in_the_actor_registry(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is ref
    assert ref in pykka.ActorRegistry.get_by_class(PooledActor)
    ref.stop()
    assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is None


def test_ask_returns_the_handler_result_through_a_threading_future(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    future = ref.ask("hello", block=False)
    assert isinstance(future, pykka.ThreadingFuture)
    assert future.get(timeout=WAIT) == "hello"
    assert ref.ask("again", timeout=WAIT) == "again"


def test_get_all_collects_answers_from_many_actors(pool: Scheduler) -> None:
    refs = [on(pool, Recorder).start() for _ in range(20)]
    futures = [ref.ask(i, block=False) for i, ref in enumerate(refs)]
    assert pykka.get_all(futures, timeout=WAIT) == list(range(20))


def test_proxy_calls_work(pool: Scheduler) -> None:
    class Counter(PooledActor):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def add(self, n: int) -> int:
            self.total += n
            return self.total

    proxy = on(pool, Counter).start().proxy()
    proxy.add(2)
    assert proxy.add(3).get(timeout=WAIT) == 5
    assert proxy.total.get(timeout=WAIT) == 5


def test_an_exception_in_an_asked_handler_goes_to_the_caller(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    with pytest.raises(ValueError, match="boom"):
        ref.ask(("raise", "boom"), timeout=WAIT)
    assert ref.is_alive()
    assert ref.ask("still here", timeout=WAIT) == "still here"
    assert actor_of(ref).events == ["start"]


def test_an_exception_in_a_told_handler_calls_on_failure_and_stops_the_actor(
    pool: Scheduler,
) -> None:
    ref = on(pool, Recorder).start()
    actor = actor_of(ref)
    ref.tell(("raise", "bad tell"))
    assert ref.actor_stopped.wait(WAIT)
    assert pool.join(timeout=WAIT)
    assert actor.events == ["start", "failure:bad tell"]
    assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is None


def test_on_start_runs_on_a_worker_before_any_message(pool: Scheduler) -> None:
    class TellsItselfEarly(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.actor_ref.tell("told in __init__")

    ref = on(pool, TellsItselfEarly).start()
    actor = actor_of(ref)
    assert ref.ask("wait", timeout=WAIT) == ["told in __init__", "wait"]
    assert actor.events == ["start"]
    assert actor.threads <= {"test-pool-0", "test-pool-1"}


def test_an_exception_in_on_start_stops_the_actor_without_on_stop_or_on_failure(
    pool: Scheduler,
) -> None:
    class FailsToStart(Recorder):
        def on_start(self) -> None:
            raise RuntimeError("no start")

    ref = on(pool, FailsToStart).start()
    actor = actor_of(ref)
    future = ref.ask("never handled", block=False)
    with pytest.raises(pykka.ActorDeadError):
        future.get(timeout=WAIT)
    assert not ref.is_alive()
    assert actor.events == []


def test_stop_handles_earlier_messages_then_on_stop_then_unregisters(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    actor = actor_of(ref)
    for i in range(100):
        ref.tell(i)
    assert ref.stop(timeout=WAIT) is True
    assert actor.seen == list(range(100))
    assert actor.events == ["start", "stop"]
    assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is None


def test_stop_without_blocking_returns_a_future_of_true(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    assert ref.stop(block=False).get(timeout=WAIT) is True


def test_stop_of_a_dead_actor_returns_false(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    ref.stop()
    assert ref.stop(timeout=WAIT) is False


def test_an_actor_can_stop_itself(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    actor = actor_of(ref)
    ref.tell("stop yourself")
    assert ref.actor_stopped.wait(WAIT)
    assert pool.join(timeout=WAIT)
    assert actor.events == ["start", "stop"]


def test_tell_after_stop_raises_actor_dead_error(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    ref.stop()
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("too late")


def test_ask_after_stop_raises_actor_dead_error(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    ref.stop()
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("too late", timeout=WAIT)


def test_an_ask_queued_behind_the_actors_death_fails_instead_of_hanging() -> None:
    scheduler = Scheduler(1, name="test-death")
    gate = threading.Event()
    blocker = on(scheduler, Blocker).start(gate)
    blocker.tell("block")  # holds the only worker
    ref = on(scheduler, Recorder).start()
    ref.tell(("raise", "dies"))
    queued = ref.ask("after the crash", block=False)  # the actor is alive: it is queued
    gate.set()
    with pytest.raises(pykka.ActorDeadError):
        queued.get(timeout=WAIT)
    blocker.stop()
    assert scheduler.join(timeout=WAIT)


def test_a_put_racing_the_actors_death_is_refused_not_lost(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    ref.stop()
    inbox = ref.actor_inbox  # past Pykka's liveness check, straight into the inbox
    future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    inbox.put(pykka._envelope.Envelope("late ask", reply_to=future))
    with pytest.raises(pykka.ActorDeadError):
        future.get(timeout=WAIT)
    with pytest.raises(pykka.ActorDeadError):
        inbox.put(pykka._envelope.Envelope("late tell"))


class Blocker(PooledActor):
    """Holds a worker until its gate opens."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def on_receive(self, message: Any) -> Any:
        assert self.gate.wait(WAIT)
        return message


# -- scheduling ----------------------------------------------------------------------------


def test_messages_from_several_threads_keep_each_senders_order(pool: Scheduler) -> None:
    senders, per_sender = 4, 2_000
    ref = on(pool, Recorder).start(senders * per_sender)
    actor = actor_of(ref)

    def send(sender: int) -> None:
        for seq in range(per_sender):
            ref.tell((sender, seq))

    threads = [threading.Thread(target=send, args=(s,)) for s in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert actor.done.wait(WAIT)
    for sender in range(senders):
        assert [seq for s, seq in actor.seen if s == sender] == list(range(per_sender))


def test_one_actor_is_never_run_by_two_workers_at_once() -> None:
    scheduler = Scheduler(4, batch=1, name="test-exclusive")

    class Exclusive(PooledActor):
        def __init__(self) -> None:
            super().__init__()
            self.inside = threading.Lock()
            self.overlaps = 0
            self.handled = 0

        def on_receive(self, message: Any) -> Any:
            if not self.inside.acquire(blocking=False):
                self.overlaps += 1
                return None
            try:
                time.sleep(0)  # give the other workers a chance to barge in
                self.handled += 1
            finally:
                self.inside.release()
            return self.handled

    ref = on(scheduler, Exclusive).start()
    actor = actor_of(ref)

    def send() -> None:
        for _ in range(1_000):
            ref.tell("work")

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert ref.ask("last", timeout=WAIT) == 4_001
    assert actor.overlaps == 0
    ref.stop()
    assert scheduler.join(timeout=WAIT)


def test_a_flooded_actor_yields_its_worker_after_one_batch() -> None:
    scheduler = Scheduler(1, batch=DEFAULT_BATCH, name="test-fair", handoff=False)
    order: list[str] = []
    gate = threading.Event()

    class Logs(PooledActor):
        def __init__(self, label: str) -> None:
            super().__init__()
            self.label = label

        def on_receive(self, message: Any) -> Any:
            if message == "gate":
                assert gate.wait(WAIT)
            order.append(self.label)
            return None

    flooded = on(scheduler, Logs).start("A")
    other = on(scheduler, Logs).start("B")
    flooded.tell("gate")  # the only worker waits inside A until B has its message
    for _ in range(10_000):
        flooded.tell("work")
    other.tell("work")
    gate.set()
    assert flooded.stop(timeout=WAIT)
    other.stop()
    assert order.index("B") == DEFAULT_BATCH  # right after A's first batch
    assert order.count("A") == 10_001
    assert scheduler.join(timeout=WAIT)


def test_a_blocking_handler_holds_only_its_own_worker(pool: Scheduler) -> None:
    gate = threading.Event()
    blocker = on(pool, Blocker).start(gate)
    blocker.tell("block")
    ref = on(pool, Recorder).start()
    assert ref.ask("served by the other worker", timeout=WAIT) == "served by the other worker"
    gate.set()


def test_five_thousand_actors_on_two_workers_all_handle_a_message(pool: Scheduler) -> None:
    count = 5_000
    threads_before = threading.active_count()
    handled = threading.Semaphore(0)

    class Acks(PooledActor):
        def on_receive(self, message: Any) -> Any:
            handled.release()
            return None

    actor_class = on(pool, Acks)
    refs = [actor_class.start() for _ in range(count)]
    started = time.monotonic()
    for ref in refs:
        ref.tell("ping")
    for _ in range(count):
        assert handled.acquire(timeout=WAIT)
    assert time.monotonic() - started < WAIT
    assert threading.active_count() <= threads_before + pool.workers
    for future in [ref.stop(block=False) for ref in refs]:
        assert future.get(timeout=WAIT)


# -- the worker threads --------------------------------------------------------------------


def test_workers_are_daemon_threads_named_after_the_scheduler(pool: Scheduler) -> None:
    ref = on(pool, Recorder).start()
    ref.ask("wake", timeout=WAIT)
    workers = worker_threads("test-pool")
    assert sorted(t.name for t in workers) == ["test-pool-0", "test-pool-1"]
    assert all(t.daemon for t in workers)
    assert actor_of(ref).threads <= {"test-pool-0", "test-pool-1"}


def test_workers_start_with_the_first_actor_and_exit_after_the_last(pool: Scheduler) -> None:
    assert not pool.running and not worker_threads("test-pool")
    refs = [on(pool, Recorder).start() for _ in range(3)]
    assert pool.running and pool.actor_count == 3
    for ref in refs:
        ref.stop()
    assert pool.join(timeout=WAIT)
    assert not pool.running and pool.actor_count == 0
    assert not worker_threads("test-pool")


def test_a_scheduler_restarts_workers_for_actors_started_after_it_went_idle(
    pool: Scheduler,
) -> None:
    on(pool, Recorder).start().stop()
    assert pool.join(timeout=WAIT)
    ref = on(pool, Recorder).start()
    assert ref.ask("again", timeout=WAIT) == "again"
    ref.stop()
    assert pool.join(timeout=WAIT)
    assert not worker_threads("test-pool")


def test_join_times_out_while_actors_live(pool: Scheduler) -> None:
    on(pool, Recorder).start()
    assert pool.join(timeout=0.01) is False


def test_actors_without_a_scheduler_use_the_default_one() -> None:
    ref = Recorder.start()
    assert ref.ask("hi", timeout=WAIT) == "hi"
    scheduler = default_scheduler()
    assert scheduler is default_scheduler()
    assert scheduler.workers == DEFAULT_WORKERS
    assert actor_of(ref).threads <= {f"gluegun-worker-{i}" for i in range(DEFAULT_WORKERS)}
    ref.stop()
    assert scheduler.join(timeout=WAIT)
    assert not worker_threads("gluegun-worker")


@pytest.mark.parametrize(("workers", "batch"), [(0, 1), (1, 0)])
def test_a_scheduler_refuses_limits_below_one(workers: int, batch: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(workers, batch=batch)


class Threads(PooledActor):
    """Records which thread ran each message; `relay` tells another actor from inside a turn."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: dict[str, str] = {}

    def on_receive(self, message: Any) -> Any:
        label = message[0] if isinstance(message, tuple) else message
        self.threads[label] = threading.current_thread().name
        if label == "relay":
            message[1].tell("relayed")
        return dict(self.threads)


def _idle(ref: pykka.ActorRef[Any]) -> bool:
    """Wait until the actor's inbox is idle (its last turn is over)."""
    inbox = ref.actor_inbox
    return wait_until(lambda: inbox._state is _pool._State.IDLE, WAIT)  # type: ignore[attr-defined]


def test_a_tell_to_an_idle_actor_runs_in_the_telling_thread(pool: Scheduler) -> None:
    ref = on(pool, Threads).start()
    ref.ask("warm up", timeout=WAIT)
    assert _idle(ref)
    ref.tell("direct")
    assert ref.ask("check", timeout=WAIT)["direct"] == threading.current_thread().name


def test_a_tell_from_inside_a_turn_is_queued_for_a_worker(pool: Scheduler) -> None:
    first, second = on(pool, Threads).start(), on(pool, Threads).start()
    first.ask("warm up", timeout=WAIT)
    second.ask("warm up", timeout=WAIT)
    assert _idle(first)
    first.tell(("relay", second))
    assert first.ask("check", timeout=WAIT)["relay"] == threading.current_thread().name
    assert second.ask("check", timeout=WAIT)["relayed"].startswith("test-pool-")


def test_tell_queued_runs_the_turn_on_a_worker_even_when_idle(pool: Scheduler) -> None:
    ref = on(pool, Threads).start()
    ref.ask("warm up", timeout=WAIT)
    assert _idle(ref)
    _pool.tell_queued(ref, "queued")
    assert ref.ask("check", timeout=WAIT)["queued"].startswith("test-pool-")
    assert _idle(ref)
    ref.tell("direct again")  # a plain tell hands off again
    assert ref.ask("check", timeout=WAIT)["direct again"] == threading.current_thread().name


def test_tell_holding_hands_the_turn_the_held_wakeups(pool: Scheduler) -> None:
    held = HeldWakeups()
    seen: list[object] = []

    class Probe(PooledActor):
        def on_receive(self, message: Any) -> Any:
            seen.append(self.held_wakeups)
            return None

    probe = on(pool, Probe).start()
    probe.ask("warm up", timeout=WAIT)
    assert _idle(probe)
    _pool.tell_holding(probe, "run here", held)
    assert seen[-1] is held  # the handed-off turn saw the caller's held wakeups
    assert probe.ask("after", timeout=WAIT) is None and seen[-1] is None  # only that turn
    probe.stop()


def test_without_handoff_every_turn_runs_on_a_worker() -> None:
    scheduler = Scheduler(1, name="test-nohandoff", handoff=False)
    ref = on(scheduler, Threads).start()
    assert _idle(ref)
    assert ref.ask("check", timeout=WAIT)["check"] == "test-nohandoff-0"
    ref.stop()
    assert scheduler.join(timeout=WAIT)


# -- found by Pykka's own tests (tests/pykka_contract/) -------------------------------------


def test_an_ask_to_an_idle_actor_is_queued_for_a_worker_so_its_timeout_holds(
    pool: Scheduler,
) -> None:
    # Pykka's test_ask_can_timeout_if_blocked_too_long: a handed-off ask ran the handler in
    # the asking thread, so the asker waited for the handler whatever its timeout.
    release = threading.Event()

    class Slow(Threads):
        def on_receive(self, message: Any) -> Any:
            if message == "slow":
                assert release.wait(WAIT)
            return super().on_receive(message)

    ref = on(pool, Slow).start()
    ref.ask("warm up", timeout=WAIT)
    assert _idle(ref)
    started = time.monotonic()
    with pytest.raises(pykka.Timeout):
        ref.ask("slow", timeout=0.05)
    future = ref.ask("after", block=False)
    assert time.monotonic() - started < WAIT / 2
    release.set()
    threads = future.get(timeout=WAIT)
    assert threads["slow"].startswith("test-pool-")
    assert threads["after"].startswith("test-pool-")


def test_an_actors_exceptions_are_logged_in_pykkas_words_on_its_logger(
    pool: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    # Pykka's test_exception_is_logged_when_returned_to_caller and
    # test_base_exception_is_logged: same records as Pykka's own actor loop writes.
    class Fatal(BaseException):
        pass

    class Raises(PooledActor):
        def on_receive(self, message: Any) -> Any:
            raise message

    caplog.set_level("DEBUG", logger="pykka")
    ref = on(pool, Raises).start()
    with pytest.raises(ValueError, match="to the asker"):
        ref.ask(ValueError("to the asker"), timeout=WAIT)
    [returned] = [r for r in caplog.records if r.levelname == "INFO"]
    assert returned.name == "pykka"
    assert returned.getMessage() == f"Exception returned from {ref} to caller:"
    assert returned.exc_info is not None and isinstance(returned.exc_info[1], ValueError)
    ref.tell(Fatal())
    assert ref.actor_stopped.wait(WAIT)
    assert ("pykka", "DEBUG", f"Fatal() in {ref}. Stopping all actors.") in [
        (r.name, r.levelname, r.getMessage()) for r in caplog.records
    ]


def test_ctrl_c_in_a_handed_off_turn_reaches_the_caller(pool: Scheduler) -> None:
    class Interrupted(PooledActor):
        def on_receive(self, message: Any) -> Any:
            if message == "interrupt":
                raise KeyboardInterrupt
            return threading.current_thread().name

    ref = on(pool, Interrupted).start()
    ref.ask("warm up", timeout=WAIT)
    assert _idle(ref)
    with pytest.raises(KeyboardInterrupt):
        ref.tell("interrupt")  # runs here, by handoff: the interrupt is this thread's
    assert ref.actor_stopped.wait(WAIT)  # and the actor stops, as Pykka stops on it
    assert not ref.is_alive()

"""Supervisors: strategies, restart types, intensity, shutdown, dynamic children, trees."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from polling import wait_until

from gluegun_actors import connection, mailbox, supervisor
from gluegun_actors._runtime.pool import PooledActor
from gluegun_actors.errors import (
    ChildStartError,
    InvalidArgument,
    InvalidOptions,
    SupervisorError,
)
from gluegun_actors.events import Down, GunUp

T = 5000


class Boom(Exception):
    pass


class Journal:
    """What the children did, in order, across every incarnation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: list[tuple[str, str]] = []

    def write(self, what: str, name: str) -> None:
        with self.lock:
            self.lines.append((what, name))

    def of(self, what: str) -> list[str]:
        with self.lock:
            return [name for verb, name in self.lines if verb == what]

    def clear(self) -> None:
        with self.lock:
            self.lines.clear()


class Worker(PooledActor):
    """A child that records its starts and stops and fails on request."""

    def __init__(self, name: str, journal: Journal) -> None:
        super().__init__()
        self.name = name
        self.journal = journal

    def on_start(self) -> None:
        self.journal.write("start", self.name)

    def on_stop(self) -> None:
        self.journal.write("stop", self.name)

    def on_receive(self, message: Any) -> Any:
        match message:
            case "raise":
                raise Boom(self.name)
            case "quit":
                self.stop()
        return self.name


def worker(name: str, journal: Journal, **spec: Any) -> supervisor.ChildSpec:
    return supervisor.child(name, lambda: Worker.start(name, journal), **spec)


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def box() -> Iterator[mailbox.Mailbox]:
    yield mailbox.Mailbox("supervisor owner")


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    before = set(pykka.ActorRegistry.get_all())
    yield
    assert wait_until(lambda: set(pykka.ActorRegistry.get_all()) <= before, 5.0), (
        f"left running: {set(pykka.ActorRegistry.get_all()) - before}"
    )


def refs(sup: supervisor.Supervisor) -> dict[Any, Any]:
    """Each child's current ref by id; empty once the supervisor has stopped."""
    try:
        return {info.id: info.ref for info in supervisor.which_children(sup)}
    except SupervisorError:
        return {}


def three(journal: Journal, strategy: str, box: mailbox.Mailbox) -> supervisor.Supervisor:
    sup = supervisor.start(
        [worker(name, journal) for name in ("a", "b", "c")], strategy=strategy, owner=box
    )
    assert wait_until(lambda: journal.of("start") == ["a", "b", "c"])  # on_start runs later
    return sup


def crash_b_and_wait(sup: supervisor.Supervisor, journal: Journal) -> dict[Any, Any]:
    before = refs(sup)
    journal.clear()
    before["b"].tell("raise")
    assert wait_until(lambda: refs(sup)["b"] not in (None, before["b"]))
    return before


# -- strategies ---------------------------------------------------------------------------


def test_one_for_one_restarts_only_the_child_that_died(journal, box) -> None:
    sup = three(journal, "one_for_one", box)
    before = crash_b_and_wait(sup, journal)
    after = refs(sup)
    assert after["a"] is before["a"] and after["c"] is before["c"]
    assert wait_until(lambda: journal.of("start") == ["b"])
    assert journal.of("stop") == []  # b failed: on_stop is not run for a failure
    supervisor.stop(sup)


def test_one_for_all_stops_the_others_in_reverse_and_starts_all_in_order(journal, box):
    sup = three(journal, "one_for_all", box)
    before = crash_b_and_wait(sup, journal)
    assert wait_until(lambda: len(journal.of("start")) == 3)
    after = refs(sup)
    assert all(after[name] is not before[name] for name in "abc")
    assert journal.of("stop") == ["c", "a"]
    assert journal.of("start") == ["a", "b", "c"]
    supervisor.stop(sup)


def test_rest_for_one_restarts_the_child_and_those_started_after_it(journal, box) -> None:
    sup = three(journal, "rest_for_one", box)
    before = crash_b_and_wait(sup, journal)
    assert wait_until(lambda: len(journal.of("start")) == 2)
    after = refs(sup)
    assert after["a"] is before["a"]
    assert after["c"] is not before["c"]
    assert journal.of("stop") == ["c"]
    assert journal.of("start") == ["b", "c"]
    supervisor.stop(sup)


def test_a_restarted_child_starts_from_its_spec_with_fresh_state(journal, box) -> None:
    counter = {"starts": 0}

    class Counter(PooledActor):
        def __init__(self) -> None:
            super().__init__()
            counter["starts"] += 1
            self.seen = 0

        def on_receive(self, message: Any) -> Any:
            if message == "raise":
                raise Boom
            self.seen += 1
            return self.seen

    sup = supervisor.start([supervisor.child("n", Counter.start)], owner=box)
    first = refs(sup)["n"]
    assert first.ask("+", timeout=5) == 1 and first.ask("+", timeout=5) == 2
    first.tell("raise")
    assert wait_until(lambda: refs(sup)["n"] not in (None, first))
    assert refs(sup)["n"].ask("+", timeout=5) == 1  # a new incarnation
    assert counter["starts"] == 2
    supervisor.stop(sup)


# -- restart types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        ("permanent", "quit", True),
        ("permanent", "raise", True),
        ("transient", "quit", False),
        ("transient", "raise", True),
        ("temporary", "quit", False),
        ("temporary", "raise", False),
    ],
)
def test_restart_types(journal, box, restart: str, how: str, restarted: bool) -> None:
    sup = supervisor.start([worker("w", journal, restart=restart)], owner=box)
    first = refs(sup)["w"]
    first.tell(how)
    assert wait_until(lambda: not first.is_alive())
    if restarted:
        assert wait_until(lambda: refs(sup).get("w") not in (None, first))
    else:
        time.sleep(0.1)
        expected = {} if restart == "temporary" else {"w": None}
        assert refs(sup) == expected  # a temporary child is forgotten
    supervisor.stop(sup)


def test_a_child_that_fails_in_on_start_is_restarted(box) -> None:
    attempts: list[int] = []

    class FailsOnce(PooledActor):
        def on_start(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise Boom("on_start")

    sup = supervisor.start([supervisor.child("f", FailsOnce.start)], owner=box)
    assert wait_until(lambda: len(attempts) == 2)
    assert refs(sup)["f"].is_alive()
    supervisor.stop(sup)


# -- intensity ----------------------------------------------------------------------------


def test_too_many_restarts_stop_the_supervisor_and_its_children(journal, box) -> None:
    sup = supervisor.start(
        [worker("steady", journal), worker("flaky", journal)],
        intensity=2,
        period=5000,
        owner=box,
    )
    for _ in range(3):
        current = refs(sup)["flaky"]
        current.tell("raise")
        assert wait_until(lambda c=current: refs(sup).get("flaky") is not c or not sup.alive)
    down = box.receive(Down, T)
    assert (down.conn, down.reason) == (sup, supervisor.INTENSITY)
    assert not sup.alive
    assert "steady" in journal.of("stop")


def test_intensity_exceeded_escalates_through_a_two_level_tree(journal, box) -> None:
    def inner() -> supervisor.Supervisor:
        return supervisor.start([worker("flaky", journal)], intensity=1, period=5000)

    outer = supervisor.start(
        [supervisor.child("inner", inner, type="supervisor"), worker("sibling", journal)],
        intensity=1,
        period=5000,
        owner=box,
    )
    for _ in range(6):  # the inner gives up after 2 crashes, the outer after 2 of those
        if not outer.alive:
            break
        inner_sup = refs(outer).get("inner")
        if inner_sup is None or not inner_sup.alive:
            time.sleep(0.05)
            continue
        flaky = refs(inner_sup).get("flaky")
        if flaky is not None:
            flaky.tell("raise")
        time.sleep(0.1)
    down = box.receive(Down, T)
    assert (down.conn, down.reason) == (outer, supervisor.INTENSITY)
    assert wait_until(lambda: "sibling" in journal.of("stop"))


# -- stopping -----------------------------------------------------------------------------


def test_stop_stops_the_children_in_reverse_start_order(journal, box) -> None:
    sup = three(journal, "one_for_one", box)
    supervisor.stop(sup)
    assert journal.of("stop") == ["c", "b", "a"]
    assert box.receive(Down, T).reason == "normal"
    with pytest.raises(SupervisorError, match="stopped"):
        supervisor.count_children(sup)


def test_a_child_that_ignores_its_stop_is_forced_after_its_shutdown_time(box) -> None:
    release = threading.Event()

    class Stubborn(pykka.ThreadingActor):
        def on_stop(self) -> None:
            release.wait(10)  # ignores the request to stop

    sup = supervisor.start([supervisor.child("s", Stubborn.start, shutdown=200)], owner=box)
    stubborn = refs(sup)["s"]
    started = time.monotonic()
    supervisor.terminate_child(sup, "s")
    assert time.monotonic() - started < 3.0
    assert not stubborn.is_alive()
    assert refs(sup) == {"s": None}
    release.set()
    supervisor.stop(sup)


def test_terminate_restart_and_delete_a_child(journal, box) -> None:
    sup = three(journal, "one_for_one", box)
    supervisor.terminate_child(sup, "b")
    assert refs(sup)["b"] is None
    assert supervisor.count_children(sup) == supervisor.ChildCount(3, 2, 0, 2)
    with pytest.raises(SupervisorError, match=r"is running"):
        supervisor.restart_child(sup, "a")
    again = supervisor.restart_child(sup, "b")
    assert again.is_alive() and refs(sup)["b"] is again
    supervisor.terminate_child(sup, "c")
    supervisor.delete_child(sup, "c")
    assert list(refs(sup)) == ["a", "b"]
    with pytest.raises(SupervisorError, match="no child"):
        supervisor.delete_child(sup, "c")
    supervisor.stop(sup)


def test_the_owners_death_stops_the_tree(journal) -> None:
    holder: dict[str, supervisor.Supervisor] = {}

    def owner_thread() -> None:
        holder["sup"] = three(journal, "one_for_one", mailbox.current())

    thread = threading.Thread(target=owner_thread)
    thread.start()
    thread.join(10)
    assert wait_until(lambda: not holder["sup"].alive)
    assert sorted(journal.of("stop")) == ["a", "b", "c"]


# -- dynamic supervisors ------------------------------------------------------------------


def test_a_dynamic_supervisor_starts_children_of_one_spec_on_demand(journal, box) -> None:
    template = supervisor.child("w", lambda name: Worker.start(name, journal))
    sup = supervisor.start_dynamic(template, owner=box)
    one = supervisor.start_child(sup, "one")
    two = supervisor.start_child(sup, "two", id="second")
    assert one.ask("?", timeout=5) == "one" and two.ask("?", timeout=5) == "two"
    assert [info.id for info in supervisor.which_children(sup)] == [1, "second"]
    one.tell("raise")
    assert wait_until(lambda: refs(sup).get(1) not in (None, one))
    supervisor.terminate_child(sup, "second")
    assert list(refs(sup)) == [1]
    supervisor.stop(sup)
    assert journal.of("start").count("one") == 2


def test_a_dynamic_supervisor_stops_its_children_all_at_once(box) -> None:
    release = threading.Event()
    asked: list[float] = []

    class Stubborn(pykka.ThreadingActor):
        def on_stop(self) -> None:
            asked.append(time.monotonic())
            release.wait(10)  # ignores the request to stop

    template = supervisor.child("s", Stubborn.start, shutdown=300)
    sup = supervisor.start_dynamic(template, owner=box)
    children = [supervisor.start_child(sup) for _ in range(8)]
    started = time.monotonic()
    supervisor.stop(sup)
    # In turn, 8 x 300 ms; as OTP stops a dynamic supervisor's children, at once: one wait.
    assert len(asked) == 8 and max(asked) - started < 0.3  # all asked before any was forced
    assert not any(child.is_alive() for child in children)
    release.set()
    assert box.receive(Down, T).reason == supervisor.NORMAL


def test_a_dynamic_supervisor_forgets_a_temporary_child_that_exits(journal, box) -> None:
    template = supervisor.child("w", lambda name: Worker.start(name, journal), restart="temporary")
    sup = supervisor.start_dynamic(template, owner=box, max_children=2)
    child = supervisor.start_child(sup, "x")
    supervisor.start_child(sup, "y")
    with pytest.raises(SupervisorError, match="max_children"):
        supervisor.start_child(sup, "z")
    child.tell("quit")
    assert wait_until(lambda: len(supervisor.which_children(sup)) == 1)
    supervisor.stop(sup)


# -- significant children -----------------------------------------------------------------


def test_auto_shutdown_when_a_significant_child_exits(journal, box) -> None:
    sup = supervisor.start(
        [
            worker("job", journal, restart="transient", significant=True),
            worker("helper", journal),
        ],
        auto_shutdown="any_significant",
        owner=box,
    )
    refs(sup)["job"].tell("quit")
    assert box.receive(Down, T).reason == "shutdown"
    assert "helper" in journal.of("stop")


# -- backoff ------------------------------------------------------------------------------


def test_a_backoff_spaces_the_restarts_of_a_crashing_child(box) -> None:
    starts: list[float] = []

    class Crasher(PooledActor):
        def on_start(self) -> None:
            starts.append(time.monotonic())

    sup = supervisor.start(
        [supervisor.child("c", Crasher.start, backoff=supervisor.Backoff(100, 800, jitter=0))],
        intensity=10,
        owner=box,
    )
    for _ in range(3):
        current = refs(sup)["c"]
        current.stop()  # a normal exit: a permanent child is restarted, after its backoff
        assert wait_until(lambda c=current: refs(sup)["c"] not in (None, c), 5.0)
    assert wait_until(lambda: len(starts) == 4)  # (on_start runs after the ref is known)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39  # 100, 200, 400 ms
    supervisor.stop(sup)


# -- connections under supervision --------------------------------------------------------


def test_a_connection_that_runs_out_of_retries_is_restarted(embedded_server, box) -> None:
    def open_conn() -> connection.Connection:
        options = connection.options(retry=0, owner=box)
        return connection.open("127.0.0.1", embedded_server.port, options)

    sup = supervisor.start([supervisor.child("conn", open_conn)], intensity=5, owner=box)
    first = refs(sup)["conn"]
    assert box.receive(GunUp, T).conn is first
    embedded_server.kill()  # the connection is lost, with no retry left: it stops
    embedded_server.restart()
    up = box.receive(lambda m: isinstance(m, GunUp) and m.conn is not first, T)
    assert refs(sup)["conn"] is up.conn and up.conn.alive
    supervisor.stop(sup)
    assert not up.conn.alive


# -- bad input ----------------------------------------------------------------------------


def test_bad_specs_and_options_are_refused() -> None:
    with pytest.raises(InvalidOptions, match="restart"):
        supervisor.child("x", Worker.start, restart="sometimes")
    with pytest.raises(InvalidOptions, match="significant"):
        supervisor.child("x", Worker.start, significant=True)
    with pytest.raises(InvalidOptions, match="start must be callable"):
        supervisor.child("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptions, match="strategy"):
        supervisor.start([], strategy="all_for_none")
    with pytest.raises(InvalidOptions, match="unique"):
        spec = supervisor.child("same", Worker.start)
        supervisor.start([spec, spec])
    with pytest.raises(InvalidArgument):
        supervisor.start(["not a spec"])  # type: ignore[list-item]


def test_a_child_that_will_not_start_stops_the_ones_before_it(journal, box) -> None:
    def broken() -> Any:
        raise Boom("no")

    with pytest.raises(ChildStartError, match=r"'broken' .* did not start") as caught:
        supervisor.start([worker("first", journal), supervisor.child("broken", broken)], owner=box)
    assert caught.value.child_id == "broken"
    assert isinstance(caught.value.__cause__, Boom)
    assert journal.of("stop") == ["first"]


def test_a_start_that_returns_no_actor_is_refused(box) -> None:
    with pytest.raises(ChildStartError, match=r"not a started pykka\.ActorRef"):
        supervisor.start([supervisor.child("x", lambda: "an actor?")], owner=box)


def test_a_duplicate_child_and_a_stopped_supervisor_are_refused(journal, box) -> None:
    sup = supervisor.start([worker("a", journal)], owner=box)
    with pytest.raises(SupervisorError, match="already has a child"):
        supervisor.start_child(sup, worker("a", journal))
    supervisor.stop(sup)
    with pytest.raises(SupervisorError, match="stopped"):
        supervisor.start_child(sup, worker("b", journal))
    supervisor.stop(sup)  # twice: nothing happens

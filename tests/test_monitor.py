"""Monitors: one Down, with its reason, however a Pykka actor (or a connection) stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from polling import wait_until
from recording import RecordingActor

from gluegun_actors import connection, mailbox, supervisor
from gluegun_actors._runtime.pool import PooledActor
from gluegun_actors.errors import InvalidArgument
from gluegun_actors.events import Down, Shutdown

T = 5000


class Boom(Exception):
    pass


class Fatal(BaseException):
    pass


def _behaviour(base: type[pykka.Actor]) -> type[pykka.Actor]:
    class Subject(base):  # type: ignore[misc, valid-type]
        def __init__(self, fail_on_start: bool | threading.Event = False) -> None:
            super().__init__()
            self.fail_on_start = fail_on_start

        def on_start(self) -> None:
            if isinstance(self.fail_on_start, threading.Event):
                self.fail_on_start.wait(5)
            if self.fail_on_start:
                raise Boom("on_start")

        def on_receive(self, message: Any) -> Any:
            match message:
                case "raise":
                    raise Boom("in a handler")
                case "fatal":
                    raise Fatal("stop everything")
                case "stop yourself":
                    self.stop()
            return message

    Subject.__name__ = f"{base.__name__}Subject"
    return Subject


RUNTIMES = {"pooled": _behaviour(PooledActor), "threading": _behaviour(pykka.ThreadingActor)}


@pytest.fixture(params=sorted(RUNTIMES))
def subject_class(request: pytest.FixtureRequest) -> Iterator[type[pykka.Actor]]:
    yield RUNTIMES[request.param]


@pytest.fixture
def box() -> mailbox.Mailbox:
    return mailbox.Mailbox("monitors")


def _down(box: mailbox.Mailbox) -> Down:
    return box.receive(Down, T)


def test_stop_from_outside_is_a_normal_down(subject_class, box) -> None:
    ref = subject_class.start()
    watch = supervisor.monitor(ref, box)
    ref.stop()
    down = _down(box)
    assert (down.conn, down.reason, down.monitor) == (ref, "normal", watch)
    assert len(box) == 0


def test_stopping_itself_is_a_normal_down(subject_class, box) -> None:
    ref = subject_class.start()
    supervisor.monitor(ref, box)
    ref.tell("stop yourself")
    assert _down(box).reason == "normal"


def test_an_exception_in_a_told_handler_is_the_reason(subject_class, box) -> None:
    ref = subject_class.start()
    supervisor.monitor(ref, box)
    ref.tell("raise")
    reason = _down(box).reason
    assert isinstance(reason, Boom) and str(reason) == "in a handler"


def test_an_exception_in_an_asked_handler_goes_to_the_asker_and_the_actor_lives(
    subject_class, box
) -> None:
    ref = subject_class.start()
    supervisor.monitor(ref, box)
    with pytest.raises(Boom):
        ref.ask("raise", timeout=5)
    assert ref.ask("still here", timeout=5) == "still here"
    with pytest.raises(Exception):  # noqa: B017
        box.receive(Down, 100)
    ref.stop()
    assert _down(box).reason == "normal"


def test_an_exception_in_on_start_is_the_reason(subject_class, box) -> None:
    go = threading.Event()
    ref = subject_class.start(fail_on_start=go)
    supervisor.monitor(ref, box)
    go.set()  # on_start fails only now, with the monitor in place
    reason = _down(box).reason
    assert isinstance(reason, Boom) and str(reason) == "on_start"


def test_a_pooled_actor_that_failed_in_on_start_unwatched_still_says_why(box) -> None:
    ref = RUNTIMES["pooled"].start(fail_on_start=True)
    assert wait_until(lambda: not ref.is_alive())  # died with nobody watching
    supervisor.monitor(ref, box)
    late = box.receive(Down, T).reason
    assert isinstance(late, Boom)  # the pooled runtime records why, watched or not


def test_a_base_exception_stops_the_actor_with_it_as_the_reason(subject_class, box) -> None:
    other = RecordingActor.start()  # Pykka stops every actor on a BaseException
    ref = subject_class.start()
    ref.ask("ready", timeout=5)
    supervisor.monitor(ref, box)
    supervisor.monitor(other, box)
    ref.tell("fatal") if subject_class.__name__.startswith("Threading") else _tell_on_worker(
        ref, "fatal"
    )
    downs = [_down(box), _down(box)]
    by_target = {down.conn: down.reason for down in downs}
    assert isinstance(by_target[ref], Fatal)
    assert by_target[other] == "normal"


def _tell_on_worker(ref: pykka.ActorRef[Any], message: object) -> None:
    """A pooled actor's handoff would run the turn here; keep the BaseException there."""
    from gluegun_actors._runtime.pool import tell_queued

    tell_queued(ref, message)


def test_monitoring_a_dead_actor_gives_down_at_once(subject_class, box) -> None:
    ref = subject_class.start()
    ref.stop()
    assert wait_until(lambda: not ref.is_alive())
    supervisor.monitor(ref, box)
    assert box.receive(Down, 0).reason in ("normal", supervisor.NOPROC)


def test_monitoring_an_actor_that_died_unwatched_says_noproc(box) -> None:
    ref = RecordingActor.start()
    ref.stop()
    supervisor.monitor(ref, box)
    assert box.receive(Down, 0).reason == supervisor.NOPROC


def test_demonitor_means_no_down(subject_class, box) -> None:
    ref = subject_class.start()
    watch = supervisor.monitor(ref, box)
    assert supervisor.demonitor(watch) is True
    ref.stop()
    assert wait_until(lambda: not ref.is_alive())
    with pytest.raises(Exception):  # noqa: B017
        box.receive(Down, 100)


def test_demonitor_with_flush_removes_a_down_already_sent(subject_class, box) -> None:
    ref = subject_class.start()
    watch = supervisor.monitor(ref, box)
    keep = supervisor.monitor(ref, box)
    ref.stop()
    assert wait_until(lambda: len(box) == 2)
    assert supervisor.demonitor(watch, flush=True) is False  # it had fired
    assert [m.monitor for m in box.messages()] == [keep]


def test_a_thousand_monitors_on_one_actor_each_fire_once(subject_class, box) -> None:
    ref = subject_class.start()
    watches = {supervisor.monitor(ref, box) for _ in range(1000)}
    ref.stop()
    assert wait_until(lambda: len(box) == 1000)
    assert {m.monitor for m in box.messages()} == watches
    assert not wait_until(lambda: len(box) > 1000, 0.1)  # none of them twice


def test_an_actor_owner_gets_down_in_on_receive(subject_class) -> None:
    owner = RecordingActor.start()
    ref = subject_class.start()
    try:
        supervisor.monitor(ref, owner)
        ref.stop()
        assert wait_until(lambda: any(isinstance(m, Down) for m in owner.ask("messages")))
    finally:
        owner.stop()


def test_a_monitor_from_a_thread_goes_to_its_own_mailbox(subject_class) -> None:
    ref = subject_class.start()
    got: list[Down] = []

    def watcher() -> None:
        supervisor.monitor(ref)
        got.append(mailbox.current().receive(Down, T))

    thread = threading.Thread(target=watcher)
    thread.start()
    assert wait_until(lambda: ref.is_alive())
    ref.stop()
    thread.join(10)
    assert got and got[0].conn == ref


def test_a_connection_monitor_carries_the_connections_reason(embedded_server, box) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    connection.await_up(conn, T)
    watch = supervisor.monitor(conn, box)
    connection.close(conn)
    down = _down(box)
    assert (down.conn, down.reason, down.monitor) == (conn, "shutdown", watch)


def test_a_connection_whose_owner_actor_dies_stops_at_once(embedded_server, box) -> None:
    owner = RecordingActor.start()
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(owner=owner))
    supervisor.monitor(conn, box)
    assert wait_until(lambda: len(owner.ask("messages")) >= 1)  # GunUp
    owner.stop()
    assert _down(box).reason == Shutdown("owner_down")


def test_monitor_refuses_what_it_cannot_watch(box) -> None:
    with pytest.raises(InvalidArgument):
        supervisor.monitor("not an actor", box)
    ref = RecordingActor.start()
    try:
        with pytest.raises(InvalidArgument):
            supervisor.monitor(ref, "not an owner")  # type: ignore[arg-type]
    finally:
        ref.stop()

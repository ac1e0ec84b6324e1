"""The mailbox: ordered, selective receive, atomic timeouts, collectors, owner monitors."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka
import pytest
from polling import wait_until

from gluegun_actors._timeouts import Milliseconds
from gluegun_actors._waits import BlockingWait
from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    GluegunError,
    InvalidArgument,
    InvalidTimeout,
    StreamError,
)
from gluegun_actors.mailbox import (
    GIVE_BACK_INSERT_LIMIT,
    SCAN_MARKS_LIMIT,
    Mailbox,
    Match,
    current,
    predicate,
)

WAIT_S = 5.0
"""Upper bound for waits that should end at once (only a broken mailbox reaches it)."""


@dataclass(frozen=True, slots=True)
class A:
    n: int


@dataclass(frozen=True, slots=True)
class B:
    n: int


@dataclass
class Chunks:
    """Takes `count` messages of class `kind` and returns their numbers."""

    kind: type
    count: int
    taken: list[int] = field(default_factory=list)
    fail_with: GluegunError | None = None

    def offer(self, message: object) -> bool:
        if isinstance(message, self.kind):
            self.taken.append(message.n)  # type: ignore[attr-defined]
            return True
        return False

    def done(self) -> bool:
        return len(self.taken) >= self.count

    def result(self) -> list[int]:
        if self.fail_with is not None:
            raise self.fail_with
        return list(self.taken)


def put_all(mailbox: Mailbox, *messages: object) -> None:
    for message in messages:
        mailbox.put(message)


def put_later(mailbox: Mailbox, message: object, delay: float = 0.02) -> threading.Thread:
    """Put `message` from another thread after `delay` seconds."""

    def run() -> None:
        time.sleep(delay)
        mailbox.put(message)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# -- order and selective receive ---------------------------------------------------------


def test_messages_are_received_in_arrival_order() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2), A(3))
    assert [mailbox.receive(timeout=0) for _ in range(3)] == [A(1), B(2), A(3)]


def test_receive_by_class_leaves_the_other_messages_in_order() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), A(2), B(3), A(4), B(5))
    assert mailbox.receive(B, 0) == B(3)
    assert mailbox.messages() == [A(1), A(2), A(4), B(5)]


def test_receive_by_predicate_leaves_the_other_messages_in_order() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), A(2), A(3), A(4))
    assert mailbox.receive(lambda m: isinstance(m, A) and m.n % 2 == 0, 0) == A(2)
    assert mailbox.messages() == [A(1), A(3), A(4)]


def test_receive_by_tuple_of_classes_takes_the_first_of_either() -> None:
    mailbox = Mailbox()
    put_all(mailbox, "x", B(1), A(2))
    assert mailbox.receive((A, B), 0) == B(1)
    assert mailbox.messages() == ["x", A(2)]


def test_receive_by_class_union_takes_the_first_of_either() -> None:
    mailbox = Mailbox()
    put_all(mailbox, "x", A(1))
    assert mailbox.receive(A | B, 0) == A(1)


def test_a_match_that_is_not_a_class_or_predicate_is_refused() -> None:
    mailbox = Mailbox()
    mailbox.put(A(1))
    with pytest.raises(InvalidArgument):
        mailbox.receive(42, 0)  # type: ignore[call-overload]
    with pytest.raises(InvalidArgument):
        mailbox.receive((A, "B"), 0)  # type: ignore[arg-type]
    assert mailbox.messages() == [A(1)]


def test_receive_waits_for_a_message_put_later() -> None:
    mailbox = Mailbox()
    thread = put_later(mailbox, A(1))
    assert mailbox.receive(A, Milliseconds(5000)) == A(1)
    thread.join()
    assert len(mailbox) == 0


def test_a_waiting_receive_leaves_non_matching_messages_queued_in_order() -> None:
    mailbox = Mailbox()
    future = mailbox.receive_future(B)
    put_all(mailbox, A(1), A(2), B(3), A(4))
    assert future.get(timeout=WAIT_S) == B(3)
    assert mailbox.messages() == [A(1), A(2), A(4)]


def test_registered_waits_are_served_in_registration_order() -> None:
    mailbox = Mailbox()
    first = mailbox.receive_future()
    second = mailbox.receive_future()
    put_all(mailbox, A(1), A(2))
    assert (first.get(timeout=WAIT_S), second.get(timeout=WAIT_S)) == (A(1), A(2))


# -- timeouts ----------------------------------------------------------------------------


def test_timeout_raises_await_timeout_and_takes_nothing() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), A(2))
    started = time.monotonic()
    with pytest.raises(AwaitTimeout):
        mailbox.receive(B, 30)
    assert time.monotonic() - started >= 0.03
    assert mailbox.messages() == [A(1), A(2)]


def test_a_timed_out_receive_no_longer_takes_messages() -> None:
    mailbox = Mailbox()
    with pytest.raises(AwaitTimeout):
        mailbox.receive(A, 5)
    mailbox.put(A(1))
    assert mailbox.messages() == [A(1)]


def test_zero_timeout_takes_a_queued_message_or_raises_at_once() -> None:
    mailbox = Mailbox()
    mailbox.put(A(1))
    assert mailbox.receive(A, 0) == A(1)
    with pytest.raises(AwaitTimeout):
        mailbox.receive(A, Milliseconds(0))


def test_float_timeout_is_refused_as_invalid_timeout_and_type_error() -> None:
    mailbox = Mailbox()
    mailbox.put(A(1))
    with pytest.raises(InvalidTimeout) as error:
        mailbox.receive(A, 0.5)  # type: ignore[call-overload]
    assert isinstance(error.value, TypeError)
    assert "milliseconds" in str(error.value)
    assert mailbox.messages() == [A(1)]


def test_float_timeout_is_refused_by_collect() -> None:
    with pytest.raises(InvalidTimeout):
        Mailbox().collect(Chunks(A, 1), 1.0)  # type: ignore[arg-type]


def test_a_message_taken_as_the_timeout_fires_is_returned() -> None:
    """The put holds the lock past the deadline (a slow match): the message is not lost."""
    mailbox = Mailbox()

    def slow_match(message: object) -> bool:
        time.sleep(0.1)
        return True

    thread = put_later(mailbox, A(1), delay=0.005)
    assert mailbox.receive(slow_match, 20) == A(1)
    thread.join()
    assert len(mailbox) == 0


def test_a_put_racing_the_timeout_is_received_or_queued_exactly_once() -> None:
    mailbox = Mailbox()
    delays = [0.0, 0.0005, 0.001, 0.0015, 0.004]
    rounds = 250
    start, finish = threading.Barrier(2), threading.Barrier(2)
    outcomes = {"received": 0, "queued": 0}

    def putter() -> None:
        for i in range(rounds):
            start.wait(WAIT_S)
            time.sleep(delays[i % len(delays)])
            mailbox.put(A(i))
            finish.wait(WAIT_S)

    thread = threading.Thread(target=putter)
    thread.start()
    for i in range(rounds):
        start.wait(WAIT_S)
        try:
            received = [mailbox.receive(A, 1)]
        except AwaitTimeout:
            received = []
        finish.wait(WAIT_S)
        queued = mailbox.messages()
        assert received + queued == [A(i)]
        outcomes["received" if received else "queued"] += 1
        mailbox.flush()
    thread.join()
    assert outcomes["received"] > 0
    assert outcomes["queued"] > 0


def test_a_collector_racing_the_timeout_keeps_or_gives_back_every_message() -> None:
    mailbox = Mailbox()
    rounds = 150
    start, finish = threading.Barrier(2), threading.Barrier(2)

    def putter() -> None:
        for i in range(rounds):
            start.wait(WAIT_S)
            mailbox.put(A(2 * i))
            time.sleep((i % 4) * 0.0005)
            mailbox.put(B(i))
            mailbox.put(A(2 * i + 1))
            finish.wait(WAIT_S)

    thread = threading.Thread(target=putter)
    thread.start()
    for i in range(rounds):
        start.wait(WAIT_S)
        try:
            collected = mailbox.collect(Chunks(A, 2), 1)
        except AwaitTimeout:
            collected = []
        finish.wait(WAIT_S)
        queued = mailbox.messages()
        if collected:
            assert collected == [2 * i, 2 * i + 1]
            assert queued == [B(i)]
        else:
            assert queued == [A(2 * i), B(i), A(2 * i + 1)]
        mailbox.flush()
    thread.join()


# -- futures -----------------------------------------------------------------------------


def test_receive_future_resolves_from_the_queue_at_once() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2))
    future = mailbox.receive_future(B)
    assert future.get(timeout=0) == B(2)
    assert mailbox.messages() == [A(1)]


def test_receive_future_resolves_when_a_matching_message_arrives_later() -> None:
    mailbox = Mailbox()
    future = mailbox.receive_future(A)
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.01)
    thread = put_later(mailbox, A(7), delay=0.01)
    assert future.get(timeout=WAIT_S) == A(7)
    thread.join()
    assert len(mailbox) == 0


def test_get_all_waits_on_futures_of_several_mailboxes() -> None:
    boxes = [Mailbox(f"box{i}") for i in range(3)]
    futures = [box.receive_future(A) for box in boxes]
    threads = [put_later(box, A(i), delay=0.005 * i) for i, box in enumerate(boxes)]
    assert list(pykka.get_all(futures, timeout=WAIT_S)) == [A(0), A(1), A(2)]
    for thread in threads:
        thread.join()


def test_cancel_of_a_pending_wait_unregisters_it() -> None:
    mailbox = Mailbox()
    future = mailbox.receive_future(A)
    assert mailbox.cancel(future) is True
    mailbox.put(A(1))
    assert mailbox.messages() == [A(1)]
    with pytest.raises(BadStateError):
        future.get(timeout=0)


def test_cancel_of_a_resolved_wait_restores_the_message_at_its_place() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2), A(3))
    future = mailbox.receive_future(B)
    mailbox.put(A(4))
    assert mailbox.cancel(future) is False
    assert mailbox.messages() == [A(1), B(2), A(3), A(4)]


def test_cancel_twice_gives_the_message_back_once() -> None:
    mailbox = Mailbox()
    mailbox.put(A(1))
    future = mailbox.receive_future(A)
    assert mailbox.cancel(future) is False
    assert mailbox.cancel(future) is False
    assert mailbox.messages() == [A(1)]


def test_a_message_given_back_goes_first_to_a_waiting_receive() -> None:
    mailbox = Mailbox()
    mailbox.put(A(1))
    taken = mailbox.receive_future(A)
    waiting = mailbox.receive_future(A)
    mailbox.cancel(taken)
    assert waiting.get(timeout=WAIT_S) == A(1)
    assert len(mailbox) == 0


def test_cancel_of_a_wait_on_another_mailbox_is_refused() -> None:
    future = Mailbox().receive_future(A)
    with pytest.raises(InvalidArgument):
        Mailbox().cancel(future)


# -- predicate errors --------------------------------------------------------------------


def _fails_on_b(message: object) -> bool:
    if isinstance(message, B):
        raise ValueError("no B here")
    return False


def test_a_failing_predicate_raises_to_the_receiver_and_the_message_stays() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2))
    with pytest.raises(ValueError, match="no B here"):
        mailbox.receive(_fails_on_b, 0)
    assert mailbox.messages() == [A(1), B(2)]


def test_a_failing_predicate_of_a_waiting_receive_spares_the_putter() -> None:
    mailbox = Mailbox()
    failing = mailbox.receive_future(_fails_on_b)
    other = mailbox.receive_future(B)
    mailbox.put(B(1))
    with pytest.raises(ValueError, match="no B here"):
        failing.get(timeout=WAIT_S)
    assert other.get(timeout=WAIT_S) == B(1)
    mailbox.put(B(2))
    assert mailbox.messages() == [B(2)]


# -- collectors --------------------------------------------------------------------------


def test_collect_takes_several_messages_and_leaves_the_rest_in_order() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2), A(3), B(4), A(5))
    assert mailbox.collect(Chunks(A, 2), 0) == [1, 3]
    assert mailbox.messages() == [B(2), B(4), A(5)]


def test_collect_takes_messages_put_while_it_waits() -> None:
    mailbox = Mailbox()
    mailbox.put(A(1))
    future = mailbox.collect_future(Chunks(A, 3))
    put_all(mailbox, B(2), A(3), A(4), A(5))
    assert future.get(timeout=WAIT_S) == [1, 3, 4]
    assert mailbox.messages() == [B(2), A(5)]


def test_collect_timeout_gives_every_taken_message_back_in_place() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2), B(3), A(4), B(5))
    with pytest.raises(AwaitTimeout):
        mailbox.collect(Chunks(A, 3), 20)
    assert mailbox.messages() == [A(1), B(2), B(3), A(4), B(5)]


def test_collect_timeout_gives_back_messages_taken_while_waiting_in_place() -> None:
    mailbox = Mailbox()
    mailbox.put(A(0))

    def produce() -> None:
        time.sleep(0.005)
        put_all(mailbox, B(1), A(2), B(3))

    thread = threading.Thread(target=produce)
    thread.start()
    with pytest.raises(AwaitTimeout):
        mailbox.collect(Chunks(A, 3), 50)
    thread.join()
    assert mailbox.messages() == [A(0), B(1), A(2), B(3)]


def test_a_cancelled_collector_gives_its_messages_to_other_waits_in_order() -> None:
    mailbox = Mailbox()
    partial = mailbox.collect_future(Chunks(A, 3))
    put_all(mailbox, A(1), B(2), A(3))
    first, second = mailbox.receive_future(A), mailbox.receive_future(A)
    assert mailbox.cancel(partial) is True
    assert (first.get(timeout=WAIT_S), second.get(timeout=WAIT_S)) == (A(1), A(3))
    assert mailbox.messages() == [B(2)]


def test_a_many_message_give_back_keeps_the_order() -> None:
    mailbox = Mailbox()
    count = 4 * GIVE_BACK_INSERT_LIMIT
    for i in range(count):
        put_all(mailbox, A(i), B(i))
    expected = mailbox.messages()
    with pytest.raises(AwaitTimeout):
        mailbox.collect(Chunks(A, count + 1), 1)
    assert mailbox.messages() == expected


def test_a_collector_result_error_is_raised_to_the_collector() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1))
    with pytest.raises(StreamError):
        mailbox.collect(Chunks(A, 1, fail_with=StreamError("reset")), 0)
    future = mailbox.collect_future(Chunks(B, 1, fail_with=StreamError("reset")))
    mailbox.put(B(2))
    with pytest.raises(StreamError):
        future.get(timeout=WAIT_S)


# -- concurrency -------------------------------------------------------------------------


def test_concurrent_producers_and_selective_consumers_get_each_message_once_in_order() -> None:
    mailbox = Mailbox()
    producers, per_producer = 4, 2000
    received: dict[int, list[int]] = {p: [] for p in range(producers)}
    errors: list[BaseException] = []
    start = threading.Barrier(2 * producers)

    def produce(p: int) -> None:
        start.wait(WAIT_S)
        for n in range(per_producer):
            mailbox.put((p, n))

    def consume(p: int) -> None:
        def mine(message: object) -> bool:
            return isinstance(message, tuple) and message[0] == p

        start.wait(WAIT_S)
        try:
            for _ in range(per_producer):
                message = mailbox.receive(mine, 10_000)
                assert isinstance(message, tuple)
                received[p].append(message[1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    threads += [threading.Thread(target=consume, args=(p,)) for p in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert received == {p: list(range(per_producer)) for p in range(producers)}
    assert len(mailbox) == 0


def test_concurrent_receivers_of_any_message_get_each_message_once() -> None:
    mailbox = Mailbox()
    total, receivers = 4000, 4
    got: list[list[object]] = [[] for _ in range(receivers)]

    def receive(i: int) -> None:
        while True:
            message = mailbox.receive(None, 5000)
            if message is None:
                return
            got[i].append(message)

    threads = [threading.Thread(target=receive, args=(i,)) for i in range(receivers)]
    for thread in threads:
        thread.start()
    for n in range(total):
        mailbox.put(n)
    for _ in range(receivers):
        mailbox.put(None)
    for thread in threads:
        thread.join(30)
    everything = [message for messages in got for message in messages]
    assert sorted(everything) == list(range(total))  # type: ignore[type-var]
    assert all(messages == sorted(messages) for messages in got)  # type: ignore[type-var]


# -- flush, len, snapshot ----------------------------------------------------------------


def test_flush_without_match_removes_everything() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2), A(3))
    assert mailbox.flush() == 3
    assert len(mailbox) == 0


def test_flush_with_match_removes_only_matching_messages() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2), A(3), B(4))
    assert mailbox.flush(A) == 2
    assert mailbox.messages() == [B(2), B(4)]


def test_len_counts_queued_messages_and_an_empty_mailbox_is_still_true() -> None:
    mailbox = Mailbox()
    assert len(mailbox) == 0
    assert bool(mailbox) is True
    put_all(mailbox, A(1), A(2))
    assert len(mailbox) == 2


# -- current() and owner monitors --------------------------------------------------------


def test_current_is_the_same_mailbox_on_each_call_in_a_thread() -> None:
    assert current() is current()
    assert current().alive


def test_current_is_a_different_mailbox_in_another_thread() -> None:
    theirs: list[Mailbox] = []
    thread = threading.Thread(target=lambda: theirs.append(current()))
    thread.start()
    thread.join()
    assert theirs[0] is not current()


def _in_thread(body: Callable[[], None]) -> None:
    thread = threading.Thread(target=body)
    thread.start()
    thread.join(WAIT_S)
    assert not thread.is_alive()


def test_the_end_of_a_thread_fires_the_monitors_of_its_mailbox() -> None:
    fired = threading.Event()
    mailboxes: list[Mailbox] = []

    def body() -> None:
        mailbox = current()
        mailbox.monitor(fired.set)
        mailboxes.append(mailbox)

    _in_thread(body)
    assert fired.wait(WAIT_S)
    assert mailboxes[0].alive is False


def test_a_finished_threads_mailbox_is_freed_when_nobody_holds_it() -> None:
    refs: list[weakref.ref[Mailbox]] = []
    _in_thread(lambda: refs.append(weakref.ref(current())))
    gc.collect()
    assert refs[0]() is None


def test_close_fires_each_monitor_once() -> None:
    mailbox = Mailbox()
    calls: list[str] = []
    mailbox.monitor(lambda: calls.append("first"))
    mailbox.monitor(lambda: calls.append("second"))
    mailbox.close()
    mailbox.close()
    assert calls == ["first", "second"]
    assert mailbox.alive is False


def test_demonitor_prevents_the_callback() -> None:
    mailbox = Mailbox()
    calls: list[str] = []
    handle = mailbox.monitor(lambda: calls.append("fired"))
    mailbox.demonitor(handle)
    mailbox.close()
    assert calls == []


def test_monitoring_a_dead_mailbox_fires_at_once() -> None:
    mailbox = Mailbox()
    mailbox.close()
    calls: list[str] = []
    mailbox.monitor(lambda: calls.append("fired"))
    assert calls == ["fired"]


def test_a_failing_monitor_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    mailbox = Mailbox()
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("broken monitor")

    mailbox.monitor(broken)
    mailbox.monitor(lambda: calls.append("second"))
    mailbox.close()
    assert calls == ["second"]
    assert "broken monitor" in caplog.text


def test_a_closed_mailbox_keeps_its_messages() -> None:
    mailbox = Mailbox()
    mailbox.put(A(1))
    mailbox.close()
    mailbox.put(A(2))
    assert mailbox.messages() == [A(1), A(2)]


# -- a match used again does not rescan, yet sees messages given back -----------------------


def test_a_match_used_again_sees_a_message_given_back_before_what_it_took() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2), A(3))
    holder = mailbox.receive_future(A)
    assert mailbox.receive(A, 0) == A(3)
    mailbox.cancel(holder)
    assert mailbox.receive(A, 0) == A(1)


def test_a_predicate_used_again_after_a_timeout_sees_a_message_given_back() -> None:
    mailbox = Mailbox()

    def is_a(message: object) -> bool:
        return isinstance(message, A)

    mailbox.put(A(1))
    holder = mailbox.receive_future(A)
    with pytest.raises(AwaitTimeout):
        mailbox.receive(is_a, 1)
    mailbox.cancel(holder)
    assert mailbox.receive(is_a, 0) == A(1)


def test_a_match_used_again_finds_messages_queued_while_another_wait_took_others() -> None:
    mailbox = Mailbox()
    put_all(mailbox, B(0), A(1))
    assert mailbox.receive(A, 0) == A(1)
    other = mailbox.receive_future(B)
    put_all(mailbox, A(2), B(3))
    assert other.get(timeout=WAIT_S) == B(0)
    assert mailbox.receive(A, 0) == A(2)
    assert mailbox.messages() == [B(3)]


# -- against a plain model -----------------------------------------------------------------


def _is_even(message: object) -> bool:
    return isinstance(message, A | B) and message.n % 2 == 0


@dataclass
class _ModelWait:
    """A wait in the model: one message matching `match`, or `count` messages of `kind`."""

    accepts: Callable[[object], bool]
    count: int
    future: pykka.Future[Any]
    taken: list[tuple[int, object]] = field(default_factory=list)
    state: str = "pending"
    checked: bool = False


class _Model:
    """The mailbox semantics written the plain way: lists, full scans, no shortcuts."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, object]] = []
        self.waits: list[_ModelWait] = []
        self.seq = 0

    def put(self, message: object) -> None:
        self.seq += 1
        self.dispatch([(self.seq, message)])

    def dispatch(self, entries: list[tuple[int, object]]) -> None:
        for entry in sorted(entries, key=lambda e: e[0]):
            for wait in self.waits:
                if wait.accepts(entry[1]):
                    wait.taken.append(entry)
                    if len(wait.taken) == wait.count:
                        wait.state = "done"
                        self.waits.remove(wait)
                    break
            else:
                self.queue.append(entry)
                self.queue.sort(key=lambda e: e[0])

    def start(self, wait: _ModelWait) -> None:
        for entry in list(self.queue):
            if len(wait.taken) < wait.count and wait.accepts(entry[1]):
                wait.taken.append(entry)
        if len(wait.taken) == wait.count:
            wait.state = "done"
        for entry in wait.taken:
            self.queue.remove(entry)
        if wait.state == "pending":
            self.waits.append(wait)

    def cancel(self, wait: _ModelWait) -> bool:
        was_pending = wait.state == "pending"
        if was_pending:
            self.waits.remove(wait)
            wait.state = "cancelled"
        elif wait.state == "done":
            wait.state = "returned"
        returned, wait.taken = wait.taken, []
        self.dispatch(returned)
        return was_pending

    def value(self, wait: _ModelWait) -> object:
        if wait.count == 1:
            return wait.taken[0][1]
        return [message.n for _, message in wait.taken]  # type: ignore[attr-defined]


def test_random_operations_agree_with_a_plain_model() -> None:
    import random

    rng = random.Random(20240607)
    matches: list[Match] = [None, A, B, (A, B), _is_even]
    mailbox, model = Mailbox(), _Model()
    waits: list[_ModelWait] = []
    resolved, cancelled = 0, []
    for step in range(3000):
        op = rng.random()
        if op < 0.45:
            message = rng.choice([A, B])(step)
            mailbox.put(message)
            model.put(message)
        elif op < 0.6:
            match = rng.choice(matches)
            accepts = predicate(match)
            found = next((e for e in model.queue if accepts(e[1])), None)
            if found is None:
                with pytest.raises(AwaitTimeout):
                    mailbox.receive(match, 0)
            else:
                model.queue.remove(found)
                assert mailbox.receive(match, 0) == found[1]
        elif op < 0.75:
            match = rng.choice(matches)
            wait = _ModelWait(predicate(match), 1, mailbox.receive_future(match))
            model.start(wait)
            waits.append(wait)
        elif op < 0.85:
            kind, count = rng.choice([A, B]), rng.choice([2, 3, GIVE_BACK_INSERT_LIMIT + 5])
            future = mailbox.collect_future(Chunks(kind, count))
            wait = _ModelWait(predicate(kind), count, future)
            model.start(wait)
            waits.append(wait)
        elif op < 0.97 and waits:
            wait = waits.pop(rng.randrange(len(waits)))
            cancelled.append(model.cancel(wait))
            assert mailbox.cancel(wait.future) is cancelled[-1]
        else:
            match = rng.choice(matches)
            accepts = predicate(match)
            expected = sum(1 for _, m in model.queue if accepts(m))
            model.queue = [e for e in model.queue if not accepts(e[1])]
            assert mailbox.flush(match) == expected
        assert mailbox.messages() == [message for _, message in model.queue], step
        for wait in waits:
            if wait.state == "done" and not wait.checked:
                assert wait.future.get(timeout=0) == model.value(wait), step
                wait.checked = True
                resolved += 1
    assert resolved > 100
    assert {True, False} <= set(cancelled)


def test_a_failing_collector_gives_back_its_messages_to_the_waits_behind_it() -> None:
    class FailsOnB(Chunks):
        def offer(self, message: object) -> bool:
            if isinstance(message, B):
                raise ValueError("B breaks this collector")
            return super().offer(message)

    mailbox = Mailbox()
    failing = mailbox.collect_future(FailsOnB(A, 3))
    put_all(mailbox, A(1), A(2))
    behind = mailbox.receive_future(A)
    mailbox.put(B(3))
    with pytest.raises(ValueError, match="B breaks"):
        failing.get(timeout=WAIT_S)
    assert behind.get(timeout=WAIT_S) == A(1)
    assert mailbox.messages() == [A(2), B(3)]


def test_a_blocking_collect_whose_result_fails_raises_and_keeps_its_messages() -> None:
    mailbox = Mailbox()
    thread = put_later(mailbox, A(1), delay=0.01)
    with pytest.raises(StreamError):
        mailbox.collect(Chunks(A, 1, fail_with=StreamError("reset")), 5000)
    thread.join()
    assert len(mailbox) == 0


def test_an_interrupted_receive_gives_a_taken_message_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C lands just after a put resolved the wait: the message goes back, not lost."""
    mailbox = Mailbox()

    def interrupted_sleep(self: object, seconds: float | None) -> bool:
        mailbox.put(A(1))
        raise KeyboardInterrupt

    monkeypatch.setattr(BlockingWait, "sleep", interrupted_sleep)
    with pytest.raises(KeyboardInterrupt):
        mailbox.receive(A, 5000)
    assert mailbox.messages() == [A(1)]


def test_many_distinct_matches_used_again_still_find_their_messages() -> None:
    mailbox = Mailbox()
    matches = [(lambda m, i=i: isinstance(m, A) and m.n == i) for i in range(SCAN_MARKS_LIMIT + 5)]
    for match in matches:
        with pytest.raises(AwaitTimeout):
            mailbox.receive(match, 0)
    put_all(mailbox, *(A(i) for i in reversed(range(len(matches)))))
    assert [mailbox.receive(match, 0) for match in matches] == [A(i) for i in range(len(matches))]


def test_a_mailbox_keeps_its_name() -> None:
    mailbox = Mailbox("owner")
    assert mailbox.name == "owner"
    assert "owner" in repr(mailbox)


def test_receiving_late_messages_in_a_loop_asks_the_match_about_each_message_once() -> None:
    mailbox = Mailbox()
    put_all(mailbox, *(B(i) for i in range(1000)), *(A(i) for i in range(100)))
    calls = 0

    def counting_is_a(message: object) -> bool:
        nonlocal calls
        calls += 1
        return isinstance(message, A)

    assert [mailbox.receive(counting_is_a, 0) for _ in range(100)] == [A(i) for i in range(100)]
    assert calls == 1100


# -- put_all, the head fast path, held wakeups ----------------------------------------------


def test_put_all_keeps_order_and_serves_registered_waits_first() -> None:
    mailbox = Mailbox()
    first_b = mailbox.receive_future(B)
    collector = mailbox.collect_future(Chunks(A, 2))
    mailbox.put_all([A(1), B(2), A(3), A(4), B(5)])
    assert collector.get(timeout=WAIT_S) == [1, 3]
    assert first_b.get(timeout=WAIT_S) == B(2)
    assert mailbox.messages() == [A(4), B(5)]
    mailbox.put_all([])
    mailbox.put(A(6))
    assert [mailbox.receive(None, 0) for _ in range(3)] == [A(4), B(5), A(6)]


def test_put_all_wakes_a_blocked_receive_with_the_first_match() -> None:
    mailbox = Mailbox()
    thread = threading.Thread(target=lambda: (time.sleep(0.02), mailbox.put_all([A(1), B(2)])))
    thread.start()
    assert mailbox.receive(B, 5000) == B(2)
    thread.join()
    assert mailbox.messages() == [A(1)]


def test_receive_of_a_class_skips_a_head_of_another_class() -> None:
    mailbox = Mailbox()
    put_all(mailbox, A(1), B(2), A(3))
    assert mailbox.receive(B, 0) == B(2)
    assert mailbox.receive(A, 0) == A(1)
    assert mailbox.receive(None, 0) == A(3)
    with pytest.raises(AwaitTimeout):
        mailbox.receive(A, 0)


def test_a_wakeup_held_by_a_thread_is_released_before_it_would_block() -> None:
    """A holding thread (the reactor's way) wakes the receiver only when it releases."""
    from gluegun_actors._io.wakeups import HeldWakeups

    mailbox = Mailbox()
    got: list[object] = []
    receiver = threading.Thread(target=lambda: got.append(mailbox.receive(A, 5000)))
    receiver.start()
    assert wait_until(lambda: "1 waiting" in repr(mailbox))
    put = threading.Event()
    release = threading.Event()

    def holder() -> None:
        held = HeldWakeups()
        mailbox._put_all([A(1)], held)
        put.set()
        release.wait(WAIT_S)
        held.release()

    thread = threading.Thread(target=holder)
    thread.start()
    assert put.wait(WAIT_S)
    receiver.join(0.05)
    assert receiver.is_alive() and got == [], "woken before the holder released"
    release.set()
    receiver.join(WAIT_S)
    thread.join(WAIT_S)
    assert got == [A(1)]
    assert len(mailbox) == 0


def _drip(mailbox: Mailbox, count: int, gap: float) -> threading.Thread:
    """Put A(0)..A(count-1) from another thread, `gap` seconds apart."""

    def run() -> None:
        for n in range(count):
            time.sleep(gap)
            mailbox.put(A(n))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_per_message_timeout_restarts_with_every_message_taken() -> None:
    mailbox = Mailbox()
    thread = _drip(mailbox, 5, 0.08)  # 400 ms in all, never 250 ms apart
    try:
        assert mailbox.collect(Chunks(A, 5), 250, per_message=True) == [0, 1, 2, 3, 4]
    finally:
        thread.join(WAIT_S)


def test_a_whole_timeout_does_not_restart_and_gives_the_messages_back() -> None:
    mailbox = Mailbox()
    thread = _drip(mailbox, 5, 0.08)
    try:
        with pytest.raises(AwaitTimeout):
            mailbox.collect(Chunks(A, 5), 250)
        thread.join(WAIT_S)
        assert mailbox.messages() == [A(n) for n in range(5)]  # in place, in order
    finally:
        thread.join(WAIT_S)


def test_a_per_message_timeout_gives_up_after_a_silence_and_gives_back() -> None:
    mailbox = Mailbox()
    mailbox.put(A(0))
    with pytest.raises(AwaitTimeout):
        mailbox.collect(Chunks(A, 2), 100, per_message=True)
    assert mailbox.messages() == [A(0)]

"""Waiting on a mailbox from a coroutine, without blocking its event loop.

Theory of operation
-------------------
A coroutine's wait is a `LoopWait`, begun on the loop's thread as a future's wait is: the
queued messages are offered to its collector; if they are not enough it registers, and
from then on each thread that puts a message (a connection's turn) offers it to the wait,
under the mailbox lock, exactly as for a sleeping thread. Matching is the collector's
alone: the await helpers pass the very `Wait` objects their blocking forms use. When the
collector is done, the putting thread hands the outcome to the loop with
`call_soon_threadsafe` and the coroutine resumes. No thread sleeps for the wait and
nothing polls; a coroutine that waits costs one registered wait and one future.

Giving up is the mailbox's atomic withdrawal, so no message is ever lost:

- A timeout is a `loop.call_later` timer that calls `Mailbox._expire`: a wait still
  pending is unregistered and what it took goes back; one that finished in the race has
  its outcome on the way, and it is returned (as a blocking wait returns it). A sliding
  timeout (`per_message`, for bodies) re-arms itself for the time left since the last
  message the wait took.
- A cancellation (`task.cancel()`, `asyncio.wait_for`, `asyncio.timeout`, a failing
  `TaskGroup`) withdraws the wait whatever its state: pending, or finished but not yet
  seen by the coroutine. Either way every message it took, down to the first pieces of
  a half-collected body, goes back to its place in the mailbox (by sequence number), so
  the next wait finds them in order. It happens inside `task.cancel()` itself, which
  cancels the future the task awaits (`_Outcome`), so code that cancels a waiting task
  and goes on at once (to close its connection, flush, or wait again) finds them there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar, cast

from gluegun_actors._await import Wait, timed_out
from gluegun_actors._timeouts import Timeout, timeout_seconds
from gluegun_actors._waits import Collector, LoopWait, WaitState
from gluegun_actors.errors import AwaitTimeout
from gluegun_actors.mailbox import Mailbox

__all__ = ["collect", "wait"]

T = TypeVar("T")


async def collect(
    mailbox: Mailbox, collector: Collector[T], timeout: Timeout, *, per_message: bool = False
) -> T:
    """`Mailbox.collect` for coroutines: feed `mailbox`'s messages to `collector` until it
    is done and return its result; `AwaitTimeout` after `timeout` ms (of silence, with
    `per_message`), taking nothing. Cancelling the coroutine takes nothing either."""
    seconds = timeout_seconds(timeout)
    if seconds == 0:
        return mailbox.collect(collector, 0)  # looks at what is queued: never blocks
    loop = asyncio.get_running_loop()
    outcome = _Outcome(loop, lambda: mailbox._withdraw(waiting))
    waiting = LoopWait(mailbox, collector, outcome, per_message and seconds is not None)
    timer: asyncio.TimerHandle | None = None

    def expire() -> None:
        nonlocal timer
        assert seconds is not None
        left = mailbox._expire(waiting, seconds)
        if left is not None:
            timer = loop.call_later(left, expire)
        elif waiting.state is WaitState.WITHDRAWN and not waiting.outcome.done():
            waiting.outcome.set_result((None, mailbox._timeout_error(collector, seconds)))

    if not mailbox._begin(waiting) and seconds is not None:
        timer = loop.call_later(seconds, expire)
    try:
        value, error = await outcome
    except BaseException:  # cancelled: give back what it took, even if it had finished
        mailbox._withdraw(waiting)  # (done already when the cancellation came through `outcome`)
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if error is not None:
        raise error
    return cast(T, value)


class _Outcome(asyncio.Future[tuple[Any, BaseException | None]]):
    """The future a coroutine's wait resolves. Cancelling it, which is what `task.cancel()`
    does to the future its task awaits, gives the wait up at once: what it took is back in
    the mailbox when `cancel()` returns, not only at the task's next step."""

    def __init__(self, loop: asyncio.AbstractEventLoop, give_up: Callable[[], object]) -> None:
        super().__init__(loop=loop)
        self._give_up = give_up

    def cancel(self, msg: Any | None = None) -> bool:
        self._give_up()
        return super().cancel(msg)


async def wait(collector: Wait[T], timeout: Timeout, what: str, *, per_message: bool = False) -> T:
    """`_await.wait` for coroutines: the same `Wait`, the same errors, the loop free.

    A wait on a connection whose actor is gone looks only at what is already queued.
    """
    conn = collector.conn
    seconds = timeout_seconds(timeout)
    mailbox = collector.mailbox()
    try:
        return await collect(
            mailbox, collector, timeout if conn.alive else 0, per_message=per_message
        )
    except AwaitTimeout:
        error = timed_out(conn, seconds, what, per_message=per_message)
        raise error from error.__cause__

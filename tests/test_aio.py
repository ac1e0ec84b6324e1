"""gluegun_actors.aio: the await helpers as coroutines, over real sockets.

Each test runs its own event loop (`asyncio.run`) in the test's thread, so the connections'
owner is that loop thread's mailbox, as in an asyncio app.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from gluegun_actors import aio, connection, http, mailbox, websocket
from gluegun_actors.connection import Milliseconds, Protocol
from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    ConnectionDown,
    ConnectionTerminated,
    InvalidArgument,
    InvalidTimeout,
    UpgradeFailed,
    WebSocketClosed,
)
from gluegun_actors.events import GunData, GunUp, GunWs
from gluegun_actors.mailbox import Mailbox
from gluegun_actors.message import Binary, Text
from gluegun_actors.testing import EmbeddedServer, pattern_bytes

T = TypeVar("T")

RUN_LIMIT = 30.0
"""Seconds one test's event loop may run."""


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on a fresh event loop in this thread, bounded in time."""
    return asyncio.run(asyncio.wait_for(main, RUN_LIMIT))


async def opened(port: int, **options: Any) -> connection.Connection:
    conn = connection.open("127.0.0.1", port, connection.options(**options))
    assert await aio.await_up(conn) is Protocol.HTTP1
    return conn


async def upgraded(port: int, path: str = "/ws") -> tuple[connection.Connection, Any]:
    conn = await opened(port)
    stream = websocket.upgrade(conn, path)
    await aio.await_upgrade(conn, stream)
    return conn, stream


class Ticker:
    """Counts 5 ms ticks while it runs: a blocked loop shows as missing ticks."""

    def __init__(self) -> None:
        self.ticks = 0
        self.task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.005)
            self.ticks += 1

    async def __aenter__(self) -> Ticker:
        self.task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()


async def settle_callbacks() -> None:
    """Let the loop run the callbacks and task steps already scheduled."""
    for _ in range(3):
        await asyncio.sleep(0)


# -- the helpers, against the embedded server and independent peers ------------------------


def test_await_up_returns_the_protocol(embedded_server: EmbeddedServer) -> None:
    async def main() -> Protocol:
        conn = connection.open("127.0.0.1", embedded_server.port)
        try:
            return await aio.await_up(conn, Milliseconds(5000))
        finally:
            await aio.close(conn)

    assert run(main()) is Protocol.HTTP1


def test_await_response_and_await_body_read_a_streamed_body(
    embedded_server: EmbeddedServer,
) -> None:
    async def main() -> tuple[int, bytes]:
        conn = await opened(embedded_server.port)
        try:
            stream = http.get(conn, "/stream?chunks=5&size=1000&delay_ms=10")
            response = await aio.await_response(conn, stream)
            return response.status, await aio.await_body(conn, stream)
        finally:
            await aio.close(conn)

    assert run(main()) == (200, pattern_bytes(1000) * 5)


def test_await_body_and_trailers_returns_the_trailers(embedded_server: EmbeddedServer) -> None:
    async def main() -> tuple[bytes, Any]:
        conn = await opened(embedded_server.port)
        try:
            stream = http.get(conn, "/trailers", [("te", "trailers")])
            return await aio.await_body_and_trailers(conn, stream)
        finally:
            await aio.close(conn)

    assert run(main()) == (b"chunk0chunk1chunk2", (("x-checksum", "18"),))


def test_await_next_gives_each_message_of_the_stream(uvicorn_port: int) -> None:
    async def main() -> list[str]:
        conn = await opened(uvicorn_port)
        try:
            stream = http.get(conn, "/chunked?n=2")
            kinds = []
            for _ in range(10):
                message = await aio.await_next(conn, stream)
                kinds.append(type(message).__name__)
                if getattr(message, "is_fin", False):
                    break
            return kinds
        finally:
            await aio.close(conn)

    kinds = run(main())
    assert kinds[0] == "GunResponse"
    assert kinds[-1] == "GunData"
    assert set(kinds[1:]) == {"GunData"}


def test_await_body_reads_a_chunked_body_from_uvicorn(uvicorn_port: int) -> None:
    async def main() -> bytes:
        conn = await opened(uvicorn_port)
        try:
            return await aio.await_body(conn, http.get(conn, "/chunked?n=4"))
        finally:
            await aio.close(conn)

    assert run(main()) == b"chunk0chunk1chunk2chunk3"


def test_await_upgrade_and_receive_frame_echo_with_the_websockets_server(
    websockets_port: int,
) -> None:
    async def main() -> list[Any]:
        conn = await opened(websockets_port)
        try:
            stream = websocket.upgrade(conn, "/echo")
            upgrade = await aio.await_upgrade(conn, stream)
            assert upgrade.stream == stream
            websocket.send(conn, stream, [Text("one"), Binary(b"two")])
            return [await aio.receive_frame(conn, stream) for _ in range(2)]
        finally:
            await aio.close(conn)

    assert run(main()) == [Text("one"), Binary(b"two")]


def test_refused_upgrade_raises_upgrade_failed(embedded_server: EmbeddedServer) -> None:
    async def main() -> None:
        conn = await opened(embedded_server.port)
        try:
            stream = websocket.upgrade(conn, "/ws/reject?status=403")
            await aio.await_upgrade(conn, stream)
        finally:
            await aio.close(conn)

    with pytest.raises(UpgradeFailed) as failed:
        run(main())
    assert failed.value.status == 403


def test_receive_frame_before_await_upgrade_says_to_await_the_upgrade(
    embedded_server: EmbeddedServer,
) -> None:
    async def main() -> None:
        conn = await opened(embedded_server.port)
        try:
            stream = websocket.upgrade(conn, "/ws")
            await asyncio.sleep(0.2)  # the upgrade answer arrives and waits in the mailbox
            with pytest.raises(BadStateError, match="await_upgrade"):
                await aio.receive_frame(conn, stream, 1000)
            assert (await aio.await_upgrade(conn, stream, 1000)).stream == stream
        finally:
            await aio.close(conn)

    run(main())


# -- the Socket API ----------------------------------------------------------------------------


def test_connect_by_url_sends_and_receives_app_frames(embedded_server: EmbeddedServer) -> None:
    async def main() -> tuple[list[Any], bool]:
        socket = await aio.connect(embedded_server.ws_url("/ws"))
        websocket.send_text(socket, "hello")
        websocket.send_binary(socket, b"\x00\x01")
        frames = [await aio.receive_app_frame(socket, 5000) for _ in range(2)]
        await aio.disconnect(socket)
        return frames, socket.connection.alive

    frames, alive = run(main())
    assert frames == [Text("hello"), Binary(b"\x00\x01")]
    assert alive is False


def test_connect_by_host_and_port(websockets_port: int) -> None:
    async def main() -> Any:
        socket = await aio.connect(host="127.0.0.1", port=websockets_port, path="/echo")
        try:
            websocket.send_text(socket, "by host")
            return await aio.receive_app_frame(socket)
        finally:
            await aio.disconnect(socket)

    assert run(main()) == Text("by host")


def test_with_socket_returns_the_callback_result_and_closes_everything(
    websockets_port: int,
) -> None:
    seen: list[websocket.Socket] = []

    async def echo(socket: websocket.Socket) -> Any:
        seen.append(socket)
        websocket.send_text(socket, "round trip")
        return await aio.receive_app_frame(socket)

    async def main() -> Any:
        return await aio.with_socket(f"ws://127.0.0.1:{websockets_port}/", callback=echo)

    assert run(main()) == Text("round trip")
    assert not seen[0].connection.alive
    assert mailbox.current().messages() == []


def test_receive_app_frame_raises_websocket_closed_on_the_peers_close(
    websockets_port: int,
) -> None:
    async def main() -> None:
        socket = await aio.connect(f"ws://127.0.0.1:{websockets_port}/close3333")
        try:
            await aio.receive_app_frame(socket, 5000)
        finally:
            await aio.disconnect(socket)

    with pytest.raises(WebSocketClosed) as closed:
        run(main())
    assert (closed.value.code, closed.value.close_reason) == (3333, "bye")


def test_connect_to_a_closed_port_raises_and_leaves_no_connection() -> None:
    async def main() -> None:
        options = websocket.options(connection=connection.options(retry=0))
        await aio.connect("ws://127.0.0.1:9/", options=options)

    with pytest.raises(ConnectionTerminated):
        run(main())


def test_connect_refuses_a_url_with_host_and_a_non_websocket_url() -> None:
    async def main(**arguments: Any) -> None:
        await aio.connect(**arguments)

    with pytest.raises(InvalidArgument, match="not both"):
        run(main(url="ws://127.0.0.1:1/", host="127.0.0.1"))
    with pytest.raises(InvalidArgument, match="ws://"):
        run(main(url="http://127.0.0.1:1/"))


# -- many waits at once ------------------------------------------------------------------------


def test_many_coroutines_each_await_their_own_http_stream(embedded_server: EmbeddedServer) -> None:
    async def main() -> dict[int, bytes]:
        conn = await opened(embedded_server.port)
        try:
            streams = {n: http.get(conn, f"/chunked?n={n}") for n in range(1, 21)}

            async def body(n: int) -> tuple[int, bytes]:
                await asyncio.sleep(random.random() / 100)  # start in a shuffled order
                await aio.await_response(conn, streams[n])
                return n, await aio.await_body(conn, streams[n])

            order = list(streams)
            random.shuffle(order)
            return dict(await asyncio.gather(*(body(n) for n in order)))
        finally:
            await aio.close(conn)

    bodies = run(main())
    assert bodies == {n: b"".join(f"chunk{i}".encode() for i in range(n)) for n in range(1, 21)}


def test_many_sockets_echo_concurrently_each_in_order(websockets_port: int) -> None:
    async def one(tag: int) -> list[Any]:
        socket = await aio.connect(f"ws://127.0.0.1:{websockets_port}/")
        try:
            for n in range(10):
                websocket.send_text(socket, f"{tag}:{n}")
            return [await aio.receive_app_frame(socket) for _ in range(10)]
        finally:
            await aio.disconnect(socket)

    async def main() -> list[list[Any]]:
        return await asyncio.gather(*(one(tag) for tag in range(12)))

    for tag, frames in enumerate(run(main())):
        assert frames == [Text(f"{tag}:{n}") for n in range(10)]


def test_waiting_coroutines_spend_no_thread() -> None:
    box = Mailbox("many waits")

    def equal_to(n: int) -> Callable[[object], bool]:
        return lambda message: message == n

    async def main() -> tuple[int, int, list[object]]:
        before = threading.active_count()
        tasks = [asyncio.create_task(aio.receive(equal_to(n), mailbox=box)) for n in range(300)]
        await settle_callbacks()
        during = threading.active_count()
        putter = threading.Thread(target=box.put_all, args=(list(reversed(range(300))),))
        putter.start()
        got = await asyncio.gather(*tasks)
        putter.join(5)
        return before, during, got

    before, during, got = run(main())
    assert during <= before  # threads of earlier tests may still be ending; none was added
    assert got == list(range(300))
    assert len(box) == 0


# -- cancellation ------------------------------------------------------------------------------


def test_cancelling_a_wait_that_just_took_its_message_gives_it_back() -> None:
    box = Mailbox("taken then cancelled")

    async def main() -> tuple[list[object], object]:
        task = asyncio.create_task(aio.receive(str, mailbox=box))
        await settle_callbacks()  # registered
        box.put("first")  # taken by the wait at once: its outcome is set, not yet seen
        box.put("second")
        task.cancel()  # reaches the coroutine before it resumes with "first"
        queued = box.messages()  # given back by cancel() itself
        with pytest.raises(asyncio.CancelledError):
            await task
        return queued, await aio.receive(str, 1000, mailbox=box)

    queued, received = run(main())
    assert queued == ["first", "second"]
    assert received == "first"


def test_cancelling_a_wait_resolved_from_another_thread_gives_the_message_back() -> None:
    box = Mailbox("resolved elsewhere")

    async def main() -> list[object]:
        task = asyncio.create_task(aio.receive(int, mailbox=box))
        await settle_callbacks()
        putter = threading.Thread(target=box.put_all, args=([1, 2, 3],))
        putter.start()
        putter.join(5)  # the wait took 1 in the putter's thread; the loop is not told yet
        task.cancel()
        queued = box.messages()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle_callbacks()  # the late hand-over finds the wait given up: no effect
        return [*queued, "then", *box.messages()]

    assert run(main()) == [1, 2, 3, "then", 1, 2, 3]


def test_wait_for_timeout_then_receive_gets_every_frame_in_order(websockets_port: int) -> None:
    async def main() -> list[Any]:
        conn, stream = await upgraded(websockets_port, "/")
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(aio.receive_frame(conn, stream, 5000), 0.05)
            websocket.send(conn, stream, [Text(f"m{n}") for n in range(3)])
            return [await aio.receive_frame(conn, stream) for _ in range(3)]
        finally:
            await aio.close(conn)

    assert run(main()) == [Text("m0"), Text("m1"), Text("m2")]


def test_cancellations_racing_arrivals_lose_nothing_and_keep_order(
    embedded_server: EmbeddedServer,
) -> None:
    count = 200

    async def main() -> tuple[list[Any], int]:
        conn, stream = await upgraded(embedded_server.port)
        try:
            websocket.send(conn, stream, [Text(f"m{n}") for n in range(count)])
            received: list[Any] = []
            cancelled = 0
            for _ in range(20 * count):  # bounded: each round either receives or cancels
                if len(received) == count:
                    break
                task = asyncio.create_task(aio.receive_frame(conn, stream, 5000))
                for _ in range(random.randrange(3)):
                    await asyncio.sleep(0)
                if random.random() < 0.5:
                    await asyncio.sleep(random.random() / 2000)
                if task.cancel():
                    cancelled += 1
                with contextlib.suppress(asyncio.CancelledError):
                    received.append(await task)
            return received, cancelled
        finally:
            await aio.close(conn)

    received, cancelled = run(main())
    assert received == [Text(f"m{n}") for n in range(count)]
    assert cancelled > 0


def test_a_cancelled_await_body_gives_back_the_pieces_it_took(
    embedded_server: EmbeddedServer,
) -> None:
    async def main() -> tuple[int, bytes]:
        conn = await opened(embedded_server.port)
        try:
            stream = http.get(conn, "/stream?chunks=8&size=100&delay_ms=40")
            await aio.await_response(conn, stream)
            collecting = asyncio.create_task(aio.await_body(conn, stream))
            await asyncio.sleep(0.15)  # a few pieces arrive: the wait holds them
            collecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await collecting
            pieces_back = sum(isinstance(m, GunData) for m in mailbox.current().messages())
            return pieces_back, await aio.await_body(conn, stream)
        finally:
            await aio.close(conn)

    pieces_back, body = run(main())
    assert pieces_back >= 2
    assert body == pattern_bytes(100) * 8


def test_a_cancelled_collector_gives_back_its_messages_in_order() -> None:
    box = Mailbox("collector")

    class Three:
        def __init__(self) -> None:
            self.items: list[object] = []

        def offer(self, message: object) -> bool:
            if isinstance(message, int):
                self.items.append(message)
                return True
            return False

        def done(self) -> bool:
            return len(self.items) == 3

        def result(self) -> list[object]:
            return self.items

    async def main() -> tuple[list[object], list[object]]:
        task = asyncio.create_task(aio.collect(Three(), mailbox=box))
        await settle_callbacks()
        box.put_all([1, "a", 2, "b"])  # two of three taken
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        queued = box.messages()
        box.put(3)
        return queued, await aio.collect(Three(), 1000, mailbox=box)

    queued, collected = run(main())
    assert queued == [1, "a", 2, "b"]
    assert collected == [1, 2, 3]


def test_a_wait_left_pending_when_the_loop_ends_takes_nothing() -> None:
    box = Mailbox("abandoned")

    async def main() -> asyncio.Task[object]:
        task = asyncio.create_task(aio.receive(mailbox=box))
        await settle_callbacks()  # registered; asyncio.run cancels it on the way out
        return task

    assert asyncio.run(main()).cancelled()
    box.put("after")
    assert box.messages() == ["after"]


# -- timeouts ----------------------------------------------------------------------------------


def test_a_timeout_raises_await_timeout_and_the_answer_still_comes(
    embedded_server: EmbeddedServer,
) -> None:
    async def main() -> tuple[float, str, bytes]:
        conn = await opened(embedded_server.port)
        try:
            stream = http.get(conn, "/delay?ms=400")
            started = time.monotonic()
            with pytest.raises(AwaitTimeout) as timed_out:
                await aio.await_response(conn, stream, 50)
            elapsed = time.monotonic() - started
            response = await aio.await_response(conn, stream, 5000)
            assert response.status == 200
            return elapsed, str(timed_out.value), await aio.await_body(conn, stream)
        finally:
            await aio.close(conn)

    elapsed, text, body = run(main())
    assert 0.04 <= elapsed < 0.35
    assert "within 50 ms" in text
    assert body == b"delayed"


def test_await_body_timeout_counts_from_the_last_piece(embedded_server: EmbeddedServer) -> None:
    async def main() -> tuple[float, bytes]:
        conn = await opened(embedded_server.port)
        try:
            stream = http.get(conn, "/stream?chunks=6&size=10&delay_ms=100")
            started = time.monotonic()
            body = await aio.await_body(conn, stream, 400)
            return time.monotonic() - started, body
        finally:
            await aio.close(conn)

    elapsed, body = run(main())
    assert body == pattern_bytes(10) * 6
    assert elapsed > 0.4  # longer than the timeout as a whole: it bounds each piece


def test_await_body_times_out_on_silence_and_gives_the_pieces_back(
    embedded_server: EmbeddedServer,
) -> None:
    async def main() -> tuple[str, bytes]:
        conn = await opened(embedded_server.port)
        try:
            stream = http.get(conn, "/stream?chunks=3&size=10&delay_ms=300")
            with pytest.raises(AwaitTimeout) as timed_out:
                await aio.await_body(conn, stream, 100)
            return str(timed_out.value), await aio.await_body(conn, stream, 2000)
        finally:
            await aio.close(conn)

    text, body = run(main())
    assert "of silence" in text
    assert body == pattern_bytes(10) * 3


def test_a_timeout_while_connecting_says_why_as_the_blocking_wait_does() -> None:
    async def main() -> AwaitTimeout:
        conn = connection.open("127.0.0.1", 9, connection.options(retry=100, retry_timeout=50))
        try:
            with pytest.raises(AwaitTimeout) as timed_out:
                await aio.await_up(conn, 300)
            return timed_out.value
        finally:
            await aio.close(conn)

    error = run(main())
    assert isinstance(error.__cause__, ConnectionRefusedError)
    assert "it is not up" in str(error)


def test_receive_times_out_with_the_mailbox_error_and_takes_nothing() -> None:
    box = Mailbox("quiet")
    box.put("other")

    async def main() -> None:
        await aio.receive(int, 30, mailbox=box)

    with pytest.raises(AwaitTimeout, match="waited 30 ms"):
        run(main())
    assert box.messages() == ["other"]


def test_timeouts_are_milliseconds(embedded_server: EmbeddedServer) -> None:
    async def main() -> None:
        conn = await opened(embedded_server.port)
        try:
            with pytest.raises(InvalidTimeout, match="milliseconds"):
                await aio.await_response(conn, http.get(conn, "/"), 0.5)  # type: ignore[arg-type]
            with pytest.raises(AwaitTimeout, match="within 0 ms"):
                await aio.await_response(conn, http.get(conn, "/delay?ms=300"), 0)
        finally:
            await aio.close(conn)

    run(main())


# -- the connection's death --------------------------------------------------------------------


def test_a_lost_connection_ends_a_frame_wait_with_connection_down(
    embedded_server: EmbeddedServer,
) -> None:
    async def main() -> None:
        conn = await opened(embedded_server.port, retry=0)
        try:
            stream = websocket.upgrade(conn, "/ws")
            await aio.await_upgrade(conn, stream)
            waiting = asyncio.create_task(aio.receive_frame(conn, stream, connection.Infinity))
            await asyncio.sleep(0.05)
            embedded_server.kill()
            with pytest.raises(ConnectionDown):
                await asyncio.wait_for(waiting, 5)
        finally:
            await aio.close(conn)

    run(main())


def test_a_connection_that_stops_ends_await_up_with_connection_terminated() -> None:
    async def main() -> float:
        conn = connection.open("127.0.0.1", 9, connection.options(retry=0))
        started = time.monotonic()
        try:
            with pytest.raises(ConnectionTerminated):
                await aio.await_up(conn, connection.Infinity)
            return time.monotonic() - started
        finally:
            await aio.close(conn)

    assert run(main()) < 5


def test_waiting_on_a_closed_connection_raises_at_once(embedded_server: EmbeddedServer) -> None:
    async def main() -> None:
        conn = await opened(embedded_server.port)
        stream = http.get(conn, "/delay?ms=1000")
        await aio.close(conn)
        assert not conn.alive
        with pytest.raises(ConnectionTerminated):
            await aio.await_response(conn, stream, connection.Infinity)

    run(main())


# -- the event loop stays free -----------------------------------------------------------------


def test_the_loop_keeps_running_while_coroutines_wait(embedded_server: EmbeddedServer) -> None:
    async def main() -> tuple[int, list[bytes]]:
        conns = [await opened(embedded_server.port) for _ in range(3)]
        try:
            async with Ticker() as ticker:
                bodies = await asyncio.gather(
                    *(aio.await_body(c, http.get(c, "/delay?ms=300"), 2000) for c in conns)
                )
            return ticker.ticks, bodies
        finally:
            for conn in conns:
                await aio.close(conn)

    ticks, bodies = run(main())
    assert bodies == [b"delayed"] * 3
    assert ticks >= 15  # 300 ms of 5 ms ticks; a blocked loop would show almost none


# -- the mailbox: selective receive and a stream of messages -----------------------------------


def test_receive_is_selective_and_leaves_the_rest_in_order() -> None:
    box = Mailbox("selective")
    box.put_all([1, "a", 2, "b"])

    async def main() -> tuple[object, object]:
        return await aio.receive(str, 0, mailbox=box), await aio.receive(
            lambda m: m == 2, 1000, mailbox=box
        )

    assert run(main()) == ("a", 2)
    assert box.messages() == [1, "b"]


def test_messages_iterates_the_owners_messages_that_match(embedded_server: EmbeddedServer) -> None:
    async def main() -> tuple[set[int], list[object]]:
        conns = [connection.open("127.0.0.1", embedded_server.port) for _ in range(3)]
        mailbox.current().put("not a connection message")
        ups: set[int] = set()
        try:
            async for up in aio.messages(match=GunUp):
                ups.add(up.conn.id)
                if len(ups) == len(conns):
                    break
            return ups ^ {c.id for c in conns}, mailbox.current().messages()
        finally:
            for conn in conns:
                await aio.close(conn)

    difference, left = run(main())
    assert difference == set()
    assert left == ["not a connection message"]


def test_messages_of_a_dedicated_mailbox_as_reply_to(websockets_port: int) -> None:
    box = Mailbox("feed")

    async def main() -> list[str]:
        conn = await opened(websockets_port)
        try:
            stream = websocket.upgrade(conn, "/", reply_to=box)
            await aio.await_upgrade(conn, stream)
            websocket.send(conn, stream, [Text(f"n{n}") for n in range(5)])
            texts: list[str] = []
            async for message in aio.messages(box, match=GunWs):
                assert isinstance(message.frame, Text)
                texts.append(message.frame.text)
                if len(texts) == 5:
                    break
            return texts
        finally:
            await aio.close(conn)

    assert run(main()) == [f"n{n}" for n in range(5)]


def test_bad_arguments_are_refused() -> None:
    async def main(call: Callable[[], Awaitable[object]]) -> None:
        await call()

    with pytest.raises(InvalidArgument):
        aio.messages(match=42)  # type: ignore[call-overload]
    with pytest.raises(InvalidArgument):
        run(main(lambda: aio.receive(mailbox="inbox")))  # type: ignore[call-overload]
    with pytest.raises(InvalidArgument):
        run(main(lambda: aio.await_up("not a connection")))  # type: ignore[arg-type]

"""WebSocket echo: pipelined throughput and round-trip latency, gluegun_actors against peers.

Every client talks to the same echo server (picows on uvloop when it installs, else the
`websockets` asyncio server), which runs in its own process. For each message size a
client does, on one connection:

- throughput: keeps a window of messages in flight (100, capped at `--window-bytes`
  bytes, so 16 for 64 KiB) for `--seconds`, then drains it; messages per second;
- latency: `--rtt-count` single round trips (send one, wait for its echo), after a
  short warm-up; median and p99, and the CPU time the client process spent per round
  trip (all its threads, from `time.process_time`): a round trip is a chain of steps,
  so on a loaded machine its latency follows that CPU time closely.

Rounds rotate the order of the clients; each figure is the median over rounds (for
latency: the median over rounds of each round's median and p99).

Clients, each used as its documentation shows:

- `gluegun_actors`: throughput reads the owner's mailbox directly and tops the window up
  with one `websocket.send` of a list per batch of replies; latency is `websocket.send`
  plus one mailbox receive;
- `gluegun_actors/api`: `websocket.send` and `websocket.receive` (selective receive)
  one message at a time, for both measures;
- `raw wsproto`: a blocking socket and a wsproto loop in the calling thread, batching
  replies per `recv()`: the floor of what a Python client on wsproto costs;
- `websocket-client`, `websockets.sync`, `websockets asyncio`, `aiohttp`: one send
  and one receive call per message (asyncio clients on the default event loop).

Run: `python benchmarks/bench_echo.py [--quick] [--clients a,b] [--sizes 16,1024]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import socket
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import _common
from _common import HOST, Panel, Report, ServerProcess, Target, median, now, percentile

_common.ensure_importable()

SIZES: Final = (16, 1024, 64 * 1024)
MAX_MESSAGE: Final = 4 << 20
IO_TIMEOUT: Final = 5.0
"""Seconds any single receive may wait before the benchmark gives up on a client."""
WARMUP: Final = 50
"""Round trips before each measurement."""
MAX_MESSAGES: Final = 10_000_000
"""Upper bound on messages of one throughput run, besides its duration."""


class EchoMismatch(RuntimeError):
    """The echo was not what was sent."""


@dataclass(frozen=True, slots=True)
class Plan:
    sizes: tuple[int, ...]
    seconds: float
    window: int
    window_bytes: int
    rtt_count: int

    def window_for(self, size: int) -> int:
        return max(1, min(self.window, self.window_bytes // size))


@dataclass
class Measured:
    rate: float
    rtts: list[float]
    cpu: float
    """Client process CPU seconds per round trip."""


Latency = tuple[list[float], float]
"""Round-trip times, and the client process's CPU seconds per round trip."""


Result = dict[int, Measured]
Client = Callable[[int, Plan], Result]


def _check(size: int, received: int) -> None:
    if received != size:
        raise EchoMismatch(f"sent {size} bytes, the echo had {received}")


# -- generic loops over send / receive calls ------------------------------------------------


def sync_run(send: Callable[[bytes], object], recv: Callable[[], Any], plan: Plan) -> Result:
    results = {}
    for size in plan.sizes:
        payload = b"x" * size
        sync_latency(send, recv, payload, WARMUP)
        rate = sync_throughput(send, recv, payload, plan)
        results[size] = Measured(rate, *sync_latency(send, recv, payload, plan.rtt_count))
    return results


def sync_throughput(
    send: Callable[[bytes], object], recv: Callable[[], Any], payload: bytes, plan: Plan
) -> float:
    size = len(payload)
    start = now()
    deadline = start + plan.seconds
    window = plan.window_for(size)
    for _ in range(window):
        send(payload)
    sent, received = window, 0
    while received < sent:
        _check(size, len(recv()))
        received += 1
        if sent < MAX_MESSAGES and now() < deadline:
            send(payload)
            sent += 1
    return received / (now() - start)


def sync_latency(
    send: Callable[[bytes], object], recv: Callable[[], Any], payload: bytes, count: int
) -> Latency:
    rtts = []
    cpu = time.process_time()
    for _ in range(count):
        start = now()
        send(payload)
        _check(len(payload), len(recv()))
        rtts.append(now() - start)
    return rtts, (time.process_time() - cpu) / count


async def async_run(
    send: Callable[[bytes], Awaitable[object]], recv: Callable[[], Awaitable[Any]], plan: Plan
) -> Result:
    results = {}
    for size in plan.sizes:
        payload = b"x" * size
        await async_latency(send, recv, payload, WARMUP)
        rate = await async_throughput(send, recv, payload, plan)
        results[size] = Measured(rate, *await async_latency(send, recv, payload, plan.rtt_count))
    return results


async def async_throughput(
    send: Callable[[bytes], Awaitable[object]],
    recv: Callable[[], Awaitable[Any]],
    payload: bytes,
    plan: Plan,
) -> float:
    size = len(payload)
    start = now()
    deadline = start + plan.seconds
    window = plan.window_for(size)
    for _ in range(window):
        await send(payload)
    sent, received = window, 0
    while received < sent:
        _check(size, len(await recv()))
        received += 1
        if sent < MAX_MESSAGES and now() < deadline:
            await send(payload)
            sent += 1
    return received / (now() - start)


async def async_latency(
    send: Callable[[bytes], Awaitable[object]],
    recv: Callable[[], Awaitable[Any]],
    payload: bytes,
    count: int,
) -> Latency:
    rtts = []
    cpu = time.process_time()
    for _ in range(count):
        start = now()
        await send(payload)
        _check(len(payload), len(await recv()))
        rtts.append(now() - start)
    return rtts, (time.process_time() - cpu) / count


# -- gluegun_actors -------------------------------------------------------------------------


def _gluegun_open(port: int) -> tuple[Any, Any]:
    from gluegun_actors import connection, websocket

    conn = connection.open(HOST, port, connection.options(retry=0))
    protocol = connection.await_up(conn, 5000)
    options = websocket.options(max_message_size=MAX_MESSAGE)
    stream = websocket.upgrade_with_protocol(conn, protocol, "/", [], options)
    websocket.await_upgrade(conn, stream, 5000)
    return conn, stream


def _gluegun_close(conn: Any) -> None:
    from gluegun_actors import connection

    connection.close(conn)
    connection.flush(conn)


def run_gluegun(port: int, plan: Plan) -> Result:
    """Mailbox reads, and one `websocket.send` of a list per batch of replies."""
    from gluegun_actors import mailbox, websocket
    from gluegun_actors.events import GunWs
    from gluegun_actors.message import Binary

    box = mailbox.current()
    timeout = int(IO_TIMEOUT * 1000)
    conn, stream = _gluegun_open(port)

    def take(size: int, message: object) -> None:
        if type(message) is not GunWs:
            raise EchoMismatch(f"expected GunWs, got {message!r}")
        _check(size, len(message.frame.data))  # type: ignore[union-attr]

    def latency(frame: Binary, count: int) -> Latency:
        size = len(frame.data)
        rtts = []
        cpu = time.process_time()
        for _ in range(count):
            start = now()
            websocket.send(conn, stream, frame)
            take(size, box.receive(None, timeout))
            rtts.append(now() - start)
        return rtts, (time.process_time() - cpu) / count

    def throughput(frame: Binary) -> float:
        size = len(frame.data)
        start = now()
        deadline = start + plan.seconds
        window = plan.window_for(size)
        websocket.send(conn, stream, [frame] * window)
        sent, received = window, 0
        while received < sent:
            take(size, box.receive(None, timeout))
            batch = 1 + len(box)
            for _ in range(batch - 1):
                take(size, box.receive(None, 0))
            received += batch
            more = min(batch, MAX_MESSAGES - sent)
            if more > 0 and now() < deadline:
                websocket.send(conn, stream, [frame] * more)
                sent += more
        return received / (now() - start)

    try:
        results = {}
        for size in plan.sizes:
            frame = Binary(b"x" * size)
            latency(frame, WARMUP)
            rate = throughput(frame)
            results[size] = Measured(rate, *latency(frame, plan.rtt_count))
        return results
    finally:
        _gluegun_close(conn)


def run_gluegun_api(port: int, plan: Plan) -> Result:
    """`websocket.send` and `websocket.receive`, one message at a time."""
    from gluegun_actors import websocket
    from gluegun_actors.message import Binary

    timeout = int(IO_TIMEOUT * 1000)
    conn, stream = _gluegun_open(port)

    def send(payload: bytes) -> None:
        websocket.send(conn, stream, Binary(payload))

    def recv() -> bytes:
        frame = websocket.receive(conn, stream, timeout)
        if not isinstance(frame, Binary):
            raise EchoMismatch(f"expected Binary, got {frame!r}")
        return frame.data

    try:
        return sync_run(send, recv, plan)
    finally:
        _gluegun_close(conn)


# -- raw blocking socket + wsproto ----------------------------------------------------------


class RawWsproto:
    """A blocking socket driven by a wsproto client connection, in the calling thread."""

    READ_SIZE: Final = 256 * 1024

    def __init__(self, port: int) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, RejectConnection, Request

        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"{HOST}:{port}", target="/")))
        self.done: list[int] = []
        self.partial = 0
        for _ in range(100):
            self.ws.receive_data(self._read())
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"upgrade refused: {event.status_code}")
        raise ConnectionError("no upgrade answer")

    def _read(self) -> bytes:
        data = self.sock.recv(self.READ_SIZE)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def pump(self) -> None:
        """One read; complete messages' sizes land in `self.done`."""
        from wsproto.events import BytesMessage, CloseConnection, Ping

        self.ws.receive_data(self._read())
        for event in self.ws.events():
            if isinstance(event, BytesMessage):
                self.partial += len(event.data)
                if event.message_finished:
                    self.done.append(self.partial)
                    self.partial = 0
            elif isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise ConnectionError(f"the server closed the WebSocket: {event.code}")

    def encode(self, payload: bytes, count: int) -> bytes:
        from wsproto.events import Message

        return b"".join(self.ws.send(Message(data=payload)) for _ in range(count))

    def take(self, size: int) -> int:
        done = self.done
        for got in done:
            _check(size, got)
        self.done = []
        return len(done)

    def throughput(self, payload: bytes, plan: Plan) -> float:
        size = len(payload)
        start = now()
        deadline = start + plan.seconds
        window = plan.window_for(size)
        self.sock.sendall(self.encode(payload, window))
        sent, received = window, 0
        while received < sent:
            self.pump()
            batch = self.take(size)
            received += batch
            more = min(batch, MAX_MESSAGES - sent)
            if more > 0 and now() < deadline:
                self.sock.sendall(self.encode(payload, more))
                sent += more
        return received / (now() - start)

    def latency(self, payload: bytes, count: int) -> Latency:
        rtts = []
        cpu = time.process_time()
        for _ in range(count):
            start = now()
            self.sock.sendall(self.encode(payload, 1))
            while not self.done:
                self.pump()
            self.take(len(payload))
            rtts.append(now() - start)
        return rtts, (time.process_time() - cpu) / count

    def close(self) -> None:
        from wsproto.events import CloseConnection

        with contextlib.suppress(OSError):
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        self.sock.close()


def run_raw(port: int, plan: Plan) -> Result:
    client = RawWsproto(port)
    try:
        results = {}
        for size in plan.sizes:
            payload = b"x" * size
            client.latency(payload, WARMUP)
            rate = client.throughput(payload, plan)
            results[size] = Measured(rate, *client.latency(payload, plan.rtt_count))
        return results
    finally:
        client.close()


# -- third-party clients ----------------------------------------------------------------------


def run_websocket_client(port: int, plan: Plan) -> Result:
    import websocket as websocket_client

    ws = websocket_client.create_connection(
        f"ws://{HOST}:{port}/", timeout=IO_TIMEOUT, enable_multithread=False
    )
    try:
        return sync_run(ws.send_binary, ws.recv, plan)
    finally:
        ws.close()


def run_websockets_sync(port: int, plan: Plan) -> Result:
    from websockets.sync.client import connect

    with connect(f"ws://{HOST}:{port}/", compression=None, max_size=MAX_MESSAGE) as ws:
        return sync_run(ws.send, lambda: ws.recv(IO_TIMEOUT), plan)


def run_websockets_asyncio(port: int, plan: Plan) -> Result:
    from websockets.asyncio.client import connect

    async def main() -> Result:
        async with connect(f"ws://{HOST}:{port}/", compression=None, max_size=MAX_MESSAGE) as ws:

            async def recv() -> Any:
                return await asyncio.wait_for(ws.recv(), IO_TIMEOUT)

            return await async_run(ws.send, recv, plan)

    return asyncio.run(main())


def run_aiohttp(port: int, plan: Plan) -> Result:
    import aiohttp

    async def main() -> Result:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"ws://{HOST}:{port}/", max_msg_size=MAX_MESSAGE) as ws,
        ):

            async def recv() -> bytes:
                message = await ws.receive(IO_TIMEOUT)
                if message.type != aiohttp.WSMsgType.BINARY:
                    raise EchoMismatch(f"expected a binary message, got {message!r}")
                data: bytes = message.data
                return data

            return await async_run(ws.send_bytes, recv, plan)

    return asyncio.run(main())


CLIENTS: Final[dict[str, tuple[str, Client]]] = {
    "gluegun_actors": ("gluegun_actors", run_gluegun),
    "gluegun_actors/api": ("gluegun_actors", run_gluegun_api),
    "raw wsproto": ("wsproto", run_raw),
    "websocket-client": ("websocket", run_websocket_client),
    "websockets.sync": ("websockets", run_websockets_sync),
    "websockets asyncio": ("websockets", run_websockets_asyncio),
    "aiohttp": ("aiohttp", run_aiohttp),
}


def available(names: list[str]) -> tuple[list[str], list[str]]:
    """The clients whose package imports, and notes for those skipped."""
    found, notes = [], []
    for name in names:
        module = CLIENTS[name][0]
        try:
            __import__(module)
        except ImportError:
            notes.append(f"{name} skipped: `{module}` is not installed")
        else:
            found.append(name)
    return found, notes


# -- the run ----------------------------------------------------------------------------------


def measure(
    clients: list[str], plan: Plan, rounds: int, port: int
) -> tuple[dict[str, dict[int, list[Measured]]], list[str]]:
    runs: dict[str, dict[int, list[Measured]]] = {name: {} for name in clients}
    errors = []
    for round_index in range(rounds):
        for name in _common.rotated(clients, round_index):
            gc.collect()
            started = now()
            try:
                result = CLIENTS[name][1](port, plan)
            except Exception as error:
                errors.append(f"{name}, round {round_index + 1}: {error!r}")
                traceback.print_exc()
                continue
            for size, measured in result.items():
                runs[name].setdefault(size, []).append(measured)
            print(
                f"  round {round_index + 1}/{rounds} {name}: "
                + ", ".join(
                    f"{_common.fmt_size(s)} {m.rate:,.0f}/s {median(m.rtts) * 1e6:,.0f} us"
                    f" (cpu {m.cpu * 1e6:,.0f} us)"
                    for s, m in result.items()
                )
                + f" ({now() - started:.1f} s)",
                flush=True,
            )
    return runs, errors


@dataclass
class Summary:
    rate: float
    rtt_median: float
    rtt_p99: float
    cpu: float


def summarize(runs: list[Measured]) -> Summary:
    if not runs:
        return Summary(math.nan, math.nan, math.nan, math.nan)
    return Summary(
        median([run.rate for run in runs]),
        median([median(run.rtts) for run in runs]),
        median([percentile(run.rtts, 0.99) for run in runs]),
        median([run.cpu for run in runs]),
    )


def _rtt_cell(summary: Summary) -> str:
    return f"{_common.fmt_us(summary.rtt_median)} / {_common.fmt_us(summary.rtt_p99)}"


def judge(table: dict[str, dict[int, Summary]], sizes: tuple[int, ...]) -> list[Target]:
    def compare(
        text: str, peer: str, factor: float, field_name: str, lower_is_better: bool
    ) -> Target:
        ours, theirs = table.get("gluegun_actors"), table.get(peer)
        if ours is None or theirs is None:
            return Target(text, None, f"{peer if theirs is None else 'gluegun_actors'} not run")
        verdicts, details = [], []
        for size in sizes:
            mine = getattr(ours[size], field_name)
            other = getattr(theirs[size], field_name)
            if math.isnan(mine) or math.isnan(other):
                details.append(f"{_common.fmt_size(size)}: not measured")
                verdicts.append(False)
                continue
            ok = mine <= factor * other if lower_is_better else mine >= factor * other
            verdicts.append(ok)
            unit = (lambda v: f"{v * 1e6:,.0f} us") if lower_is_better else _common.fmt_rate
            details.append(
                f"{_common.fmt_size(size)} {unit(mine)} vs {unit(other)} "
                f"({mine / other:.2f}x) {'ok' if ok else 'short'}"
            )
        return Target(text, all(verdicts), "; ".join(details))

    return [
        compare("throughput >= 1.5x raw socket + wsproto", "raw wsproto", 1.5, "rate", False),
        compare("throughput >= websockets.sync", "websockets.sync", 1.0, "rate", False),
        compare(
            "round-trip median <= websocket-client", "websocket-client", 1.0, "rtt_median", True
        ),
    ]


def main() -> None:
    args = _common.parser(__doc__.split("\n", 1)[0])
    args.add_argument("--seconds", type=float, help="duration of each throughput run")
    args.add_argument("--rtt-count", type=int, help="round trips per latency run")
    args.add_argument("--window", type=int, default=100, help="messages in flight")
    args.add_argument("--window-bytes", type=int, default=1 << 20, help="bytes in flight, max")
    args.add_argument("--sizes", help="comma-separated message sizes in bytes")
    args.add_argument("--clients", help="comma-separated client names (default: all)")
    args.add_argument("--server", default="auto", help="echo server: picows or websockets")
    options = args.parse_args()
    quick = options.quick
    rounds = options.rounds or (2 if quick else 5)
    sizes = tuple(int(s) for s in options.sizes.split(",")) if options.sizes else SIZES
    plan = Plan(
        sizes=sizes,
        seconds=options.seconds or (0.25 if quick else 1.0),
        window=options.window,
        window_bytes=options.window_bytes,
        rtt_count=options.rtt_count or (200 if quick else 1000),
    )
    wanted = options.clients.split(",") if options.clients else list(CLIENTS)
    unknown = [name for name in wanted if name not in CLIENTS]
    if unknown:
        args.error(f"unknown clients {unknown}; known: {list(CLIENTS)}")
    clients, notes = available(wanted)

    report = Report("echo", "WebSocket echo: throughput and round trip", options)
    with ServerProcess("ws-echo", "--impl", options.server) as server:
        print(f"echo server: {server.description} on port {server.port}", flush=True)
        runs, errors = measure(clients, plan, rounds, server.port)
        server_name = server.description

    table = {name: {size: summarize(runs[name].get(size, [])) for size in sizes} for name in runs}
    windows = ", ".join(f"{plan.window_for(s)} for {_common.fmt_size(s)}" for s in sizes)
    report.add(
        f"Server: {server_name}, in its own process. {rounds} rounds, clients rotated; "
        f"medians over rounds. Throughput: {plan.seconds:g} s per run, window {windows}. "
        f"Latency: {plan.rtt_count} round trips per run after {WARMUP} warm-up."
    )
    sized = [_common.fmt_size(s) for s in sizes]
    report.table(
        "Throughput (messages/s, higher is better)",
        ["client", *sized],
        [[name] + [_common.fmt_rate(table[name][s].rate) for s in sizes] for name in clients],
    )
    report.table(
        "Round trip (us, median / p99, lower is better)",
        ["client", *sized],
        [[name] + [_rtt_cell(table[name][s]) for s in sizes] for name in clients],
    )
    report.table(
        "Client CPU per round trip (us, all threads of the client process, lower is better)",
        ["client", *sized],
        [[name] + [_common.fmt_us(table[name][s].cpu) for s in sizes] for name in clients],
    )
    report.targets(judge(table, sizes))
    for note in notes + [f"error: {e}" for e in errors]:
        report.add(f"- {note}")
    if not options.no_chart:
        report.add(
            _common.bar_chart(
                "echo",
                f"WebSocket echo vs {server_name}",
                [
                    Panel(
                        "Throughput",
                        "messages/s",
                        sized,
                        {n: [table[n][s].rate for s in sizes] for n in clients},
                    ),
                    Panel(
                        "Round trip, median",
                        "us (log)",
                        sized,
                        {n: [table[n][s].rtt_median * 1e6 for s in sizes] for n in clients},
                        log=True,
                    ),
                ],
            )
        )
    report.data = {
        name: {
            str(size): {
                "summary": vars(table[name][size]),
                "rates": [m.rate for m in runs[name].get(size, [])],
                "rtt_medians": [median(m.rtts) for m in runs[name].get(size, [])],
                "cpu_per_rtt": [m.cpu for m in runs[name].get(size, [])],
            }
            for size in sizes
        }
        for name in clients
    }
    report.write()
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()

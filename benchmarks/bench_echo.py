"""WebSocket echo, one call per message first: throughput, CPU and round trip against peers.

Every client talks to the same echo server (picows on uvloop when it installs, else the
`websockets` asyncio server), which runs in its own process. For each message size a
client does, on one connection:

- throughput, once per window of `--windows` (100 and 1,000 messages in flight, each
  capped at `--window-bytes` bytes, so 16 for 64 KiB: a capped window that equals the
  previous one is measured once and reported under both): for `--seconds` it keeps the
  window full, then drains it. Messages per second, and the CPU time the client process
  spent per message (all its threads, from `time.process_time`);
- latency: `--rtt-count` single round trips (send one, wait for its echo), after a
  short warm-up; median and p99, and the client process's CPU time per round trip: a
  round trip is a chain of steps, so on a loaded machine its latency follows that time.

Rounds rotate the order of the clients; each figure is the median over rounds (for
latency: the median over rounds of each round's median and p99).

Clients, each written as a user writes it. One call per message, the rows that lead:

- `gluegun_actors socket`: the Socket API, `websocket.connect`, then `send_binary` and
  `receive_app_frame` once per message;
- `gluegun_actors send+receive`: Gun's owner loop, `websocket.send(conn, stream, frame)`
  and one `mailbox.current().receive(...)` of the stream's `GunWs` per message;
- `websocket-client`, `websockets.sync`, `websockets asyncio`, `aiohttp`: one send and
  one receive call per message (asyncio clients on the default event loop).

Batched, reported below them and kept out of the targets (their round trips are one
message at a time, as above):

- `gluegun_actors batched`: one `websocket.send` of a list per batch of replies, the
  mailbox drained in batches;
- `raw wsproto batched`: a blocking socket and a wsproto loop in the calling thread,
  one `sendall` per batch and the replies of one `recv()` taken together: the floor of
  what a Python client on wsproto costs.

Run: `python benchmarks/bench_echo.py [--quick] [--clients a,b] [--sizes 16,1024]
[--windows 100,1000]`.
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, TypeVar

import _common
from _common import HOST, Panel, Report, ServerProcess, Target, median, now, percentile

_common.ensure_importable()

T = TypeVar("T")

SIZES: Final = (16, 1024, 64 * 1024)
WINDOWS: Final = (100, 1000)
MAX_MESSAGE: Final = 4 << 20
IO_TIMEOUT: Final = 5.0
"""Seconds any single receive may wait before the benchmark gives up on a client."""
WARMUP: Final = 50
"""Round trips before each size's measurements."""
MAX_MESSAGES: Final = 10_000_000
"""Upper bound on messages of one throughput run, besides its duration."""

OURS: Final = ("gluegun_actors socket", "gluegun_actors send+receive")
"""Our one-call-per-message clients: the ones the targets judge."""
THROUGHPUT_PEERS: Final = ("websockets.sync", "websocket-client")
LATENCY_PEER: Final = "websocket-client"
MOONSHOT: Final = "aiohttp"
"""Reported beside ours as a ratio, without a target."""


class EchoMismatch(RuntimeError):
    """The echo was not what was sent."""


@dataclass(frozen=True, slots=True)
class Plan:
    sizes: tuple[int, ...]
    windows: tuple[int, ...]
    seconds: float
    window_bytes: int
    rtt_count: int

    def window_for(self, size: int, window: int) -> int:
        """`window` messages of `size` bytes, capped at `window_bytes` (at least one)."""
        return max(1, min(window, self.window_bytes // size))


@dataclass(frozen=True, slots=True)
class Rate:
    """One throughput run: messages echoed, its wall time, the client process's CPU time."""

    messages: int
    seconds: float
    cpu: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else math.nan

    @property
    def cpu_per_message(self) -> float:
        return self.cpu / self.messages if self.messages else math.nan


@dataclass(frozen=True, slots=True)
class Measured:
    """One client, one size, one round."""

    rates: dict[int, Rate]
    """By window asked for (`Plan.windows`)."""
    rtts: list[float]
    cpu: float
    """Client process CPU seconds per round trip."""


Latency = tuple[list[float], float]
"""Round-trip times, and the client process's CPU seconds per round trip."""
Throughput = Callable[[bytes, int, float], int]
"""Echo a payload with `window` messages in flight for `seconds`, then drain; the count."""
LatencyRun = Callable[[bytes, int], Latency]
"""`count` single round trips of a payload."""
Result = dict[int, Measured]
Runner = Callable[[int, Plan], Result]


@dataclass(frozen=True, slots=True)
class Client:
    module: str
    """What must import for the client to run."""
    run: Runner
    batched: bool = False
    """Sends or receives more than one message per call in its throughput run."""


def _check(size: int, received: int) -> None:
    if received != size:
        raise EchoMismatch(f"sent {size} bytes, the echo had {received}")


def run_sizes(throughput: Throughput, latency: LatencyRun, plan: Plan) -> Result:
    """Every size of `plan`: a warm-up, throughput at each window, then the round trips."""
    results = {}
    for size in plan.sizes:
        payload = b"x" * size
        latency(payload, WARMUP)
        rates: dict[int, Rate] = {}
        for window in plan.windows:
            effective = plan.window_for(size, window)
            same = [rates[w] for w in rates if plan.window_for(size, w) == effective]
            rates[window] = same[0] if same else timed(throughput, payload, effective, plan)
        results[size] = Measured(rates, *latency(payload, plan.rtt_count))
    return results


def timed(throughput: Throughput, payload: bytes, window: int, plan: Plan) -> Rate:
    cpu, start = time.process_time(), now()
    messages = throughput(payload, window, plan.seconds)
    return Rate(messages, now() - start, time.process_time() - cpu)


# -- generic loops over send / receive calls, one call per message --------------------------


def sync_calls(
    send: Callable[[bytes], object], recv: Callable[[], Any]
) -> tuple[Throughput, LatencyRun]:
    """The throughput and latency runs of a client with a blocking send and receive."""

    def throughput(payload: bytes, window: int, seconds: float) -> int:
        size = len(payload)
        deadline = now() + seconds
        for _ in range(window):
            send(payload)
        sent, received = window, 0
        while received < sent:
            _check(size, len(recv()))
            received += 1
            if sent < MAX_MESSAGES and now() < deadline:
                send(payload)
                sent += 1
        return received

    return throughput, lambda payload, count: sync_latency(send, recv, payload, count)


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


def async_calls(
    runner: asyncio.Runner,
    send: Callable[[bytes], Awaitable[object]],
    recv: Callable[[], Awaitable[Any]],
) -> tuple[Throughput, LatencyRun]:
    """`sync_calls` for a client on `runner`'s event loop (each run is one `runner.run`)."""

    async def throughput(payload: bytes, window: int, seconds: float) -> int:
        size = len(payload)
        deadline = now() + seconds
        for _ in range(window):
            await send(payload)
        sent, received = window, 0
        while received < sent:
            _check(size, len(await recv()))
            received += 1
            if sent < MAX_MESSAGES and now() < deadline:
                await send(payload)
                sent += 1
        return received

    async def latency(payload: bytes, count: int) -> Latency:
        rtts = []
        cpu = time.process_time()
        for _ in range(count):
            start = now()
            await send(payload)
            _check(len(payload), len(await recv()))
            rtts.append(now() - start)
        return rtts, (time.process_time() - cpu) / count

    return (
        lambda payload, window, seconds: runner.run(throughput(payload, window, seconds)),
        lambda payload, count: runner.run(latency(payload, count)),
    )


# -- gluegun_actors -------------------------------------------------------------------------


def run_gluegun_socket(port: int, plan: Plan) -> Result:
    """The Socket API: `send_binary` and `receive_app_frame`, one call each per message."""
    from gluegun_actors import websocket
    from gluegun_actors.message import Binary

    timeout = int(IO_TIMEOUT * 1000)
    options = websocket.options(max_message_size=MAX_MESSAGE)
    with websocket.connect(f"ws://{HOST}:{port}/", options=options) as ws:

        def send(payload: bytes) -> None:
            websocket.send_binary(ws, payload)

        def recv() -> bytes:
            frame = websocket.receive_app_frame(ws, timeout)
            if not isinstance(frame, Binary):
                raise EchoMismatch(f"expected Binary, got {frame!r}")
            return frame.data

        return run_sizes(*sync_calls(send, recv), plan)


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


def _owner_calls(conn: Any, stream: Any) -> tuple[Callable[[bytes], None], Callable[[], bytes]]:
    """Gun's owner loop: `websocket.send` of one frame, one receive on the owner's mailbox."""
    from gluegun_actors import mailbox, websocket
    from gluegun_actors.events import GunWs
    from gluegun_actors.message import Binary

    inbox = mailbox.current()
    timeout = int(IO_TIMEOUT * 1000)

    def send(payload: bytes) -> None:
        websocket.send(conn, stream, Binary(payload))

    def recv() -> bytes:
        match inbox.receive(timeout=timeout):
            case GunWs(_, echoed, Binary(data)) if echoed == stream:
                return data
            case other:
                raise EchoMismatch(f"expected a GunWs Binary of {stream!r}, got {other!r}")

    return send, recv


def run_gluegun_owner(port: int, plan: Plan) -> Result:
    """`websocket.send` and a mailbox receive, one call each per message."""
    conn, stream = _gluegun_open(port)
    try:
        return run_sizes(*sync_calls(*_owner_calls(conn, stream)), plan)
    finally:
        _gluegun_close(conn)


def run_gluegun_batched(port: int, plan: Plan) -> Result:
    """Throughput: one `websocket.send` of a list per batch of replies, the mailbox drained
    in batches. Latency: one send and one mailbox receive per message, as the owner loop."""
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

    def throughput(payload: bytes, window: int, seconds: float) -> int:
        frame = Binary(payload)
        size = len(payload)
        deadline = now() + seconds
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
        return received

    send, recv = _owner_calls(conn, stream)
    try:
        return run_sizes(throughput, lambda p, n: sync_latency(send, recv, p, n), plan)
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

    def throughput(self, payload: bytes, window: int, seconds: float) -> int:
        size = len(payload)
        deadline = now() + seconds
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
        return received

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
        return run_sizes(client.throughput, client.latency, plan)
    finally:
        client.close()


# -- third-party clients ----------------------------------------------------------------------


async def _awaited(awaitable: Awaitable[T]) -> T:
    """`awaitable` as a coroutine, for `asyncio.Runner.run` (which takes coroutines only)."""
    return await awaitable


def run_websocket_client(port: int, plan: Plan) -> Result:
    import websocket as websocket_client

    ws = websocket_client.create_connection(
        f"ws://{HOST}:{port}/", timeout=IO_TIMEOUT, enable_multithread=False
    )
    try:
        return run_sizes(*sync_calls(ws.send_binary, ws.recv), plan)
    finally:
        ws.close()


def run_websockets_sync(port: int, plan: Plan) -> Result:
    from websockets.sync.client import connect

    with connect(f"ws://{HOST}:{port}/", compression=None, max_size=MAX_MESSAGE) as ws:
        return run_sizes(*sync_calls(ws.send, lambda: ws.recv(IO_TIMEOUT)), plan)


def run_websockets_asyncio(port: int, plan: Plan) -> Result:
    from websockets.asyncio.client import connect

    with asyncio.Runner() as runner:
        url = f"ws://{HOST}:{port}/"
        ws = runner.run(_awaited(connect(url, compression=None, max_size=MAX_MESSAGE)))
        try:

            async def recv() -> Any:
                return await asyncio.wait_for(ws.recv(), IO_TIMEOUT)

            return run_sizes(*async_calls(runner, ws.send, recv), plan)
        finally:
            runner.run(ws.close())


def run_aiohttp(port: int, plan: Plan) -> Result:
    import aiohttp

    async def open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()  # made on the running loop, as aiohttp asks

    with asyncio.Runner() as runner:
        session = runner.run(open_session())
        try:
            url = f"ws://{HOST}:{port}/"
            ws = runner.run(_awaited(session.ws_connect(url, max_msg_size=MAX_MESSAGE)))

            async def recv() -> bytes:
                message = await ws.receive(IO_TIMEOUT)
                if message.type != aiohttp.WSMsgType.BINARY:
                    raise EchoMismatch(f"expected a binary message, got {message!r}")
                data: bytes = message.data
                return data

            try:
                return run_sizes(*async_calls(runner, ws.send_bytes, recv), plan)
            finally:
                runner.run(ws.close())
        finally:
            runner.run(session.close())


CLIENTS: Final[dict[str, Client]] = {
    "gluegun_actors socket": Client("gluegun_actors", run_gluegun_socket),
    "gluegun_actors send+receive": Client("gluegun_actors", run_gluegun_owner),
    "gluegun_actors batched": Client("gluegun_actors", run_gluegun_batched, batched=True),
    "raw wsproto batched": Client("wsproto", run_raw, batched=True),
    "websocket-client": Client("websocket", run_websocket_client),
    "websockets.sync": Client("websockets", run_websockets_sync),
    "websockets asyncio": Client("websockets", run_websockets_asyncio),
    "aiohttp": Client("aiohttp", run_aiohttp),
}


def available(names: list[str]) -> tuple[list[str], list[str]]:
    """The clients whose package imports, and notes for those skipped."""
    found, notes = [], []
    for name in names:
        module = CLIENTS[name].module
        try:
            __import__(module)
        except ImportError:
            notes.append(f"{name} skipped: `{module}` is not installed")
        else:
            found.append(name)
    return found, notes


def in_table_order(names: Sequence[str]) -> list[str]:
    """One call per message first, then the batched rows, each group in `CLIENTS` order."""
    return sorted(names, key=lambda name: CLIENTS[name].batched)


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
                result = CLIENTS[name].run(port, plan)
            except Exception as error:
                errors.append(f"{name}, round {round_index + 1}: {error!r}")
                traceback.print_exc()
                continue
            for size, measured in result.items():
                runs[name].setdefault(size, []).append(measured)
            print(
                f"  round {round_index + 1}/{rounds} {name}: "
                + "; ".join(_progress(size, measured) for size, measured in result.items())
                + f" ({now() - started:.1f} s)",
                flush=True,
            )
    return runs, errors


def _progress(size: int, measured: Measured) -> str:
    rates = " ".join(f"w{w} {r.per_second:,.0f}/s" for w, r in measured.rates.items())
    return f"{_common.fmt_size(size)} {rates} rtt {median(measured.rtts) * 1e6:,.0f} µs"


@dataclass(frozen=True, slots=True)
class Summary:
    """Medians over rounds for one client and size."""

    rates: dict[int, float] = field(default_factory=dict)
    """Messages per second, by window."""
    cpu_per_message: dict[int, float] = field(default_factory=dict)
    """Client process CPU seconds per message of the throughput run, by window."""
    rtt_median: float = math.nan
    rtt_p99: float = math.nan
    cpu_per_rtt: float = math.nan

    def rate(self, window: int) -> float:
        return self.rates.get(window, math.nan)


def summarize(runs: list[Measured], windows: tuple[int, ...]) -> Summary:
    if not runs:
        return Summary()
    return Summary(
        {w: median([run.rates[w].per_second for run in runs]) for w in windows},
        {w: median([run.rates[w].cpu_per_message for run in runs]) for w in windows},
        median([median(run.rtts) for run in runs]),
        median([percentile(run.rtts, 0.99) for run in runs]),
        median([run.cpu for run in runs]),
    )


Table = dict[str, dict[int, Summary]]


def rate_at(window: int) -> Callable[[Summary], float]:
    """A summary's messages per second at `window`."""
    return lambda summary: summary.rate(window)


def _throughput_cell(summary: Summary, window: int) -> str:
    rate = summary.rate(window)
    if math.isnan(rate):
        return "—"
    return f"{_common.fmt_rate(rate)} ({_common.fmt_us(summary.cpu_per_message[window])} µs)"


def _rtt_cell(summary: Summary) -> str:
    if math.isnan(summary.rtt_median):
        return "—"
    return (
        f"{_common.fmt_us(summary.rtt_median)} / {_common.fmt_us(summary.rtt_p99)} "
        f"({_common.fmt_us(summary.cpu_per_rtt)} µs)"
    )


# -- targets ----------------------------------------------------------------------------------


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


@dataclass(frozen=True, slots=True)
class Comparison:
    """Ours against a peer on one measure, at every size: the verdict per size (None = not
    measured) and one detail each."""

    verdicts: dict[int, bool | None]
    details: list[str]

    def passed(self) -> bool | None:
        if any(verdict is None for verdict in self.verdicts.values()):
            return False
        return all(self.verdicts.values())


def compare(
    table: Table,
    sizes: tuple[int, ...],
    ours: str,
    peer: str,
    value: Callable[[Summary], float],
    lower_is_better: bool,
) -> Comparison | None:
    """None when either client was not run."""
    if ours not in table or peer not in table:
        return None
    unit = _us if lower_is_better else _common.fmt_rate
    verdicts: dict[int, bool | None] = {}
    details = []
    for size in sizes:
        mine, other = value(table[ours][size]), value(table[peer][size])
        if math.isnan(mine) or math.isnan(other):
            verdicts[size] = None
            details.append(f"{_common.fmt_size(size)}: not measured")
            continue
        ok = mine <= other if lower_is_better else mine >= other
        verdicts[size] = ok
        details.append(
            f"{_common.fmt_size(size)} {unit(mine)} vs {unit(other)} "
            f"({mine / other:.2f}x) {'ok' if ok else 'short'}"
        )
    return Comparison(verdicts, details)


def _not_run(table: Table, *names: str) -> str:
    return "not run: " + ", ".join(name for name in names if name not in table)


def _target(table: Table, text: str, comparison: Comparison | None, *names: str) -> Target:
    if comparison is None:
        return Target(text, None, _not_run(table, *names))
    return Target(text, comparison.passed(), "; ".join(comparison.details))


def judge(table: Table, sizes: tuple[int, ...], windows: tuple[int, ...]) -> list[Target]:
    """The per-call targets for each of `OURS`, the ranking across windows, and the ratios
    to the moonshot and of the batched rows (informational)."""

    def rtt(summary: Summary) -> float:
        return summary.rtt_median

    targets = []
    for ours in OURS:
        for window in windows:
            for peer in THROUGHPUT_PEERS:
                comparison = compare(table, sizes, ours, peer, rate_at(window), False)
                text = f"{ours}: throughput >= {peer}, window {window}"
                targets.append(_target(table, text, comparison, ours, peer))
        comparison = compare(table, sizes, ours, LATENCY_PEER, rtt, True)
        text = f"{ours}: round-trip median <= {LATENCY_PEER}"
        targets.append(_target(table, text, comparison, ours, LATENCY_PEER))
    targets.append(ranking(table, sizes, windows))
    for ours in OURS:
        targets.append(ratios(table, sizes, windows, ours, MOONSHOT, "(the moonshot)"))
    targets.append(
        ratios(
            table,
            sizes,
            windows,
            "gluegun_actors batched",
            "raw wsproto batched",
            "(both batched)",
            rtt=False,
        )
    )
    return targets


def ranking(table: Table, sizes: tuple[int, ...], windows: tuple[int, ...]) -> Target:
    """Ours against each throughput peer: the same verdict at every window, at every size."""
    text = (
        f"the ranking holds at every window: {' and '.join(OURS)} against "
        f"{' and '.join(THROUGHPUT_PEERS)}, ahead or behind the same way"
    )
    if len(windows) < 2:
        return Target(text, None, f"one window run ({windows[0]})")
    differing, missing = [], []
    for ours in OURS:
        for peer in THROUGHPUT_PEERS:
            by_window = {
                window: compare(table, sizes, ours, peer, rate_at(window), False)
                for window in windows
            }
            for size in sizes:
                verdicts = [c.verdicts[size] if c else None for c in by_window.values()]
                if None in verdicts:
                    missing.append(f"{ours} vs {peer} {_common.fmt_size(size)}")
                elif len(set(verdicts)) > 1:
                    answers = ", ".join(
                        f"{'ahead' if v else 'behind'} at {w}"
                        for w, v in zip(windows, verdicts, strict=True)
                    )
                    differing.append(f"{ours} vs {peer} {_common.fmt_size(size)}: {answers}")
    if missing:
        return Target(text, None, "not measured: " + "; ".join(missing))
    if differing:
        return Target(text, False, "; ".join(differing))
    shown = " and ".join(str(w) for w in windows)
    return Target(text, True, f"the same verdicts at windows {shown}, at every size")


def ratios(
    table: Table,
    sizes: tuple[int, ...],
    windows: tuple[int, ...],
    ours: str,
    peer: str,
    note: str,
    *,
    rtt: bool = True,
) -> Target:
    """Ours over `peer` at each size: throughput at each window (and the round-trip median)."""
    text = f"{ours} vs {peer} {note}"
    if ours not in table or peer not in table:
        return Target(text, None, _not_run(table, ours, peer), informational=True)

    def line(label: str, value: Callable[[Summary], float]) -> str:
        cells = []
        for size in sizes:
            mine, other = value(table[ours][size]), value(table[peer][size])
            ratio = "—" if math.isnan(mine) or math.isnan(other) else f"{mine / other:.2f}x"
            cells.append(f"{_common.fmt_size(size)} {ratio}")
        return f"{label} " + ", ".join(cells)

    parts = [line(f"throughput, window {w}:", rate_at(w)) for w in windows]
    if rtt:
        parts.append(line("round-trip median (lower is better):", lambda s: s.rtt_median))
    return Target(text, None, "; ".join(parts), informational=True)


# -- report -----------------------------------------------------------------------------------


def chart(
    table: Table, clients: list[str], sizes: tuple[int, ...], windows: tuple[int, ...], title: str
) -> str:
    sized = [_common.fmt_size(s) for s in sizes]
    batched = frozenset(name for name in clients if CLIENTS[name].batched)

    def panel(name: str, unit: str, value: Callable[[Summary], float], log: bool = False) -> Panel:
        series = {n: [value(table[n][s]) for s in sizes] for n in clients}
        return Panel(name, unit, sized, series, log=log, hatched=batched)

    panels = [
        panel(f"Throughput, window {w} (hatched: batched)", "messages/s", rate_at(w))
        for w in windows
    ]
    panels.append(panel("Round trip, median", "µs (log)", lambda s: s.rtt_median * 1e6, True))
    last = windows[-1]
    panels.append(
        panel(
            f"Client CPU per message, window {last}",
            "µs",
            lambda s: s.cpu_per_message.get(last, math.nan) * 1e6,
        )
    )
    return _common.bar_chart("echo", title, panels, legend_below=True)


def result_data(
    runs: dict[str, dict[int, list[Measured]]],
    table: Table,
    clients: list[str],
    plan: Plan,
    targets: list[Target],
) -> dict[str, Any]:
    """The machine-readable form of the report: every round's figures and the medians."""

    def size_data(name: str, size: int) -> dict[str, Any]:
        measured = runs[name].get(size, [])
        summary = table[name][size]
        return {
            "throughput": {
                str(window): {
                    "window": plan.window_for(size, window),
                    "messages_per_s": summary.rate(window),
                    "cpu_per_message_s": summary.cpu_per_message.get(window, math.nan),
                    "rounds": [asdict(m.rates[window]) for m in measured],
                }
                for window in plan.windows
            },
            "round_trip": {
                "median_s": summary.rtt_median,
                "p99_s": summary.rtt_p99,
                "cpu_per_rtt_s": summary.cpu_per_rtt,
                "round_medians_s": [median(m.rtts) for m in measured],
                "round_p99s_s": [percentile(m.rtts, 0.99) for m in measured],
                "round_cpu_per_rtt_s": [m.cpu for m in measured],
            },
        }

    return {
        "sizes": list(plan.sizes),
        "windows": list(plan.windows),
        "window_bytes": plan.window_bytes,
        "seconds": plan.seconds,
        "rtt_count": plan.rtt_count,
        "clients": {
            name: {
                "batched": CLIENTS[name].batched,
                "judged": name in OURS,
                "sizes": {str(size): size_data(name, size) for size in plan.sizes},
            }
            for name in clients
        },
        "targets": [
            {
                "text": target.text,
                "verdict": "INFO"
                if target.informational
                else {True: "PASS", False: "FAIL", None: "SKIP"}[target.passed],
                "detail": target.detail,
            }
            for target in targets
        ],
    }


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def main() -> None:
    args = _common.parser(__doc__.split("\n", 1)[0])
    args.add_argument("--seconds", type=float, help="duration of each throughput run")
    args.add_argument("--rtt-count", type=int, help="round trips per latency run")
    args.add_argument(
        "--windows",
        type=_ints,
        default=WINDOWS,
        help="comma-separated messages in flight, one throughput table each (default 100,1000)",
    )
    args.add_argument("--window-bytes", type=int, default=1 << 20, help="bytes in flight, max")
    args.add_argument("--sizes", type=_ints, default=SIZES, help="comma-separated sizes (bytes)")
    args.add_argument("--clients", help="comma-separated client names (default: all)")
    args.add_argument("--server", default="auto", help="echo server: picows or websockets")
    options = args.parse_args()
    quick = options.quick
    rounds = options.rounds or 3
    sizes, windows = options.sizes, options.windows
    plan = Plan(
        sizes=sizes,
        windows=windows,
        seconds=options.seconds or (0.25 if quick else 1.0),
        window_bytes=options.window_bytes,
        rtt_count=options.rtt_count or (200 if quick else 1000),
    )
    wanted = options.clients.split(",") if options.clients else list(CLIENTS)
    unknown = [name for name in wanted if name not in CLIENTS]
    if unknown:
        args.error(f"unknown clients {unknown}; known: {list(CLIENTS)}")
    clients, notes = available(wanted)

    report = Report(
        "echo", "WebSocket echo: one call per message, throughput and round trip", options
    )
    with ServerProcess("ws-echo", "--impl", options.server) as server:
        print(f"echo server: {server.description} on port {server.port}", flush=True)
        runs, errors = measure(clients, plan, rounds, server.port)
        server_name = server.description

    table = {
        name: {size: summarize(runs[name].get(size, []), windows) for size in sizes}
        for name in runs
    }
    rows = in_table_order(clients)
    sized = [_common.fmt_size(s) for s in sizes]
    report.add(
        f"Server: {server_name}, in its own process. {rounds} rounds, clients rotated; "
        f"medians over rounds. Throughput: {plan.seconds:g} s per run at each window, "
        f"then drained. Latency: {plan.rtt_count} round trips per run after {WARMUP} "
        "warm-up. CPU: the client process's CPU time (all its threads), per message of "
        "the throughput run and per round trip. Rows marked *batched* send or take several "
        "messages per call in their throughput runs; the others make one send call and one "
        "receive call per message, as users write them, and lead every table."
    )
    for window in windows:
        capped = ", ".join(f"{plan.window_for(s, window)} for {_common.fmt_size(s)}" for s in sizes)
        report.table(
            f"Throughput, window {window} ({capped}): messages/s (client CPU per message), "
            "higher is better",
            ["client", *sized],
            [[name] + [_throughput_cell(table[name][s], window) for s in sizes] for name in rows],
        )
    report.table(
        "Round trip, one message at a time: µs median / p99 (client CPU per round trip), "
        "lower is better",
        ["client", *sized],
        [[name] + [_rtt_cell(table[name][s]) for s in sizes] for name in rows],
    )
    targets = judge(table, sizes, windows)
    report.targets(targets)
    for note in notes + [f"error: {e}" for e in errors]:
        report.add(f"- {note}")
    if not options.no_chart:
        report.add(chart(table, rows, sizes, windows, f"WebSocket echo vs {server_name}"))
    report.data = result_data(runs, table, rows, plan, targets)
    report.write()
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""HTTP/1.1 request throughput: gluegun_actors (keep-alive and pipelined) against peers.

Every client sends `GET /` over one keep-alive connection to the same server in its own
process (uvicorn with httptools and uvloop by default; `--server embedded` for
`gluegun_actors.testing.EmbeddedServer`), which answers 200 with a 25-byte body. Each
client runs for `--seconds`; requests per second, and for the one-at-a-time clients
the latency of each request (median, p99). Rounds rotate the clients; figures are
medians over rounds.

Clients:

- `gluegun_actors keep-alive`: `http.get`, `http.await_response`, `http.await_body`,
  one request at a time;
- `gluegun_actors pipelined`: the same calls with `--pipeline` requests in flight
  (answers taken in order);
- `httpx`: a sync `httpx.Client`, one request at a time;
- `raw h11`: a blocking socket and an h11 client connection in the calling thread.

Run: `python benchmarks/bench_http.py [--quick] [--server uvicorn|embedded]`.
"""

from __future__ import annotations

import gc
import math
import socket
import sys
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import _common
from _common import HOST, Panel, Report, ServerProcess, Target, median, now, percentile

_common.ensure_importable()

BODY: Final = b"hello from gluegun_actors"
TIMEOUT_MS: Final = 5000
MAX_REQUESTS: Final = 10_000_000
"""Upper bound on requests of one run, besides its duration."""
WARMUP: Final = 50


class BadAnswer(RuntimeError):
    """The server's answer was not the expected 200 and body."""


def _check(status: int, body: bytes) -> None:
    if status != 200 or body != BODY:
        raise BadAnswer(f"expected 200 {BODY!r}, got {status} {body[:60]!r}")


@dataclass(frozen=True, slots=True)
class Plan:
    seconds: float
    pipeline: int


@dataclass
class Measured:
    rate: float
    latencies: list[float]


Client = Callable[[int, Plan], Measured]


def one_at_a_time(request: Callable[[], None], plan: Plan) -> Measured:
    for _ in range(WARMUP):
        request()
    latencies: list[float] = []
    start = now()
    deadline = start + plan.seconds
    while len(latencies) < MAX_REQUESTS:
        begun = now()
        request()
        ended = now()
        latencies.append(ended - begun)
        if ended >= deadline:
            break
    return Measured(len(latencies) / (now() - start), latencies)


# -- gluegun_actors -------------------------------------------------------------------------


def _gluegun_connection(port: int) -> Any:
    from gluegun_actors import connection

    conn = connection.open(HOST, port, connection.options(retry=0))
    connection.await_up(conn, TIMEOUT_MS)
    return conn


def _gluegun_finish(conn: Any, stream: Any) -> None:
    from gluegun_actors import http

    response = http.await_response(conn, stream, TIMEOUT_MS)
    body = b"" if response.is_fin else http.await_body(conn, stream, TIMEOUT_MS)
    _check(response.status, body)


def _gluegun_close(conn: Any) -> None:
    from gluegun_actors import connection

    connection.close(conn)
    connection.flush(conn)


def run_gluegun_keepalive(port: int, plan: Plan) -> Measured:
    from gluegun_actors import http

    conn = _gluegun_connection(port)
    try:
        return one_at_a_time(lambda: _gluegun_finish(conn, http.get(conn, "/")), plan)
    finally:
        _gluegun_close(conn)


def run_gluegun_pipelined(port: int, plan: Plan) -> Measured:
    from gluegun_actors import http

    conn = _gluegun_connection(port)
    try:
        for _ in range(WARMUP):
            _gluegun_finish(conn, http.get(conn, "/"))
        start = now()
        deadline = start + plan.seconds
        pending = deque(http.get(conn, "/") for _ in range(plan.pipeline))
        sent, done = plan.pipeline, 0
        while pending:
            _gluegun_finish(conn, pending.popleft())
            done += 1
            if sent < MAX_REQUESTS and now() < deadline:
                pending.append(http.get(conn, "/"))
                sent += 1
        return Measured(done / (now() - start), [])
    finally:
        _gluegun_close(conn)


# -- peers ----------------------------------------------------------------------------------


def run_httpx(port: int, plan: Plan) -> Measured:
    import httpx

    url = f"http://{HOST}:{port}/"
    with httpx.Client(timeout=TIMEOUT_MS / 1000) as client:

        def request() -> None:
            response = client.get(url)
            _check(response.status_code, response.content)

        return one_at_a_time(request, plan)


class RawH11:
    """A blocking socket driven by an h11 client connection, in the calling thread."""

    def __init__(self, port: int) -> None:
        import h11

        self.h11 = h11
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT_MS / 1000)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h11.Connection(h11.CLIENT)
        self.headers = [("host", f"{HOST}:{port}")]

    def request(self) -> None:
        h11 = self.h11
        conn = self.conn
        self.sock.sendall(
            conn.send(h11.Request(method="GET", target="/", headers=self.headers))
            + conn.send(h11.EndOfMessage())
        )
        status, body = 0, b""
        for _ in range(MAX_REQUESTS):
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection")
        conn.start_next_cycle()
        _check(status, body)

    def close(self) -> None:
        self.sock.close()


def run_raw_h11(port: int, plan: Plan) -> Measured:
    client = RawH11(port)
    try:
        return one_at_a_time(client.request, plan)
    finally:
        client.close()


CLIENTS: Final[dict[str, tuple[str, Client]]] = {
    "gluegun_actors keep-alive": ("gluegun_actors", run_gluegun_keepalive),
    "gluegun_actors pipelined": ("gluegun_actors", run_gluegun_pipelined),
    "httpx": ("httpx", run_httpx),
    "raw h11": ("h11", run_raw_h11),
}


# -- the run ----------------------------------------------------------------------------------


def measure(
    clients: list[str], plan: Plan, rounds: int, port: int
) -> tuple[dict[str, list[Measured]], list[str]]:
    runs: dict[str, list[Measured]] = {name: [] for name in clients}
    errors = []
    for round_index in range(rounds):
        for name in _common.rotated(clients, round_index):
            gc.collect()
            try:
                result = CLIENTS[name][1](port, plan)
            except Exception as error:
                errors.append(f"{name}, round {round_index + 1}: {error!r}")
                traceback.print_exc()
                continue
            runs[name].append(result)
            latency = median(result.latencies)
            print(
                f"  round {round_index + 1}/{rounds} {name}: {result.rate:,.0f} req/s"
                + ("" if math.isnan(latency) else f", {latency * 1e6:,.0f} us"),
                flush=True,
            )
    return runs, errors


def _ratio(ours: float, theirs: float) -> str:
    ratio = ours / theirs if theirs else math.nan
    return "—" if math.isnan(ratio) else f"{ratio:.2f}x"


def comparisons(table: dict[str, dict[str, float]]) -> list[Target]:
    """No target is set for HTTP; these lines state the ratios that matter."""
    lines = []
    ours = table.get("gluegun_actors keep-alive", {}).get("rate", math.nan)
    piped = table.get("gluegun_actors pipelined", {}).get("rate", math.nan)
    for peer in ("raw h11", "httpx"):
        theirs = table.get(peer, {}).get("rate", math.nan)
        lines.append(
            Target(
                f"keep-alive vs {peer} (no target set)",
                None,
                f"{_common.fmt_rate(ours)} vs {_common.fmt_rate(theirs)} req/s "
                f"({_ratio(ours, theirs)})",
                informational=True,
            )
        )
    lines.append(
        Target(
            "pipelined vs keep-alive (no target set)",
            None,
            f"{_common.fmt_rate(piped)} vs {_common.fmt_rate(ours)} req/s ({_ratio(piped, ours)})",
            informational=True,
        )
    )
    return lines


def main() -> None:
    args = _common.parser(__doc__.split("\n", 1)[0])
    args.add_argument("--seconds", type=float, help="duration of each run")
    args.add_argument("--pipeline", type=int, default=16, help="requests in flight, pipelined")
    args.add_argument("--server", default="uvicorn", help="uvicorn or embedded")
    args.add_argument("--clients", help="comma-separated client names (default: all)")
    options = args.parse_args()
    rounds = options.rounds or (2 if options.quick else 5)
    plan = Plan(
        seconds=options.seconds or (0.25 if options.quick else 1.0), pipeline=options.pipeline
    )
    wanted = options.clients.split(",") if options.clients else list(CLIENTS)
    unknown = [name for name in wanted if name not in CLIENTS]
    if unknown:
        args.error(f"unknown clients {unknown}; known: {list(CLIENTS)}")
    clients, notes = [], []
    for name in wanted:
        try:
            __import__(CLIENTS[name][0])
        except ImportError:
            notes.append(f"{name} skipped: `{CLIENTS[name][0]}` is not installed")
        else:
            clients.append(name)

    report = Report("http", "HTTP/1.1 request throughput", options)
    with ServerProcess("http", "--impl", options.server) as server:
        print(f"HTTP server: {server.description} on port {server.port}", flush=True)
        runs, errors = measure(clients, plan, rounds, server.port)
        server_name = server.description

    table = {
        name: {
            "rate": median([m.rate for m in runs[name]]),
            "latency": median([median(m.latencies) for m in runs[name] if m.latencies]),
            "p99": median([percentile(m.latencies, 0.99) for m in runs[name] if m.latencies]),
        }
        for name in clients
    }
    report.add(
        f"Server: {server_name}, in its own process. {rounds} rounds of {plan.seconds:g} s, "
        f"clients rotated; medians over rounds. Pipelined: {plan.pipeline} requests in flight."
    )
    report.table(
        "GET / (requests/s higher is better; latency in us)",
        ["client", "requests/s", "latency median", "latency p99"],
        [
            [
                name,
                _common.fmt_rate(table[name]["rate"]),
                _common.fmt_us(table[name]["latency"]),
                _common.fmt_us(table[name]["p99"]),
            ]
            for name in clients
        ],
    )
    report.targets(comparisons(table))
    for note in notes + [f"error: {e}" for e in errors]:
        report.add(f"- {note}")
    if not options.no_chart:
        report.add(
            _common.bar_chart(
                "http",
                f"HTTP/1.1 GET vs {server_name}",
                [
                    Panel(
                        "Throughput",
                        "requests/s",
                        ["GET /"],
                        {n: [table[n]["rate"]] for n in clients},
                    ),
                    Panel(
                        "Latency, median (one at a time)",
                        "us",
                        ["GET /"],
                        {n: [table[n]["latency"] * 1e6] for n in clients},
                    ),
                ],
            )
        )
    report.data = {
        "summary": table,
        "rates": {name: [m.rate for m in runs[name]] for name in clients},
    }
    report.write()
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Many idle WebSocket connections in one process: memory, threads, and what still works.

For each N (default 1,000 and 5,000; `--full` adds 10,000; `--n 200,2000` chooses),
each client runs in a fresh worker process against a fresh echo server process (so
memory figures start clean and no port is reused), and:

1. opens one connection and measures its round trip alone (`single`, 16 B messages);
2. opens N-1 more, all at once, and waits until every one is up and upgraded
   (`connect+upgrade`, bounded by `--time-limit`; what completed is reported);
3. reads RSS and the thread count: RSS per connection is the growth over step 1,
   divided by the connections added;
4. measures the round trip of the first connection again, with all N open;
5. sends one message on every connection, then waits for every echo (`echo all`), and
   reads RSS again: what a connection costs once it has carried traffic;
6. closes every connection (`close all`);
7. `own waiters`: min(N, 1,000) owners each open a connection of their own (a thread
   each for gluegun_actors, a task each for websockets), wait until all are up, then make
   5 round trips each at once: the time until the last owner is done, and the median
   round trip.

Clients: `gluegun_actors` (open all, `pykka.get_all` over `connection.await_up_future`
then over `websocket.await_upgrade_future`, echoes read from the owner mailbox, closes
with `connection.close`, which returns once the actor is gone) and `websockets
asyncio` (`asyncio.gather` of `connect`, `close()` with its closing handshake, all
concurrently; default event loop). Keepalive pings are off for both. Rounds rotate the
clients; figures are medians over rounds.

Run: `python benchmarks/bench_many.py [--quick] [--full] [--n 1000,5000]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, Final

import _common
from _common import HOST, Panel, Report, ServerProcess, Target, median, now, percentile

_common.ensure_importable()

PAYLOAD: Final = b"x" * 16
FD_MARGIN: Final = 1000
"""Open files kept free besides one per connection."""
WORKER_SLACK: Final = 120.0
"""Seconds a worker may run past three of its phase bounds before it is killed."""
CLIENTS: Final = ("gluegun_actors", "websockets asyncio")
WARMUP: Final = 200
OWNERS: Final = 1000
"""At most this many owners in the `own waiters` phase (a thread each for gluegun_actors)."""
OWNER_ECHOES: Final = 5
"""Round trips on the first connection before its single-connection figure."""
ERRORS_KEPT: Final = 3
"""Failures described per run (the rest are only counted)."""


def _phase_deadline(limit: float) -> float:
    return now() + limit


# -- gluegun_actors worker ------------------------------------------------------------------


def _wait_all(futures: list[Any], deadline: float, errors: list[str]) -> tuple[dict[int, Any], int]:
    """The values of the futures that resolved by `deadline`, by index; how many failed.

    The first failures are described in `errors`.
    """
    import pykka

    done: dict[int, Any] = {}
    failed = 0
    for index, future in enumerate(futures):
        try:
            done[index] = future.get(timeout=max(0.0, deadline - now()))
        except pykka.Timeout:
            continue
        except Exception as error:
            failed += 1
            if len(errors) < ERRORS_KEPT:
                errors.append(repr(error))
    for index, future in enumerate(futures):
        if index not in done:
            future.cancel()
    return done, failed


def worker_gluegun(port: int, n: int, rtt_count: int, limit: float) -> dict[str, Any]:
    from gluegun_actors import connection, mailbox, websocket
    from gluegun_actors.events import GunWs
    from gluegun_actors.message import Binary

    box = mailbox.current()
    frame = Binary(PAYLOAD)
    options = connection.options(retry=0)
    ws_options = websocket.options()

    def open_one() -> tuple[Any, Any]:
        conn = connection.open(HOST, port, options)
        protocol = connection.await_up(conn, 10_000)
        stream = websocket.upgrade_with_protocol(conn, protocol, "/", [], ws_options)
        websocket.await_upgrade(conn, stream, 10_000)
        return conn, stream

    def round_trips(conn: Any, stream: Any, count: int) -> list[float]:
        rtts = []
        for _ in range(count):
            start = now()
            websocket.send(conn, stream, frame)
            websocket.receive(conn, stream, 10_000)
            rtts.append(now() - start)
        return rtts

    result: dict[str, Any] = {"errors": []}
    first, first_stream = open_one()
    round_trips(first, first_stream, WARMUP)
    result["rtt_single"] = round_trips(first, first_stream, rtt_count)
    gc.collect()
    result["rss_before"], result["threads_before"] = _common.rss_kib(), _common.thread_count()

    start = now()
    deadline = _phase_deadline(limit)
    conns = [connection.open(HOST, port, options) for _ in range(n - 1)]
    protocols, failed_up = _wait_all(
        [connection.await_up_future(c) for c in conns], deadline, result["errors"]
    )
    up = [conns[i] for i in protocols]
    streams = [
        websocket.upgrade_with_protocol(conns[i], protocol, "/", [], ws_options)
        for i, protocol in protocols.items()
    ]
    futures = [websocket.await_upgrade_future(c, s) for c, s in zip(up, streams, strict=True)]
    ok_index, failed_upgrade = _wait_all(futures, deadline, result["errors"])
    pairs = [(up[i], streams[i]) for i in ok_index]
    result["connect_time"] = now() - start
    result["opened"] = len(pairs) + 1
    result["failed"] = failed_up + failed_upgrade
    result["timed_out"] = len(conns) - len(pairs) - result["failed"]
    gc.collect()
    result["rss_after"], result["threads_after"] = _common.rss_kib(), _common.thread_count()

    result["rtt_open"] = round_trips(first, first_stream, rtt_count)

    everyone = [(first, first_stream), *pairs]
    start = now()
    deadline = _phase_deadline(limit)
    for conn, stream in everyone:
        websocket.send(conn, stream, frame)
    echoed = 0
    while echoed < len(everyone):
        remaining = int((deadline - now()) * 1000)
        if remaining <= 0:
            break
        try:
            message = box.receive(None, remaining)
        except Exception:
            break
        if type(message) is GunWs:
            echoed += 1
    result["echo_time"], result["echoed"] = now() - start, echoed
    gc.collect()
    result["rss_echoed"] = _common.rss_kib()

    start = now()
    deadline = _phase_deadline(limit)
    closed = 0
    for conn, _ in everyone:
        if now() > deadline:
            break
        connection.close(conn)
        closed += 1
    result["close_time"], result["closed"] = now() - start, closed
    upgraded = {id(conn) for conn, _ in pairs}
    for conn in conns:
        if id(conn) not in upgraded:
            connection.close(conn)  # those that never came up, untimed

    owners = min(n, OWNERS)
    ready = threading.Barrier(owners + 1, timeout=limit)
    rtts: list[float] = []
    ends: list[float] = []

    def owner() -> None:
        try:
            conn, stream = open_one()
        except Exception as error:
            result["errors"].append(repr(error))
            ready.abort()
            return
        try:
            ready.wait()
            rtts.extend(round_trips(conn, stream, OWNER_ECHOES))
            ends.append(now())
        except Exception as error:
            result["errors"].append(repr(error))
        finally:
            connection.close(conn)

    threads = [threading.Thread(target=owner, daemon=True) for _ in range(owners)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()
    start = now()
    deadline = _phase_deadline(limit)
    for thread in threads:
        thread.join(max(0.0, deadline - now()))
    result["owners"], result["owners_done"] = owners, len(ends)
    result["owners_time"] = (max(ends) - start) if ends else math.nan
    result["owners_rtt"] = rtts
    return result


# -- websockets asyncio worker --------------------------------------------------------------


def worker_websockets(port: int, n: int, rtt_count: int, limit: float) -> dict[str, Any]:
    from websockets.asyncio.client import ClientConnection, connect

    url = f"ws://{HOST}:{port}/"

    def open_one() -> Any:
        return connect(url, compression=None, ping_interval=None, open_timeout=limit)

    async def round_trips(ws: ClientConnection, count: int) -> list[float]:
        rtts = []
        for _ in range(count):
            start = now()
            await ws.send(PAYLOAD)
            await asyncio.wait_for(ws.recv(), 10.0)
            rtts.append(now() - start)
        return rtts

    async def main() -> dict[str, Any]:
        result: dict[str, Any] = {"errors": []}
        first = await open_one()
        await round_trips(first, WARMUP)
        result["rtt_single"] = await round_trips(first, rtt_count)
        gc.collect()
        result["rss_before"], result["threads_before"] = _common.rss_kib(), _common.thread_count()

        start = now()
        tasks = [asyncio.ensure_future(open_one()) for _ in range(n - 1)]
        done, pending = await asyncio.wait(tasks, timeout=limit)
        for task in pending:
            task.cancel()
        opened = [t.result() for t in done if t.exception() is None]
        failures = [t.exception() for t in done if t.exception() is not None]
        result["errors"] = [repr(e) for e in failures[:ERRORS_KEPT]]
        result["connect_time"] = now() - start
        result["opened"] = len(opened) + 1
        result["failed"] = len(done) - len(opened)
        result["timed_out"] = len(pending)
        gc.collect()
        result["rss_after"], result["threads_after"] = _common.rss_kib(), _common.thread_count()

        result["rtt_open"] = await round_trips(first, rtt_count)

        everyone = [first, *opened]
        start = now()
        for ws in everyone:
            await ws.send(PAYLOAD)
        receives = [asyncio.ensure_future(ws.recv()) for ws in everyone]
        got, late = await asyncio.wait(receives, timeout=limit)
        for task in late:
            task.cancel()
        result["echo_time"], result["echoed"] = now() - start, len(got)
        gc.collect()
        result["rss_echoed"] = _common.rss_kib()

        start = now()
        closes = [asyncio.ensure_future(ws.close()) for ws in everyone]
        finished, unfinished = await asyncio.wait(closes, timeout=limit)
        result["close_time"], result["closed"] = now() - start, len(finished)
        for task in unfinished:
            task.cancel()

        owners = min(n, OWNERS)
        connected: list[ClientConnection] = []
        all_up, go = asyncio.Event(), asyncio.Event()
        rtts: list[float] = []
        ends: list[float] = []

        async def owner() -> None:
            async with open_one() as ws:
                connected.append(ws)
                if len(connected) == owners:
                    all_up.set()
                await go.wait()
                rtts.extend(await round_trips(ws, OWNER_ECHOES))
                ends.append(now())

        tasks = [asyncio.ensure_future(owner()) for _ in range(owners)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_up.wait(), limit)
        go.set()
        start = now()
        _, late = await asyncio.wait(tasks, timeout=limit)
        for task in late:
            task.cancel()
        result["owners"], result["owners_done"] = owners, len(ends)
        result["owners_time"] = (max(ends) - start) if ends else math.nan
        result["owners_rtt"] = rtts
        return result

    return asyncio.run(main())


WORKERS: Final[dict[str, Callable[[int, int, int, float], dict[str, Any]]]] = {
    "gluegun_actors": worker_gluegun,
    "websockets asyncio": worker_websockets,
}


def run_worker(client: str, port: int, n: int) -> None:
    """The worker side: measure, print one JSON line, and leave at once."""
    _common.raise_nofile(n + FD_MARGIN)
    args = json.loads(os.environ["BENCH_MANY_ARGS"])
    result = WORKERS[client](port, n, args["rtt_count"], args["limit"])
    print(json.dumps(result), flush=True)
    os._exit(0)  # what a thread or a loop left behind must not delay the next run


# -- the parent -----------------------------------------------------------------------------


def spawn(client: str, n: int, rtt_count: int, limit: float) -> dict[str, Any]:
    with ServerProcess("ws-echo") as server:
        env = {
            **os.environ,
            "BENCH_MANY_ARGS": json.dumps({"rtt_count": rtt_count, "limit": limit}),
        }
        command = [sys.executable, __file__, "--worker", client, "--port", str(server.port)]
        completed = subprocess.run(
            [*command, "--n", str(n)],
            capture_output=True,
            text=True,
            timeout=3 * limit + WORKER_SLACK,
            env=env,
            check=False,
        )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = completed.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"worker exited {completed.returncode}: {' / '.join(tail)}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["server"] = server.description
    return result


def derive(run: dict[str, Any], n: int) -> dict[str, float]:
    added = run["opened"] - 1
    single = median(run["rtt_single"])
    growth = run["rss_after"] - run["rss_before"]
    echoed_growth = run["rss_echoed"] - run["rss_before"]
    return {
        "opened": run["opened"],
        "failed": run["failed"],
        "timed_out": run["timed_out"],
        "threads": run["threads_after"],
        "rss_per_conn_kib": growth / added if added > 0 else math.nan,
        "rss_echoed_per_conn_kib": echoed_growth / added if added > 0 else math.nan,
        "connect_time": run["connect_time"] if run["opened"] == n else math.nan,
        "connect_time_raw": run["connect_time"],
        "rtt_single": single,
        "rtt_open": median(run["rtt_open"]),
        "rtt_open_p99": percentile(run["rtt_open"], 0.99),
        "echo_time": run["echo_time"] if run["echoed"] == run["opened"] else math.nan,
        "echoed": run["echoed"],
        "close_time": run["close_time"] if run["closed"] == run["opened"] else math.nan,
        "closed": run["closed"],
        "owners": run["owners"],
        "owners_time": run["owners_time"] if run["owners_done"] == run["owners"] else math.nan,
        "owners_rtt": median(run["owners_rtt"]) if run["owners_rtt"] else math.nan,
    }


def _open_cell(summary: dict[str, float]) -> str:
    cell = f"{summary['opened']:,.0f}"
    missing = [
        f"{summary[key]:,.0f} {label}"
        for key, label in (("failed", "failed"), ("timed_out", "timed out"))
        if summary[key]
    ]
    return cell + (f" ({', '.join(missing)})" if missing else "")


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    if not runs:
        return {}
    return {key: median([run[key] for run in runs]) for key in runs[0]}


def judge(table: dict[int, dict[str, dict[str, float]]]) -> list[Target]:
    def at(n_wanted: int) -> tuple[int | None, str]:
        if n_wanted in table:
            return n_wanted, ""
        if not table:
            return None, ""
        largest = max(table)
        return largest, f" (measured at N={largest:,}; N={n_wanted:,} not run: use --full)"

    targets = []
    n, note = at(10_000)
    ours = table.get(n, {}).get("gluegun_actors", {}) if n else {}
    theirs = table.get(n, {}).get("websockets asyncio", {}) if n else {}
    if ours:
        idle, used = ours["rss_per_conn_kib"], ours["rss_echoed_per_conn_kib"]
        complete = ours["opened"] == n
        targets.append(
            Target(
                "10,000 connections at <= 16 KiB RSS each",
                complete and max(idle, used) <= 16,
                f"{idle:,.1f} KiB per connection when up, {used:,.1f} after an echo, "
                f"{ours['opened']:,.0f} of {n:,} open{note}",
            )
        )
        echo, peer = ours["echo_time"], theirs.get("echo_time", math.nan)
        targets.append(
            Target(
                "echo on all connections within 2x websockets asyncio's time",
                None if math.isnan(peer) else (not math.isnan(echo) and echo <= 2 * peer),
                f"{_common.fmt_s(echo)} s vs {_common.fmt_s(peer)} s{note}",
            )
        )
        single, opened = ours["rtt_single"], ours["rtt_open"]
        targets.append(
            Target(
                "round trip with all open <= 2x the single-connection figure",
                opened <= 2 * single,
                f"{_common.fmt_us(opened)} us vs 2 x {_common.fmt_us(single)} us{note}",
            )
        )
    else:
        targets.append(Target("10,000 connections targets", None, "gluegun_actors not run"))
    small = table.get(1000, {})
    ours_time = small.get("gluegun_actors", {}).get("connect_time", math.nan)
    peer_time = small.get("websockets asyncio", {}).get("connect_time", math.nan)
    if small:
        targets.append(
            Target(
                "connect+upgrade of 1,000 no slower than websockets asyncio",
                None if math.isnan(peer_time) else ours_time <= peer_time,
                f"{_common.fmt_s(ours_time)} s vs {_common.fmt_s(peer_time)} s",
            )
        )
    else:
        targets.append(Target("connect+upgrade of 1,000", None, "N=1,000 not run"))
    return targets


def main() -> None:
    args = _common.parser(__doc__.split("\n", 1)[0])
    args.add_argument("--full", action="store_true", help="also N=10,000")
    args.add_argument("--n", help="comma-separated connection counts (overrides the default)")
    args.add_argument("--rtt-count", type=int, help="round trips per latency measure")
    args.add_argument("--time-limit", type=float, help="seconds each phase may take")
    args.add_argument("--clients", help="comma-separated client names (default: both)")
    args.add_argument("--worker", help=argparse_hidden())
    args.add_argument("--port", type=int, help=argparse_hidden())
    options = args.parse_args()
    if options.worker:
        run_worker(options.worker, options.port, int(options.n))
        return
    if options.n:
        counts = [int(n) for n in options.n.split(",")]
    elif options.quick:
        counts = [1000]
    else:
        counts = [1000, 5000, 10_000] if options.full else [1000, 5000]
    rounds = options.rounds or (1 if options.quick else 3)
    rtt_count = options.rtt_count or (100 if options.quick else 500)
    limit = options.time_limit or (40.0 if options.quick else 300.0)
    clients = options.clients.split(",") if options.clients else list(CLIENTS)
    unknown = [c for c in clients if c not in WORKERS]
    if unknown:
        args.error(f"unknown clients {unknown}; known: {list(WORKERS)}")
    try:
        import websockets  # noqa: F401
    except ImportError:
        clients = [c for c in clients if c != "websockets asyncio"]

    report = Report("many", "Many idle WebSocket connections in one process", options)
    runs: dict[int, dict[str, list[dict[str, float]]]] = {}
    raw: dict[str, list[dict[str, Any]]] = {}
    errors = []
    failures: list[str] = []
    server_name = ""
    for n in counts:
        runs[n] = {client: [] for client in clients}
        for round_index in range(rounds):
            for client in _common.rotated(clients, round_index):
                started = now()
                try:
                    run = spawn(client, n, rtt_count, limit)
                except Exception as error:
                    errors.append(f"N={n} {client} round {round_index + 1}: {error}")
                    print(f"  error: {errors[-1]}", flush=True)
                    continue
                server_name = run.pop("server")
                derived = derive(run, n)
                runs[n][client].append(derived)
                raw.setdefault(f"{n} {client}", []).append(run)
                if run["errors"]:
                    failures.append(
                        f"N={n:,} {client} round {round_index + 1}: {derived['failed']:,} "
                        f"failed, e.g. {'; '.join(run['errors'])}"
                    )
                print(
                    f"  N={n:,} round {round_index + 1}/{rounds} {client}: "
                    f"{_open_cell(derived)} open, {derived['rss_per_conn_kib']:.1f} KiB/conn, "
                    f"connect {derived['connect_time_raw']:.2f} s, "
                    f"echo all {run['echo_time']:.2f} s ({run['echoed']:,}), "
                    f"close {run['close_time']:.2f} s, "
                    f"{run['owners_done']:,}/{run['owners']:,} own waiters "
                    f"{run['owners_time']:.2f} s ({now() - started:.0f} s)",
                    flush=True,
                )

    table = {n: {c: summarize(runs[n][c]) for c in clients if runs[n][c]} for n in counts}
    report.add(
        f"Server: {server_name}, a fresh process per run. {rounds} round(s), clients rotated, "
        f"medians over rounds; round trips: {rtt_count} of 16 B; each phase bounded by "
        f"{limit:g} s (a phase that did not finish for all shows —)."
    )
    header = [
        "client",
        "open",
        "threads",
        "RSS/conn KiB (after echo)",
        "connect+upgrade s",
        "rtt single us",
        "rtt all open us (p99)",
        "echo all s",
        "close all s",
        "own waiters s (rtt us)",
    ]
    for n in counts:
        rows = []
        for client, s in table[n].items():
            rows.append(
                [
                    client,
                    _open_cell(s),
                    f"{s['threads']:,.0f}",
                    f"{s['rss_per_conn_kib']:,.1f} ({s['rss_echoed_per_conn_kib']:,.1f})",
                    _common.fmt_s(s["connect_time"]),
                    _common.fmt_us(s["rtt_single"]),
                    f"{_common.fmt_us(s['rtt_open'])} ({_common.fmt_us(s['rtt_open_p99'])})",
                    _common.fmt_s(s["echo_time"]),
                    _common.fmt_s(s["close_time"]),
                    f"{_common.fmt_s(s['owners_time'])} ({_common.fmt_us(s['owners_rtt'])})",
                ]
            )
        report.table(f"N = {n:,}", header, rows)
    report.targets(judge(table))
    for line in failures:
        report.add(f"- {line}")
    for message in errors:
        report.add(f"- error: {message}")
    if not options.no_chart:
        categories = [f"N={n:,}" for n in counts]

        def series(key: str, scale: float = 1.0) -> dict[str, list[float]]:
            return {
                c: [table[n].get(c, {}).get(key, math.nan) * scale for n in counts] for c in clients
            }

        report.add(
            _common.bar_chart(
                "many",
                f"Many idle WebSocket connections (server: {server_name})",
                [
                    Panel("RSS per connection", "KiB", categories, series("rss_per_conn_kib")),
                    Panel("Connect + upgrade all", "s", categories, series("connect_time")),
                    Panel("Echo on every connection", "s", categories, series("echo_time")),
                    Panel("Close all", "s", categories, series("close_time")),
                    Panel("Round trip, single", "us", categories, series("rtt_single", 1e6)),
                    Panel("Round trip, all open", "us", categories, series("rtt_open", 1e6)),
                ],
            )
        )
    report.data = {"summary": {str(n): table[n] for n in counts}, "runs": raw}
    report.write()
    if errors:
        sys.exit(1)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()

"""Soak: a fleet under a manager, its server killed and restarted, nothing lost.

    python benchmarks/soak.py --connections 1000 --minutes 10

N WebSocket connections are opened through `gluegun_actors.manager` (its defaults:
jittered reconnects, re-upgrade after each reconnect) to `soak_server.py` in its own
process, which streams numbered messages on each connection (`--rate` per second). For
M minutes (fractions accepted) the server is stopped at random intervals (`--interval`,
5-30 s) and started again at once, alternating a clean stop (SIGTERM: close 1001) with
SIGKILL. The calling thread is the owner: it reads every message from its mailbox, one
`receive` per message, as an application does.

The table has a row per window: from one (re)start of the server to the next; the last,
"end", is the final clean stop and the manager's own shutdown.

Sent, received, lost. A message counts as sent once the client's TCP acknowledged all
of it (the server tracks this with `SIOCOUTQ`, see soak_server.py), or once a later
message of the same connection arrived (TCP delivers in order). Received counts each
message the owner got once; lost = sent - received; duplicated counts a message the
owner got again. Reconnect time runs from the server being ready again to the
connection's fresh `GunUpgrade`. Threads and descriptors are counted before the
manager starts and after it stops.

It prints a table per restart and ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import percentile, rss_kib

from gluegun_actors import mailbox, manager
from gluegun_actors.errors import AwaitTimeout
from gluegun_actors.events import Down, GunDown, GunError, GunUp, GunUpgrade, GunWs, Restarted
from gluegun_actors.message import Text

HERE = Path(__file__).resolve().parent
SERVER = HERE / "soak_server.py"
SETTLE_S = 10.0
"""Seconds allowed for the fleet to come back (or threads to end) before giving up."""


@dataclass
class Window:
    """What the owner saw between one restart and the next."""

    how: str
    ready_at: float
    counts: Counter[str] = field(default_factory=Counter)
    reconnect_ms: list[float] = field(default_factory=list)
    upgraded: set[Any] = field(default_factory=set)


@dataclass
class Session:
    """One server-side connection's stream, as the owner received it."""

    next: int = 0
    received: int = 0
    duplicated: int = 0


class Server:
    def __init__(self, rate: float, status_dir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.rate = rate
        self.status_dir = status_dir
        self.process: subprocess.Popen[str] | None = None
        self.generation = 0

    def start(self) -> float:
        self.generation += 1
        status = self.status_dir / f"gen{self.generation}.json"
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(SERVER),
                str(self.port),
                str(status),
                str(self.rate),
                f"g{self.generation}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the soak server did not start")
        return time.monotonic()

    def stop(self, how: signal.Signals) -> None:
        assert self.process is not None and self.process.stdout is not None
        self.process.send_signal(how)
        self.process.wait(60)
        self.process.stdout.close()
        self.process = None

    def acknowledged(self) -> dict[str, int]:
        acked: dict[str, int] = {}
        for path in self.status_dir.glob("gen*.json"):
            acked.update(json.loads(path.read_text()))
        return acked


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _percentile(values: list[float], fraction: float) -> float:
    return percentile(values, fraction) if values else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    owner = mailbox.current()
    sessions: dict[str, Session] = {}
    errors: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        server = Server(args.rate, Path(tmp))
        windows = [Window("start", server.start())]
        threads0, fds0, rss0 = threading.active_count(), _fds(), rss_kib() / 1024
        mgr = manager.start(owner=owner)
        url = f"ws://127.0.0.1:{server.port}/"
        for key in range(args.connections):
            manager.open(mgr, key, url=url)

        def take(message: object) -> None:
            window = windows[-1]
            match message:
                case GunWs(frame=Text(text)):
                    name, _, number = text.rpartition(":")
                    session = sessions.setdefault(name, Session())
                    n = int(number)
                    if n < session.next:
                        session.duplicated += 1
                    else:
                        session.received += 1
                        session.next = n + 1
                case GunWs():
                    pass  # close frames
                case GunUpgrade(conn=conn):
                    window.counts["GunUpgrade"] += 1
                    if conn not in window.upgraded:
                        window.upgraded.add(conn)
                        window.reconnect_ms.append((time.monotonic() - window.ready_at) * 1000)
                case GunUp() | GunDown() | Restarted() | Down():
                    window.counts[type(message).__name__] += 1
                case GunError(reason=reason):
                    errors[type(reason).__name__] += 1

        def pump(until: float) -> None:
            while (left := until - time.monotonic()) > 0:
                try:
                    take(owner.receive(timeout=max(1, int(left * 1000))))
                except AwaitTimeout:
                    return

        def settle() -> bool:
            """Pump until every connection of this window is upgraded (bounded)."""
            deadline = time.monotonic() + SETTLE_S * 3
            while len(windows[-1].upgraded) < args.connections and time.monotonic() < deadline:
                pump(min(deadline, time.monotonic() + 0.1))
            return len(windows[-1].upgraded) >= args.connections

        started = time.monotonic()
        end = started + args.minutes * 60
        settle()
        restarts = 0
        while time.monotonic() < end and (args.restarts is None or restarts < args.restarts):
            pump(min(end, time.monotonic() + rng.uniform(*args.interval)))
            if time.monotonic() >= end:
                break
            how = signal.SIGTERM if restarts % 2 == 0 else signal.SIGKILL
            server.stop(how)
            windows.append(Window(how.name, server.start()))
            restarts += 1
            settle()
        # The end: a clean stop, so every message written is accounted for.
        restarted = len(windows) - 1
        windows.append(Window("end", time.monotonic()))
        server.stop(signal.SIGTERM)
        pump(time.monotonic() + 1.0)
        manager.stop(mgr)
        pump(time.monotonic() + 0.2)
        owner.flush()
        deadline = time.monotonic() + SETTLE_S
        while (
            threading.active_count() > threads0 or _fds() > fds0
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        threads1, fds1, rss1 = threading.active_count(), _fds(), rss_kib() / 1024
        acked = server.acknowledged()

    sent = received = duplicated = 0
    acked_total = sum(acked.values())
    for name in set(acked) | set(sessions):
        session = sessions.get(name, Session())
        sent += max(acked.get(name, 0), session.next)
        received += session.received
        duplicated += session.duplicated
    reconnects = [ms for w in windows[1:-1] for ms in w.reconnect_ms]
    return {
        "windows": windows,
        "errors": dict(errors),
        "summary": {
            "connections": args.connections,
            "minutes": args.minutes,
            "restarts": restarted,
            "sent": sent,
            "acknowledged": acked_total,
            "received": received,
            "lost": sent - received,
            "duplicated": duplicated,
            "reconnect_p50_ms": round(_percentile(reconnects, 0.5), 1),
            "reconnect_p99_ms": round(_percentile(reconnects, 0.99), 1),
            "reconnect_max_ms": round(max(reconnects, default=0.0), 1),
            "reconnected": len(reconnects),
            "threads_before": threads0,
            "threads_after": threads1,
            "threads_leaked": max(0, threads1 - threads0),
            "fds_before": fds0,
            "fds_after": fds1,
            "fds_leaked": max(0, fds1 - fds0),
            "rss_before_mib": round(rss0, 1),
            "rss_after_mib": round(rss1, 1),
        },
    }


def report(result: dict[str, Any]) -> None:
    summary = result["summary"]
    print(f"# soak: {summary['connections']} connections, {summary['minutes']} min\n")
    print("| window | stop | GunDown | GunUp | GunUpgrade | Restarted | Down | reconnect ms |")
    print("|---|---|---|---|---|---|---|---|")
    for number, window in enumerate(result["windows"]):
        c = window.counts
        times = window.reconnect_ms
        spread = "-"
        if times and window.how in ("SIGTERM", "SIGKILL"):
            p50, p99 = _percentile(times, 0.5), _percentile(times, 0.99)
            spread = f"p50 {p50:.0f}, p99 {p99:.0f}, max {max(times):.0f}"
        print(
            f"| {number} | {window.how} | {c['GunDown']} | {c['GunUp']} | {c['GunUpgrade']} | "
            f"{c['Restarted']} | {c['Down']} | {spread} |"
        )
    print()
    print(
        f"sent {summary['sent']}, received {summary['received']}, lost {summary['lost']}, "
        f"duplicated {summary['duplicated']}; errors {result['errors'] or 'none'}"
    )
    print(
        f"threads {summary['threads_before']} -> {summary['threads_after']}, "
        f"fds {summary['fds_before']} -> {summary['fds_after']}, "
        f"RSS {summary['rss_before_mib']} -> {summary['rss_after_mib']} MiB"
    )
    print(json.dumps(summary))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--interval", type=float, nargs=2, default=(5.0, 30.0), metavar=("MIN_S", "MAX_S")
    )
    parser.add_argument(
        "--rate", type=float, default=2.0, help="messages per second per connection"
    )
    parser.add_argument("--restarts", type=int, default=None, help="stop after this many restarts")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    report(result)
    summary = result["summary"]
    ok = summary["lost"] == 0 and summary["duplicated"] == 0 and not summary["threads_leaked"]
    return 0 if ok and not summary["fds_leaked"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""ThreadingActor vs PooledActor: start, tell-all, ask latency and memory per actor.

Each (kind, N) runs in a fresh interpreter so one run's freed memory does not hide the
next one's growth. Prints a markdown table. Every loop is bounded; the default sizes
finish in well under two minutes.

    python benchmarks/bench_actors.py [--sizes 1000 10000] [--asks 2000] [--workers N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pykka

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gluegun_actors._runtime.pool import DEFAULT_WORKERS, PooledActor, Scheduler

KINDS = ("ThreadingActor", "PooledActor")
FLOOD = 200_000  # tells to one actor in the single-actor throughput run


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


class _Counting:
    """Counts handled messages; sets `done` when the expected number has arrived."""

    def __init__(self, done: threading.Event, expected: int, counter: Any) -> None:
        self.done = done
        self.expected = expected
        self.counter = counter

    def handle(self, message: Any) -> Any:
        if message == "ask":
            return message
        if next(self.counter) == self.expected - 1:
            self.done.set()
        return None


def actor_classes(workers: int) -> dict[str, type[pykka.Actor]]:
    class Threaded(pykka.ThreadingActor):
        use_daemon_thread = True

        def __init__(self, counting: _Counting) -> None:
            super().__init__()
            self.on_receive = counting.handle  # type: ignore[method-assign]

    class Pooled(PooledActor):
        scheduler = Scheduler(workers)

        def __init__(self, counting: _Counting) -> None:
            super().__init__()
            self.on_receive = counting.handle  # type: ignore[method-assign]

    return {"ThreadingActor": Threaded, "PooledActor": Pooled}


def run_one(kind: str, count: int, asks: int, workers: int) -> dict[str, Any]:
    actor_class = actor_classes(workers)[kind]
    done = threading.Event()
    counting = _Counting(done, count, itertools.count())
    # Warm up imports, allocator pools and (for the pool) the workers before the baseline.
    warm = actor_class.start(_Counting(threading.Event(), 1, itertools.count()))
    warm.ask("ask", timeout=10)
    baseline = rss_kib()

    started = time.perf_counter()
    refs = [actor_class.start(counting) for _ in range(count)]
    start_s = time.perf_counter() - started

    started = time.perf_counter()
    for ref in refs:
        ref.tell("tell")
    if not done.wait(120):
        raise RuntimeError("the tell round did not finish")
    tell_s = time.perf_counter() - started
    rss_per_actor = (rss_kib() - baseline) / count
    threads = threading.active_count()

    latencies = []
    for i in range(asks):
        ref = refs[(i * 7919) % count]
        before = time.perf_counter()
        ref.ask("ask", timeout=10)
        latencies.append(time.perf_counter() - before)
    latencies.sort()

    started = time.perf_counter()
    for future in [ref.stop(block=False) for ref in refs]:
        future.get(timeout=60)
    stop_s = time.perf_counter() - started
    warm.stop()
    return {
        "kind": kind,
        "n": count,
        "start_s": start_s,
        "tell_s": tell_s,
        "ask_median_us": statistics.median(latencies) * 1e6,
        "ask_p99_us": latencies[int(len(latencies) * 0.99) - 1] * 1e6,
        "rss_kib": rss_per_actor,
        "threads": threads,
        "stop_s": stop_s,
    }


def run_flood(kind: str, workers: int) -> dict[str, Any]:
    """One actor, `FLOOD` tells from one thread: the cost of a tell and of a handled message."""
    actor_class = actor_classes(workers)[kind]
    done = threading.Event()
    ref = actor_class.start(_Counting(done, FLOOD, itertools.count()))
    ref.ask("ask", timeout=10)
    started = time.perf_counter()
    for _ in range(FLOOD):
        ref.tell("tell")
    sent = time.perf_counter() - started
    if not done.wait(120):
        raise RuntimeError("the flood did not finish")
    total = time.perf_counter() - started
    ref.stop()
    return {"kind": kind, "tell_us": sent / FLOOD * 1e6, "rate": FLOOD / total}


def child(args: argparse.Namespace) -> None:
    if args.flood:
        result = run_flood(args.kind, args.workers)
    else:
        result = run_one(args.kind, args.n, args.asks, args.workers)
    print(json.dumps(result))


def spawn(*extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", *extra]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=110)
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--asks", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--flood", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    common = ["--asks", str(args.asks), "--workers", str(args.workers)]
    print(f"PooledActor workers: {args.workers}; asks per row: {args.asks}\n")
    print(
        "| actor | N | start all (s) | tell each once, all done (s) | ask median (µs) "
        "| ask p99 (µs) | RSS per actor (KiB) | threads | stop all (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count in args.sizes:
        for kind in KINDS:
            r = spawn("--kind", kind, "--n", str(count), *common)
            print(
                f"| {kind} | {count:,} | {r['start_s']:.2f} | {r['tell_s']:.3f} "
                f"| {r['ask_median_us']:.0f} | {r['ask_p99_us']:.0f} | {r['rss_kib']:.1f} "
                f"| {r['threads']:,} | {r['stop_s']:.2f} |",
                flush=True,
            )
    print(f"\nOne actor, {FLOOD:,} tells from one thread:\n")
    print("| actor | cost of a tell to the sender (µs) | handled per second |")
    print("|---|---:|---:|")
    for kind in KINDS:
        r = spawn("--flood", "--kind", kind, *common)
        print(f"| {kind} | {r['tell_us']:.2f} | {r['rate']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()

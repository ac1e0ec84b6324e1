"""Connection shards on Ray: messages/s and memory per connection for 1 and 2 shards.

One run on a local Ray instance (`ray.init(num_cpus=max(2, cores))`). Two fleets live
side by side, one of 1 shard and one of 2; each shard is a Ray actor process.

1. Memory: each shard opens `--idle` idle WebSocket connections (upgraded, keepalive
   off) to an echo server in its own process (the embedded server). Memory per
   connection is the growth of the shard process's RSS over them, read in the shard.
2. Throughput, owners beside their shard: each shard starts a push server inside its
   own process (a `ScriptedServer` that accepts the upgrade, then writes `--size`-byte
   text frames, pre-encoded, 64 KiB at a time, as fast as TCP takes them: it costs
   almost nothing per message) and opens `--connections` WebSocket connections to it,
   owned by an owner id with no pump. Code run in the shard (`shards.call`) takes their
   messages from that owner's mailbox there for `--seconds`, in every shard of the fleet
   at once; the fleet's messages/s is the sum. So the figure measures the shard
   processes (connections, owner and server in one process: one core at most under the
   GIL), not the driver. The fleets take turns, `--rounds` times each; the median counts.
3. Driver pull: 2 shards push the same way to connections owned by the driver, which
   takes every message from its mailbox (filled by its pump from both shards) for
   `--seconds`: the rate one owner in one process takes messages from all shards.

Prints the tables and ends with one line of JSON with `speedup_2` (2 shards' messages/s
over one shard's); the same goes to `results/shards.md` and `results/shards.json`.

Run: `pip install -e '.[ray]'`, then `python benchmarks/bench_shards.py [--quick]`.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any, Final

import _common
from _common import ROOT, Report, ServerProcess, Target, fmt_rate

_common.ensure_importable()

SPEEDUP_TARGET: Final = 1.6
"""What 2 shards must reach over 1 on a machine with 2 cores or more."""
OPEN_TIMEOUT: Final = 120.0
"""Seconds all connections of a phase may take to be up and upgraded."""
PUSH_CHUNKS: Final = 2_000
"""64 KiB writes per push connection (about 7 million messages of 16 bytes)."""


# -- what runs inside a shard (self-contained: Ray ships these functions by value) ----------


def start_push_server(local: Any, size: int) -> int:
    """A server in this shard's process that accepts each WebSocket upgrade, then sends
    `size`-byte text frames as fast as TCP takes them, pre-encoded in large writes (so its
    cost per message is nearly nothing and the figure measures the connections); its port."""
    from gluegun_actors.testing import Expect, Hold, ScriptedServer, Send, Step, WsAccept

    server = local.scratch.get("bench-server")
    if server is None:
        frame = b"\x81" + bytes([size]) + b"m" * size  # FIN, text, unmasked; size < 126
        chunk = Send(frame * (65536 // len(frame)))
        script: list[Step] = [Expect(), WsAccept(), *[chunk] * PUSH_CHUNKS, Hold()]
        server = ScriptedServer([script], max_connections=1 << 14, step_timeout=600.0)
        local.scratch["bench-server"] = server.start()
    return int(server.port)


def rss_kib(local: Any) -> int:
    """This shard process's resident memory, KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def drain(local: Any, owner: str, seconds: float) -> dict[str, float]:
    """Take every message of `owner` here for `seconds`; count the WebSocket frames."""
    box = local.mailbox(owner)
    box.flush()  # what queued before the start
    return count_frames(box, seconds)


def count_frames(box: Any, seconds: float) -> dict[str, float]:
    """Take every message of the mailbox `box` for `seconds`, one call per message;
    the WebSocket frames taken, the time it took and this process's CPU time meanwhile."""
    from gluegun_actors.errors import AwaitTimeout
    from gluegun_actors.events import GunWs

    frames = 0
    cpu, start = time.process_time(), time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        try:
            message = box.receive(None, 100)
        except AwaitTimeout:
            continue
        if type(message) is GunWs:
            frames += 1
    elapsed = time.perf_counter() - start
    return {"frames": frames, "seconds": elapsed, "cpu": time.process_time() - cpu}


# -- the driver -----------------------------------------------------------------------------


def keys_on(sm: Any, shard: int, count: int, prefix: str) -> list[str]:
    """`count` keys that rendezvous hashing places on `shard`."""
    from gluegun_actors import shards

    found: list[str] = []
    n = 0
    while len(found) < count:
        key = f"{prefix}-{n}"
        if shards.shard_of(sm, key) == shard:
            found.append(key)
        n += 1
    return found


def wait_connected(sm: Any, total: int) -> None:
    from gluegun_actors import shards

    deadline = time.monotonic() + OPEN_TIMEOUT
    while shards.count(sm).get("connected", 0) < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every connection came up: {shards.count(sm)}")
        time.sleep(0.1)
    time.sleep(0.3)  # their upgrades land just after the connections are up


def start_fleet(n: int, args: Any, idle_port: int) -> tuple[Any, dict[str, float]]:
    """`n` shards, each with its push server, `--idle` idle connections and
    `--connections` push connections owned by the owner id "beside"; with the figures of
    the idle ones: the mean growth of a shard's RSS per connection (KiB), a shard's RSS
    before them (MiB), and how many `open` calls the driver made per second."""
    from gluegun_actors import shards
    from gluegun_actors.mailbox import Mailbox

    sm = shards.start(n, owner=Mailbox("bench driver"), actor_options={"num_cpus": 0.5})
    ports = shards.call_all(sm, start_push_server, args.size)
    before = shards.call_all(sm, rss_kib)
    url = f"ws://127.0.0.1:{idle_port}/echo"
    idle = [key for shard in range(n) for key in keys_on(sm, shard, args.idle, f"idle{shard}")]
    one_by_one = idle[: len(idle) // 10]
    started = time.perf_counter()
    for key in one_by_one:
        shards.open(sm, key, url=url, owner="idle")
    middle = time.perf_counter()
    shards.open_many(sm, [(key, url) for key in idle[len(one_by_one) :]], owner="idle")
    ended = time.perf_counter()
    wait_connected(sm, n * args.idle)
    after = shards.call_all(sm, rss_kib)
    figures = {
        "memory_per_connection_kib": statistics.mean(
            (a - b) / args.idle for a, b in zip(after, before, strict=True)
        ),
        "base_rss_mib": statistics.mean(before) / 1024,
        "opens_per_s": len(one_by_one) / (middle - started),
        "open_many_per_s": (len(idle) - len(one_by_one)) / (ended - middle),
    }
    for shard in range(n):
        for key in keys_on(sm, shard, args.connections, f"push{shard}"):
            url = f"ws://127.0.0.1:{ports[shard]}/push"
            shards.open(sm, key, url=url, owner="beside")
    wait_connected(sm, n * (args.idle + args.connections))
    return sm, figures


def drain_round(sm: Any, seconds: float) -> dict[str, Any]:
    """Every shard of `sm` drains its owner beside it at once; the rates."""
    from gluegun_actors import shards

    runs: list[dict[str, float]] = shards.call_all(sm, drain, "beside", seconds)
    return {
        "messages_per_s": sum(run["frames"] / run["seconds"] for run in runs),
        "per_shard": [run["frames"] / run["seconds"] for run in runs],
        "cpu_per_shard": [run["cpu"] / run["seconds"] for run in runs],
    }


def measure_shards(args: Any, idle_port: int) -> dict[int, dict[str, Any]]:
    """Memory per connection and messages/s with the owners beside 1 and 2 shards.

    Both fleets live at once; their rounds alternate (a fleet not draining is held back
    by its mailboxes' marks and costs nothing), and each figure is the median of its
    rounds, so that drift falls on both alike.
    """
    from gluegun_actors import shards

    fleets: dict[int, tuple[Any, dict[str, float]]] = {}
    try:
        for n in (1, 2):
            fleets[n] = start_fleet(n, args, idle_port)
        rounds: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for index in range(args.rounds):
            for n in (1, 2) if index % 2 == 0 else (2, 1):
                rounds[n].append(drain_round(fleets[n][0], args.seconds))
        rss = {n: shards.call_all(sm, rss_kib) for n, (sm, _) in fleets.items()}
    finally:
        for sm, _ in fleets.values():
            shards.close_all(sm)  # the push server never answers a close: no handshake
            shards.stop(sm)
    results = {}
    for n, runs in rounds.items():
        middle = sorted(runs, key=lambda run: run["messages_per_s"])[len(runs) // 2]
        results[n] = {
            **middle,
            "rounds": [run["messages_per_s"] for run in runs],
            **fleets[n][1],
            "rss_kib": rss[n],
        }
    return results


def measure_driver_pull(args: Any) -> dict[str, float]:
    """The rate one owner in the driver takes messages from 2 shards."""
    from gluegun_actors import shards
    from gluegun_actors.mailbox import Mailbox

    box = Mailbox("driver owner")
    sm = shards.start(2, owner=box, actor_options={"num_cpus": 0.5})
    try:
        ports = shards.call_all(sm, start_push_server, args.size)
        for shard in range(2):
            for key in keys_on(sm, shard, args.connections, f"pull{shard}"):
                shards.open(sm, key, url=f"ws://127.0.0.1:{ports[shard]}/push")
        wait_connected(sm, 2 * args.connections)
        box.flush()
        taken = count_frames(box, args.seconds)
    finally:
        shards.close_all(sm)
        shards.stop(sm)
    return {
        "messages_per_s": taken["frames"] / taken["seconds"],
        "driver_cpu": taken["cpu"] / taken["seconds"],
    }


def main() -> None:
    args = _common.parser(__doc__.split("\n", 1)[0])
    args.add_argument("--seconds", type=float, help="how long each throughput run lasts")
    args.add_argument("--connections", type=int, help="push connections per shard")
    args.add_argument("--idle", type=int, help="idle connections per shard, for memory")
    args.add_argument("--size", type=int, default=16, help="bytes per pushed message")
    options = args.parse_args()
    if not 1 <= options.size <= 125:
        args.error("--size must be 1..125 bytes (one short WebSocket frame each)")
    options.seconds = options.seconds or (1.5 if options.quick else 4.0)
    options.connections = options.connections or (10 if options.quick else 40)
    options.idle = options.idle or (200 if options.quick else 1_000)
    options.rounds = options.rounds or (1 if options.quick else 3)
    _common.raise_nofile()

    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cores = os.cpu_count() or 1
    ray.init(num_cpus=max(2, cores), include_dashboard=False, log_to_driver=False)
    report = Report("shards", "Connection shards on Ray", options)
    settings = (
        f"Settings: {options.connections} push connections per shard, {options.size}-byte "
        f"messages, {options.seconds:g} s per round, {options.rounds} rounds (median), "
        f"{options.idle} idle connections per shard for memory; one shard = one Ray actor "
        f"process hosting its push server, its connections and their owner; {cores} cores."
    )
    report.add(settings)
    try:
        with ServerProcess("http", "--impl", "embedded") as server:
            results = measure_shards(options, server.port)
        pull = measure_driver_pull(options)
    finally:
        ray.shutdown()

    one, two = results[1]["messages_per_s"], results[2]["messages_per_s"]
    speedup = two / one if one else 0.0
    rows = [
        [
            str(n),
            fmt_rate(result["messages_per_s"]),
            " / ".join(fmt_rate(rate) for rate in result["per_shard"]),
            " / ".join(f"{cpu:.2f}" for cpu in result["cpu_per_shard"]),
            " / ".join(fmt_rate(rate) for rate in result["rounds"]),
            f"{result['memory_per_connection_kib']:.1f} KiB",
        ]
        for n, result in results.items()
    ]
    report.table(
        "Owners beside their shard",
        [
            "shards",
            "messages/s",
            "per shard",
            "CPU per shard (cores)",
            "rounds",
            "memory per connection",
        ],
        rows,
    )
    report.table(
        "Idle connections: memory and opening",
        [
            "shards",
            "memory per connection",
            "shard RSS before them",
            "keys opened/s: open",
            "open_many",
        ],
        [
            [
                str(n),
                f"{result['memory_per_connection_kib']:.1f} KiB",
                f"{result['base_rss_mib']:.0f} MiB",
                fmt_rate(result["opens_per_s"]),
                fmt_rate(result["open_many_per_s"]),
            ]
            for n, result in results.items()
        ],
    )
    report.table(
        "One owner in the driver, 2 shards",
        ["messages/s taken by the driver", "driver CPU (cores)"],
        [[fmt_rate(pull["messages_per_s"]), f"{pull['driver_cpu']:.2f}"]],
    )
    enough_cores = cores >= 2
    report.targets(
        [
            Target(
                f"2 shards reach at least {SPEEDUP_TARGET}x one shard",
                (speedup >= SPEEDUP_TARGET) if enough_cores else None,
                f"{speedup:.2f}x" + ("" if enough_cores else " (fewer than 2 cores)"),
            )
        ]
    )
    summary = {
        "bench": "shards",
        "speedup_2": round(speedup, 3),
        "messages_per_s": {str(n): round(r["messages_per_s"]) for n, r in results.items()},
        "memory_per_connection_kib": {
            str(n): round(r["memory_per_connection_kib"], 1) for n, r in results.items()
        },
        "driver_pull_messages_per_s": round(pull["messages_per_s"]),
        "shard_base_rss_mib": round(results[1]["base_rss_mib"]),
        "opens_per_s": round(results[1]["opens_per_s"]),
        "open_many_per_s": {str(n): round(r["open_many_per_s"]) for n, r in results.items()},
        "driver_cpu": round(pull["driver_cpu"], 2),
        "connections_per_shard": options.connections,
        "idle_per_shard": options.idle,
        "size": options.size,
        "seconds": options.seconds,
        "cores": cores,
    }
    report.data = {"results": {str(n): r for n, r in results.items()}, "pull": pull, **summary}
    report.write()
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

"""A supervised fleet: N WebSocket connections under one manager, one broadcast, the echoes.

Shows `gluegun_actors.manager`: connections opened by key (each a child of the manager's
supervisor, upgraded again after any reconnect), `await_upgrade` per key, `broadcast` of
one Text frame to every upgraded key, the echoes read from the owner's mailbox, the
fleet's counters (`totals`), and a graceful stop (close 1001 on every WebSocket).

Run: python examples/supervised_fleet.py [--connections N] [ws://host:port/path]
Without a URL it starts the embedded server on 127.0.0.1 and uses its `/ws` echo route.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Hashable
from contextlib import ExitStack

from gluegun_actors import connection, mailbox, manager
from gluegun_actors.errors import AwaitTimeout
from gluegun_actors.events import GunWs
from gluegun_actors.message import Text

WAIT_SECONDS = 10.0
"""Bound on the upgrades of the whole fleet, and on the echoes."""


def left_ms(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


def collect_echoes(mgr: manager.Manager, frame: Text, expected: int) -> dict[Hashable, int]:
    """Echoes of `frame` per key, from the owner's mailbox (at most `expected`, in time)."""
    key_of = {manager.lookup(mgr, key): key for key in manager.keys(mgr)}
    owner = mailbox.current()
    echoes: dict[Hashable, int] = {}
    deadline = time.monotonic() + WAIT_SECONDS

    def is_echo(message: object) -> bool:
        return isinstance(message, GunWs) and message.frame == frame

    for _ in range(expected):
        try:
            echo = owner.receive(is_echo, left_ms(deadline))
        except AwaitTimeout:
            break
        assert isinstance(echo, GunWs)
        key = key_of[echo.conn]
        echoes[key] = echoes.get(key, 0) + 1
    return echoes


def run_fleet(url: str, size: int) -> None:
    options = connection.options(closing_timeout=2_000)  # bounds the graceful stop
    mgr = manager.start(options=options)
    try:
        conns = [manager.open(mgr, f"ws-{n:03}", url=url) for n in range(size)]
        deadline = time.monotonic() + WAIT_SECONDS
        for key in manager.keys(mgr):
            manager.await_upgrade(mgr, key, left_ms(deadline))
        sent = manager.broadcast(mgr, Text("hello fleet"))
        echoes = collect_echoes(mgr, Text("hello fleet"), sent)
        totals = manager.totals(mgr)
        echoed = sum(echoes.values())
        print(f"fleet of {size} WebSocket connections to {url}")
        print(f"  {'keys connected':<18} {manager.count(mgr).get('connected', 0)} / {size}")
        print(f"  {'broadcast to':<18} {sent}")
        print(f"  {'echoes received':<18} {echoed} (from {len(echoes)} keys)")
        print(f"  {'bytes in / out':<18} {totals.bytes_in} / {totals.bytes_out}")
        print(f"  {'messages in / out':<18} {totals.messages_in} / {totals.messages_out}")
        print(f"  {'reconnects':<18} {totals.reconnects}, restarts {totals.restarts}")
    finally:
        manager.stop(mgr)  # close 1001 on each WebSocket, then the supervisor stops
        mailbox.current().flush()  # GunUp, the server's close answers, Down: one each
    alive = sum(conn.alive for conn in conns)
    print(f"done: {len(conns)} connections, {echoed} echoes, {alive} left")


def main() -> None:
    parser = argparse.ArgumentParser(description="A supervised fleet of WebSocket connections.")
    parser.add_argument("url", nargs="?", help="ws://host:port/path (default: embedded server)")
    parser.add_argument("--connections", type=int, default=20, metavar="N")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.url
        if url is None:
            from gluegun_actors.testing import EmbeddedServer

            url = stack.enter_context(EmbeddedServer()).ws_url()
        run_fleet(url, args.connections)


if __name__ == "__main__":
    main()

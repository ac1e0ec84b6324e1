"""An always-connected feed: one resilient WebSocket that rides out a server restart.

Shows a WebSocket upgraded with `websocket.options(reupgrade=True)` on a connection with
keepalive pings and quick retries, owned by the calling thread's mailbox. It sends
numbered messages and reads their echoes; halfway, the embedded server stops (its
WebSockets get close 1001) and a new one starts on the same port. The owner sees the
close frame, `GunDown`, `GunUp`, then a fresh `GunUpgrade` on the same stream reference,
and the feed carries on where it was.

Run: python examples/always_connected_feed.py [ws://host:port/path]
Without a URL it uses the embedded server's `/ws` echo route on 127.0.0.1 and restarts
that server midway; with a URL it only sends and receives (no restart).
"""

from __future__ import annotations

import argparse
import time
import urllib.parse

from gluegun_actors import connection, mailbox, websocket
from gluegun_actors.events import Down, GunDown, GunUp, GunUpgrade, GunWs
from gluegun_actors.message import Text
from gluegun_actors.testing import EmbeddedServer

COUNT = 10
TIMEOUT_MS = 5_000
MAX_EVENTS = 10
"""Most messages read while waiting for one kind (the outage brings about four)."""


OPTIONS = connection.options(keepalive=500, pong_timeout=500, retry=20, retry_timeout=100)


class Outage:
    """The embedded server, stopped midway and replaced by a new one on the same port."""

    def __init__(self) -> None:
        self.server = EmbeddedServer().start()

    def begin(self) -> None:
        self.server.stop()  # close 1001 on every WebSocket, then the listener goes away

    def end(self) -> None:
        self.server = EmbeddedServer(port=self.server.port).start()


def show(message: object) -> None:
    match message:
        case GunWs(frame=frame):
            print(f"  GunWs       {frame!r}")
        case GunDown(reason=reason, killed_streams=killed):
            print(f"  GunDown     reason={reason!r}, {len(killed)} stream(s) to upgrade again")
        case GunUp(protocol=protocol):
            print(f"  GunUp       {protocol.value}")
        case GunUpgrade(stream=stream, protocols=protocols):
            print(f"  GunUpgrade  {stream!r} {protocols}")
        case Down(reason=reason):
            print(f"  Down        reason={reason!r}")
        case _:
            print(f"  {type(message).__name__:<11} {message!r}")


def wait_for(kind: type, seconds: float = TIMEOUT_MS / 1000) -> object:
    """Show the owner's messages up to the first of `kind` (bounded in count and time)."""
    owner = mailbox.current()
    deadline = time.monotonic() + seconds
    for _ in range(MAX_EVENTS):
        message = owner.receive(timeout=max(0, int((deadline - time.monotonic()) * 1000)))
        show(message)
        if isinstance(message, kind):
            return message
    raise RuntimeError(f"no {kind.__name__} among {MAX_EVENTS} messages")


def feed(host: str, port: int, path: str, outage: Outage | None) -> None:
    conn = connection.open(host, port, OPTIONS)
    sent = echoed = 0
    try:
        wait_for(GunUp)
        stream = websocket.upgrade(conn, path, options=websocket.options(reupgrade=True))
        show(websocket.await_upgrade(conn, stream, TIMEOUT_MS))
        for n in range(1, COUNT + 1):
            if outage is not None and n == COUNT // 2 + 1:
                print("server stops")
                outage.begin()
                wait_for(GunDown)
                print("server starts again on the same port")
                outage.end()
                upgrade = wait_for(GunUpgrade)
                assert isinstance(upgrade, GunUpgrade)
                print(f"  upgraded again on the same stream reference: {upgrade.stream == stream}")
            websocket.send(conn, stream, Text(f"message {n}"))
            sent += 1
            reply = websocket.receive(conn, stream, TIMEOUT_MS)
            if reply == Text(f"message {n}"):
                echoed += 1
            print(f"sent message {n}, echo {reply!r}")
        reconnects = connection.stats(conn).reconnects
        connection.shutdown(conn)  # close 1001, no reconnect; Down comes last
        wait_for(Down)
    finally:
        connection.close(conn)
        mailbox.current().flush()
    plural = "" if reconnects == 1 else "s"
    print(f"done: {sent} sent, {echoed} echoed, {reconnects} reconnect{plural}")


def main() -> None:
    parser = argparse.ArgumentParser(description="A resilient WebSocket feed.")
    parser.add_argument("url", nargs="?", help="ws://host:port/path (default: embedded server)")
    args = parser.parse_args()
    if args.url is not None:
        url = urllib.parse.urlsplit(args.url)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        feed(url.hostname or "localhost", url.port or 80, path, None)
        return
    outage = Outage()
    try:
        feed("127.0.0.1", outage.server.port, "/ws", outage)
    finally:
        outage.server.stop()


if __name__ == "__main__":
    main()

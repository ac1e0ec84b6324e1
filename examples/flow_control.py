"""Flow control: the owner says how much it can take, and a fast server is held back.

With `connection.options(flow=N)` every stream starts with N credits, and each `GunData`
(or `GunWs`) message spends one. At zero the connection stops reading the socket: the
kernel's buffers fill, TCP tells the server to wait, and nothing piles up in the owner's
mailbox. `connection.update_flow(conn, stream, n)` gives n more credits and reading goes
on. (A WebSocket takes the same per stream: `websocket.options(flow=N)`.) Credits are
checked per socket read, so the pieces of the read that spent the last credit are still
delivered.

Here a large body is downloaded with 4 credits; the example checks that nothing more
arrives while the credits are spent, then reads the rest, 4 credits at a time.

Run: python examples/flow_control.py [http://host:port/path-to-a-large-body]
Without a URL it starts the embedded server and downloads 16 MiB from its `/stream` route.
"""

from __future__ import annotations

import time

from _server import server_url, target

from gluegun_actors import connection, http, mailbox
from gluegun_actors.connection import Connection, StreamRef
from gluegun_actors.events import GunData

CREDITS = 4
TIMEOUT = connection.Milliseconds(5000)
PAUSE_SECONDS = 0.3
"""How long the example watches the mailbox while the credits are spent."""
MAX_ROUNDS = 10_000
"""Bound on the rounds of credits (each round reads at least one piece)."""


def delivered(stream: StreamRef) -> tuple[int, int]:
    """(pieces, bytes) of the stream's `GunData` waiting in this thread's mailbox."""
    pieces = [
        message.data
        for message in mailbox.current().messages()
        if isinstance(message, GunData) and message.stream == stream
    ]
    return len(pieces), sum(map(len, pieces))


def read_pieces(conn: Connection, stream: StreamRef, count: int) -> tuple[int, bool]:
    """Read up to `count` pieces of the body: (their bytes, whether the body ended)."""
    size = 0
    for _ in range(count):
        message = http.await_next(conn, stream, TIMEOUT)
        if not isinstance(message, GunData):
            continue  # trailers, if any: the end comes with them
        size += len(message.data)
        if message.is_fin:
            return size, True
    return size, False


def download(conn: Connection, path: str) -> None:
    stream = http.get(conn, path)
    response = http.await_response(conn, stream, TIMEOUT)  # a response costs no credit
    print(f"GET {path} -> {response.status}, with {CREDITS} credits")
    if response.is_fin:
        print("no body")
        return

    # Spend the first credits, then watch: the connection has stopped reading.
    received, ended = read_pieces(conn, stream, CREDITS)
    if not ended:
        before = delivered(stream)
        time.sleep(PAUSE_SECONDS)
        after = delivered(stream)
        print(f"credits spent: {received} bytes read, {before[1]} more in the mailbox")
        state = "reading is paused" if after == before else "reading went on"
        print(f"{PAUSE_SECONDS * 1000:.0f} ms later: {after[1]} more in the mailbox: {state}")

    # Give credits one round at a time, as a consumer that has caught up would.
    rounds = 0
    while not ended and rounds < MAX_ROUNDS:
        connection.update_flow(conn, stream, CREDITS)
        size, ended = read_pieces(conn, stream, CREDITS)
        received += size
        rounds += 1
    print(f"done: {received} bytes, after {rounds} more rounds of update_flow({CREDITS})")


def main(url: str) -> None:
    conn = connection.open_url(url, connection.options(flow=CREDITS, retry=0))
    try:
        connection.await_up(conn, TIMEOUT)
        download(conn, target(url))
    finally:
        connection.close(conn)


if __name__ == "__main__":
    with server_url("http", "/stream?chunks=256&size=65536") as url:
        main(url)

"""The soak's server, run as its own process: `python soak_server.py PORT STATUS RATE GEN`.

On each WebSocket connection (the `websockets` package, no compression, no pings) it
streams text messages "GEN.SESSION:N" (N = 0, 1, 2, ...) at RATE per second until it is
stopped. It prints "ready" once it listens.

What counts as sent. A message counts once the client's TCP has acknowledged every byte
of it: the server knows what it handed to the kernel, and `SIOCOUTQ` says how much of
that the peer has not acknowledged yet. Every 50 ms it writes, to the STATUS file
(atomically), each session's acknowledged count; on SIGTERM it closes every connection
cleanly (close 1001, after which the client has read everything before it) and writes
the final counts. A SIGKILL leaves the last report: messages acknowledged in its last
50 ms are then received but not counted as sent, never the reverse.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import struct
import sys
import termios
from collections import deque
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

REPORT_EVERY = 0.05
"""Seconds between two status reports."""


def _frame_size(payload: int) -> int:
    """Bytes of an unmasked server frame carrying `payload` bytes."""
    if payload < 126:
        return 2 + payload
    return 4 + payload if payload < 65536 else 10 + payload


class Session:
    """One connection's stream: what was written and what the peer acknowledged."""

    def __init__(self, name: str, connection: ServerConnection) -> None:
        self.name = name
        self.connection = connection
        self.written_bytes = 0
        self.written = 0
        self.acked = 0
        self.ends: deque[int] = deque()  # byte offset where each unacknowledged message ends
        self.finished = False  # its socket is closed (and its descriptor may be reused)
        sock: Any = connection.transport.get_extra_info("socket")
        self.fd = sock.fileno()
        self.base = self._unacked()  # the handshake's bytes still in flight

    def _unacked(self) -> int:
        try:
            raw = fcntl.ioctl(self.fd, termios.TIOCOUTQ, struct.pack("i", 0))
        except OSError:
            return 0
        queued = self.connection.transport.get_write_buffer_size()
        return int(struct.unpack("i", raw)[0]) + queued

    def wrote(self, text: str) -> None:
        self.written_bytes += _frame_size(len(text.encode()))
        self.written += 1
        self.ends.append(self.written_bytes)

    def update(self) -> None:
        if self.finished or self.connection.transport.is_closing():
            return
        reached = self.written_bytes + self.base - self._unacked()
        while self.ends and self.ends[0] <= reached:
            self.ends.popleft()
            self.acked += 1

    def all_delivered(self) -> None:
        """After a completed closing handshake the peer has read everything."""
        self.acked = self.written
        self.ends.clear()


async def main(port: int, status: Path, rate: float, generation: str) -> None:
    sessions: dict[str, Session] = {}
    counter = 0

    def report() -> None:
        for session in sessions.values():
            session.update()
        data = {name: s.acked for name, s in sessions.items()}
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, status)

    async def stream(connection: ServerConnection) -> None:
        nonlocal counter
        counter += 1
        session = Session(f"{generation}.{counter}", connection)
        sessions[session.name] = session
        n = 0
        try:
            while True:
                text = f"{session.name}:{n}"
                await connection.send(text)
                session.wrote(text)
                n += 1
                await asyncio.sleep(1.0 / rate)
        except ConnectionClosed:
            pass
        finally:
            if connection.close_code == 1001 and stopping.done():
                session.all_delivered()  # our clean stop: the close handshake completed
            session.finished = True  # otherwise its last report stands

    async def reporter() -> None:
        while True:
            report()
            await asyncio.sleep(REPORT_EVERY)

    loop = asyncio.get_running_loop()
    stopping: asyncio.Future[None] = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stopping.set_result, None)
    async with serve(
        stream,
        "127.0.0.1",
        port,
        reuse_address=True,
        backlog=4096,
        compression=None,
        ping_interval=None,
    ):
        task = asyncio.create_task(reporter())
        print("ready", flush=True)
        await stopping
        task.cancel()
    # Leaving the block closed every connection with 1001 and waited for the handlers.
    report()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]))

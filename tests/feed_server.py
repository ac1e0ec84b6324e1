"""A WebSocket feed server for tests, run as its own process (`python feed_server.py PORT
TAG COUNT`): on each connection it sends COUNT text messages "TAG:0".."TAG:COUNT-1", then
echoes. SIGTERM closes it cleanly (close code 1001 to every client); SIGKILL does not.
It prints "ready" once it listens. `FeedServer` runs it from a test, restartable."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve


class FeedServer:
    """The feed server process on a fixed port, restartable."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.process: subprocess.Popen[str] | None = None

    def start(self, tag: str, count: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(self.port), tag, str(count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self, how: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(how)
        self.process.wait(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.process = None


async def main(port: int, tag: str, count: int) -> None:
    async def feed(connection: ServerConnection) -> None:
        for n in range(count):
            await connection.send(f"{tag}:{n}")
        async for message in connection:
            await connection.send(message)

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(feed, "127.0.0.1", port, reuse_address=True, backlog=1024):
        print("ready", flush=True)
        await stop  # leaving the block closes every connection with 1001


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))

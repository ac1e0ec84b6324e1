"""A WebSocket feed server for tests, run as its own process (`python feed_server.py PORT
TAG COUNT`): on each connection it sends COUNT text messages "TAG:0".."TAG:COUNT-1", then
echoes. SIGTERM closes it cleanly (close code 1001 to every client); SIGKILL does not.
It prints "ready" once it listens."""

from __future__ import annotations

import asyncio
import signal
import sys

from websockets.asyncio.server import ServerConnection, serve


async def main(port: int, tag: str, count: int) -> None:
    async def feed(connection: ServerConnection) -> None:
        for n in range(count):
            await connection.send(f"{tag}:{n}")
        async for message in connection:
            await connection.send(message)

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(feed, "127.0.0.1", port, reuse_address=True):
        print("ready", flush=True)
        await stop  # leaving the block closes every connection with 1001


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))

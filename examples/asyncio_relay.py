"""An asyncio app that relays one upstream WebSocket feed to all of its own clients.

A Starlette app, served by uvicorn on 127.0.0.1, opens a single upstream WebSocket with
gluegun_actors (`aio.connect`) and a relay task awaits its messages
(`aio.receive_app_frame`) on the event loop, without blocking it, and sends each one to
every client connected to its `/feed` WebSocket. What a client sends goes upstream, so
against an echo server every client sees what any client says.

The run is bounded: two clients join, one of them publishes COUNT messages, the relay
relays COUNT upstream messages (it starts once both clients are there: until then the
upstream's messages wait in the mailbox), then everything stops. It prints what it
relayed and what each client received.

Run: python examples/asyncio_relay.py [ws://host:port/path]
Without a URL the upstream is the embedded server's `/ws` echo route on 127.0.0.1; a feed
that pushes messages of its own works too (the relay takes its first COUNT messages).
Needs starlette, uvicorn and websockets (`pip install starlette uvicorn websockets`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect

from gluegun_actors import aio, connection, websocket
from gluegun_actors.connection import Infinity
from gluegun_actors.mailbox import Mailbox
from gluegun_actors.message import Text
from gluegun_actors.testing import EmbeddedServer

COUNT = 5
"""How many upstream messages the relay relays before the example stops."""
CLIENTS = 2
STEP_TIMEOUT = 10.0
"""Seconds any one step may take (a start, a message, a stop)."""
WELCOME = "welcome"
"""The relay's first words to a client: from then on it gets every message."""


class Relay:
    """One upstream socket, many clients; every upstream message goes to each client."""

    def __init__(
        self, upstream_url: str, count: int, audience: int, owner: Mailbox | None = None
    ) -> None:
        self.upstream_url = upstream_url
        self.count = count
        self.audience = audience
        self.owner = owner
        self.clients: dict[WebSocket, None] = {}  # in joining order
        self.upstream: websocket.Socket | None = None
        self.all_joined = asyncio.Event()
        self.finished = asyncio.Event()
        self.app = Starlette(routes=[WebSocketRoute("/feed", self.feed)], lifespan=self.lifespan)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # The owner is `owner`, else the loop thread's mailbox (mailbox.current()).
        options = websocket.options(connection=connection.options(owner=self.owner))
        self.upstream = await aio.connect(self.upstream_url, options=options)
        pump = asyncio.create_task(self.pump(self.upstream))
        try:
            yield
        finally:
            pump.cancel()  # nothing it awaited is lost: it goes back to the mailbox
            with suppress(asyncio.CancelledError):
                await pump
            await aio.disconnect(self.upstream)

    async def pump(self, upstream: websocket.Socket) -> None:
        # A bounded run starts relaying once its audience is there; until then what the
        # upstream sends waits in the mailbox, in order.
        await self.all_joined.wait()
        for n in range(1, self.count + 1):
            frame = await aio.receive_app_frame(upstream, Infinity)
            text = frame.text if isinstance(frame, Text) else repr(frame.data)
            for client in list(self.clients):
                await client.send_text(text)
            print(f"relayed {n}/{self.count} {text!r} -> {len(self.clients)} clients")
        self.finished.set()

    async def feed(self, client: WebSocket) -> None:
        await client.accept()
        self.clients[client] = None
        await client.send_text(WELCOME)
        if len(self.clients) == self.audience:
            self.all_joined.set()
        assert self.upstream is not None
        try:
            while True:
                websocket.send_text(self.upstream, await client.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            self.clients.pop(client, None)


class Server(uvicorn.Server):
    """uvicorn on the running loop, with an event for "listening"."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


@asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[int]:
    """Serve `app` with uvicorn on 127.0.0.1 on this event loop; yield its port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws="wsproto"
    )
    server = Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.wait_for(server.listening.wait(), STEP_TIMEOUT)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, STEP_TIMEOUT)


async def relay(upstream_url: str) -> None:
    print(f"upstream {upstream_url}")
    app = Relay(upstream_url, COUNT, CLIENTS)
    async with served(app.app) as port, AsyncExitStack() as clients:
        url = f"ws://127.0.0.1:{port}/feed"
        print(f"relay listening on {url}; {CLIENTS} clients join")
        joined = [await clients.enter_async_context(connect(url)) for _ in range(CLIENTS)]
        for client in joined:
            assert await asyncio.wait_for(client.recv(), STEP_TIMEOUT) == WELCOME
        for n in range(COUNT):
            await joined[0].send(f"message {n}")  # to the relay, which sends it upstream
        await asyncio.wait_for(app.finished.wait(), STEP_TIMEOUT)
        for index, client in enumerate(joined, 1):
            got = [await asyncio.wait_for(client.recv(), STEP_TIMEOUT) for _ in range(COUNT)]
            print(f"client {index} received {got}")
    print(f"done: {COUNT} messages relayed to {CLIENTS} clients")


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(relay(sys.argv[1]))
        return
    with EmbeddedServer() as server:
        asyncio.run(relay(server.ws_url("/ws")))


if __name__ == "__main__":
    main()

"""gluegun_actors.aio inside a real asyncio app: the Starlette relay of
examples/asyncio_relay.py, served by uvicorn.

The relay opens one upstream WebSocket with gluegun_actors (to the embedded server's `/ws`
echo, or to the `websockets` package's echo server) and sends each upstream message to
all of its own WebSocket clients; what a client sends goes upstream, so the echo comes
back to everyone. uvicorn, the relay and the `websockets` clients share one event loop in
the test's thread: a wait that blocked the loop would stall them all.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect

from gluegun_actors import mailbox
from gluegun_actors.mailbox import Mailbox
from gluegun_actors.testing import EmbeddedServer

T = TypeVar("T")

RUN_LIMIT = 30.0
"""Seconds one test's event loop may run."""
STEP_LIMIT = 5.0
"""Seconds one step (start, a message, a stop) may take."""
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "asyncio_relay.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("asyncio_relay", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()


def run(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(main, RUN_LIMIT))


async def join(port: int) -> ClientConnection:
    client = await connect(f"ws://127.0.0.1:{port}/feed")
    assert await asyncio.wait_for(client.recv(), STEP_LIMIT) == example.WELCOME
    return client


async def read(client: ClientConnection, count: int) -> list[str]:
    return [str(await asyncio.wait_for(client.recv(), STEP_LIMIT)) for _ in range(count)]


async def relay_round(
    upstream_url: str, owner: Mailbox | None, clients: int, count: int
) -> tuple[list[str], list[list[str]]]:
    """`clients` clients join the relay; the first sends `count` messages; returns what
    was sent and what each client received."""
    relay = example.Relay(upstream_url, count, clients, owner)
    async with example.served(relay.app) as port:
        joined = [await join(port) for _ in range(clients)]
        try:
            sent = [f"message {n}" for n in range(count)]
            for text in sent:
                await joined[0].send(text)
            received = await asyncio.gather(*(read(client, count) for client in joined))
            await asyncio.wait_for(relay.finished.wait(), STEP_LIMIT)
        finally:
            for client in joined:
                await client.close()
    return sent, list(received)


@pytest.mark.parametrize("owner", ["loop thread", "dedicated"])
def test_relay_sends_every_embedded_server_message_to_every_client_in_order(
    embedded_server: EmbeddedServer, owner: str
) -> None:
    box = Mailbox("relay upstream") if owner == "dedicated" else None
    sent, received = run(relay_round(embedded_server.ws_url("/ws"), box, 3, 40))
    assert received == [sent, sent, sent]
    assert mailbox.current().messages() == []
    assert box is None or box.messages() == []


def test_relay_sends_every_websockets_server_message_to_every_client_in_order(
    websockets_port: int,
) -> None:
    sent, received = run(relay_round(f"ws://127.0.0.1:{websockets_port}/", None, 2, 60))
    assert received == [sent, sent]

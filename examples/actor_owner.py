"""A Pykka actor as the owner: the connection's messages arrive in its `on_receive`.

Inside an actor (in `on_start` or a handler) a connection opened without an `owner`
option belongs to that actor, and the streams it starts reply to it, as an Erlang
process owns what it opens. Each message is a frozen dataclass, so `on_receive` is one
`match` statement: nothing blocks and nothing polls. The actor here

1. opens the connection in `on_start`;
2. on `GunUp`, sends `GET /`;
3. on the last `GunData` of that response, upgrades to WebSocket at the URL's path;
4. on `GunUpgrade`, sends "hello";
5. on the echo, sends a close frame; the server answers it and closes, so the actor
   gets `GunDown`, then `Down` when the connection actor stops (with `retry=0` it does
   not reconnect).

Run: python examples/actor_owner.py [ws://host:port/path]
Without a URL it starts the embedded server and uses its `/echo` route. The server of a
URL must answer `GET /` and take a WebSocket upgrade at the path.
"""

from __future__ import annotations

from typing import Any

import pykka
from _server import server_url, target

from gluegun_actors import connection, http, websocket
from gluegun_actors.events import (
    Down,
    GunData,
    GunDown,
    GunError,
    GunResponse,
    GunUp,
    GunUpgrade,
    GunWs,
)
from gluegun_actors.message import Close, Text

WAIT_SECONDS = 10.0
"""Bound on the whole exchange, from the main thread's side."""


class EchoClient(pykka.ThreadingActor):
    """Talks HTTP, then WebSocket, to one server, driven by the messages it receives."""

    def __init__(self, url: str, finished: pykka.ThreadingFuture[None]) -> None:
        super().__init__()
        self.url = url
        self.finished = finished
        self.conn: connection.Connection | None = None

    def on_start(self) -> None:
        # No owner option: inside an actor the owner is the actor itself.
        self.conn = connection.open_url(self.url, connection.options(retry=0))

    def on_receive(self, message: Any) -> None:
        match message:
            case GunUp(conn, protocol):
                print(f"GunUp        {protocol.value}")
                http.get(conn, "/")  # reply_to defaults to this actor too
            case GunResponse(_, _, _, status, headers):
                print(f"GunResponse  {status}, {len(headers)} headers")
            case GunData(conn, _, is_fin, data):
                print(f"GunData      {data!r}")
                if is_fin:  # the response is complete: the connection is free to upgrade
                    websocket.upgrade(conn, target(self.url), [])
            case GunUpgrade(conn, stream, protocols, _):
                print(f"GunUpgrade   {protocols}")
                websocket.send(conn, stream, Text("hello"))
            case GunWs(conn, stream, Text(text)):
                print(f"GunWs        Text({text!r})")
                websocket.send(conn, stream, Close(1000, "done"))
            case GunWs(_, _, Close(code, reason)):
                print(f"GunWs        Close({code}, {reason!r})")
            case GunDown(_, _, reason, killed_streams):
                print(f"GunDown      reason={reason!r}, {len(killed_streams)} killed streams")
            case GunError(conn, _, reason):
                print(f"GunError     {reason!r}")
                connection.close(conn)  # Down follows
            case Down(_, reason):
                print(f"Down         reason={reason!r}")
                self.finished.set(None)
            case _:
                print(f"(unexpected) {message!r}")

    def on_stop(self) -> None:
        if self.conn is not None:
            connection.close(self.conn)  # no-op once it has stopped


def main(url: str) -> None:
    finished: pykka.ThreadingFuture[None] = pykka.ThreadingFuture()
    client = EchoClient.start(url, finished)
    try:
        finished.get(timeout=WAIT_SECONDS)  # raises pykka.Timeout if it never ends
    finally:
        client.stop()
    print("done")


if __name__ == "__main__":
    with server_url("ws", "/echo") as url:
        main(url)

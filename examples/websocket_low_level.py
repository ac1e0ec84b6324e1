"""The Gluegun low-level flow: the caller owns the connection and upgrades it.

Run: python examples/websocket_low_level.py [ws://host:port]
"""

from __future__ import annotations

from _server import echo_server

from gluegun_actors import connection, message, websocket


def low_level_echo(conn: connection.Connection) -> str:
    timeout = connection.Milliseconds(5000)
    protocol = connection.await_up(conn, timeout)
    stream = websocket.upgrade_with_protocol(conn, protocol, "/echo", [])
    websocket.await_upgrade(conn, stream, timeout)
    websocket.send(conn, stream, message.Text("hello"))
    match websocket.receive(conn, stream, timeout):
        case message.Text(reply):
            return reply
        case _:
            raise RuntimeError("received a non-text frame")


if __name__ == "__main__":
    with echo_server() as (host, port):
        conn = connection.open(host, port)
        try:
            print(low_level_echo(conn))
        finally:
            connection.close(conn)

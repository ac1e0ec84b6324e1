"""The Gluegun low-level flow: the caller owns the connection and upgrades it.

Use it when you open and close the connection yourself, or want to see the negotiated
protocol before upgrading (`upgrade_with_protocol` refuses HTTP/2 before sending
anything). Call `await_upgrade` before `receive`: the upgrade's acknowledgement comes
first, and `receive` raises if it is still waiting in the mailbox.

Run: python examples/websocket_low_level.py [ws://host:port/path]
Without a URL it starts the embedded server and uses its `/echo` route.
"""

from __future__ import annotations

from _server import server_url, target

from gluegun_actors import connection, message, websocket


def low_level_echo(conn: connection.Connection, path: str) -> str:
    timeout = connection.Milliseconds(5000)
    protocol = connection.await_up(conn, timeout)  # GunUp: connected, and over what
    stream = websocket.upgrade_with_protocol(conn, protocol, path, [])
    websocket.await_upgrade(conn, stream, timeout)  # GunUpgrade: the server said 101
    websocket.send(conn, stream, message.Text("hello"))
    match websocket.receive(conn, stream, timeout):
        case message.Text(reply):
            return reply
        case _:
            raise RuntimeError("received a non-text frame")


if __name__ == "__main__":
    with server_url("ws", "/echo") as url:
        conn = connection.open_url(url)  # host, port and TCP or TLS from the URL
        try:
            print(low_level_echo(conn, target(url)))
        finally:
            connection.close(conn)

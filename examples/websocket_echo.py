"""The Gluegun reusable Socket API flow: connect, send, receive, close.

Run: python examples/websocket_echo.py [ws://host:port]
"""

from __future__ import annotations

from _server import echo_server

from gluegun_actors import connection, message, websocket


def echo(host: str, port: int) -> None:
    socket = websocket.connect(host=host, port=port, path="/echo", options=websocket.options())
    websocket.send_text(socket, "hello")
    match websocket.receive_app_frame(socket):
        case message.Text(reply):
            print(reply)
        case _:
            print("received a non-text frame")
    websocket.close(socket)  # a close frame only: the connection is still ours to close
    connection.close(socket.connection)


if __name__ == "__main__":
    with echo_server() as (host, port):
        echo(host, port)

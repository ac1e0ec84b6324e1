"""The Gluegun reusable Socket API flow: connect, send, receive, close.

A `Socket` is yours until you close it: `websocket.close` sends a close frame and
leaves the connection open, so close `socket.connection` yourself when you are done
(or use `with_socket`, as in websocket_echo_once.py).

Run: python examples/websocket_echo.py [ws://host:port/path]
Without a URL it starts the embedded server and uses its `/echo` route.
"""

from __future__ import annotations

from _server import server_url

from gluegun_actors import GluegunError, connection, message, websocket


def echo(url: str) -> None:
    # Open a connection, upgrade it at the URL's path and wait for both. The same call
    # takes host=, port= and path= instead of a URL.
    socket = websocket.connect(url, options=websocket.options())
    try:
        websocket.send_text(socket, "hello")
        match websocket.receive_app_frame(socket):  # pings and pongs are handled for us
            case message.Text(reply):
                print(reply)
            case _:
                print("received a non-text frame")
        websocket.close(socket)  # a close frame only: the connection is still ours
    except GluegunError as error:
        print(f"websocket receive failed: {error}")
    finally:
        connection.close(socket.connection)


if __name__ == "__main__":
    with server_url("ws", "/echo") as url:
        echo(url)

"""The Gluegun one-shot flow: with_socket opens, runs the callback, closes everything.

`with_socket` connects and upgrades, calls the callback with the socket, then closes the
WebSocket and the connection, also when the callback raises. It returns what the
callback returned.

Run: python examples/websocket_echo_once.py [ws://host:port/path]
Without a URL it starts the embedded server and uses its `/echo` route.
"""

from __future__ import annotations

from _server import server_url

from gluegun_actors import message, websocket


def send_and_receive(socket: websocket.Socket) -> message.AppFrame:
    websocket.send_text(socket, "hello")
    return websocket.receive_app_frame(socket)


def echo_once(url: str) -> None:
    reply = websocket.with_socket(url, options=websocket.options(), callback=send_and_receive)
    assert isinstance(reply, message.Text)
    print(reply.text)


if __name__ == "__main__":
    with server_url("ws", "/echo") as url:
        echo_once(url)

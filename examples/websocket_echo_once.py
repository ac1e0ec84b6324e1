"""The Gluegun one-shot flow: with_socket opens, runs the callback, closes everything.

Run: python examples/websocket_echo_once.py [ws://host:port]
"""

from __future__ import annotations

from _server import echo_server

from gluegun_actors import message, websocket


def send_and_receive(socket: websocket.Socket) -> message.AppFrame:
    websocket.send_text(socket, "hello")
    return websocket.receive_app_frame(socket)


def echo_once(host: str, port: int) -> None:
    reply = websocket.with_socket(
        host=host,
        port=port,
        path="/echo",
        options=websocket.options(),
        callback=send_and_receive,
    )
    assert isinstance(reply, message.Text)
    print(reply.text)


if __name__ == "__main__":
    with echo_server() as (host, port):
        echo_once(host, port)

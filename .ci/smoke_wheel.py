"""Smoke test of an installed wheel: run by CI with the python of a clean virtual
environment where only the wheel (and its dependencies) is installed.

Checks that the package imports from that environment (not from a checkout), that its
type marker and the testing servers came along, and that one HTTP GET and one WebSocket
echo against the embedded server work.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gluegun_actors
from gluegun_actors import connection, http, message, websocket
from gluegun_actors.testing import EmbeddedServer


def check_installed() -> None:
    package = Path(gluegun_actors.__file__).resolve().parent
    assert package.is_relative_to(Path(sys.prefix).resolve()), f"imported from {package}"
    assert (package / "py.typed").is_file(), "py.typed is missing from the wheel"
    print(f"gluegun_actors {gluegun_actors.__version__} from {package}")


def check_http_and_websocket() -> None:
    with EmbeddedServer() as server:
        conn = connection.open_url(server.url(), connection.options(retry=0))
        try:
            connection.await_up(conn, 5000)
            stream = http.get(conn, "/")
            assert http.await_response(conn, stream, 5000).status == 200
            body = http.await_body(conn, stream, 5000)
            assert body == b"hello from gluegun_actors", body
        finally:
            connection.close(conn)
        print(f"HTTP GET / -> {body!r}")

        def echo(socket: websocket.Socket) -> message.AppFrame:
            websocket.send_text(socket, "smoke")
            return websocket.receive_app_frame(socket)

        reply = websocket.with_socket(server.ws_url("/echo"), callback=echo)
        assert reply == message.Text("smoke"), reply
        print(f"WebSocket echo -> {reply!r}")


if __name__ == "__main__":
    check_installed()
    check_http_and_websocket()
    print("wheel smoke test passed")

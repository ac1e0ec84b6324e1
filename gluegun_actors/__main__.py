"""`python -m gluegun_actors demo [URL]`: a guided tour that prints what the owner receives.

Without a URL it starts the embedded server on 127.0.0.1 and talks to it: a GET, an echo
POST, a streamed upload, a chunked response, a pipelined pair, then a WebSocket echo.
With an `http://` URL it GETs it; with a `ws://` URL it sends one text message.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from contextlib import ExitStack

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors.message import Text


def _show(label: str, message: object) -> None:
    print(f"  {label:<22} {message!r}")


def _drain(conn: connection.Connection) -> None:
    for message in mailbox.current().messages():
        if getattr(message, "conn", None) is conn:
            _show("(also received)", message)
    connection.flush(conn)


def demo_http(host: str, port: int, path: str) -> None:
    conn = connection.open(host, port, connection.options(retry=0))
    try:
        protocol = connection.await_up(conn, connection.Milliseconds(5000))
        print(f"connection up, protocol {protocol.value!r}")
        stream = http.get(conn, path, [("accept", "*/*")])
        response = http.await_response(conn, stream, 5000)
        _show(f"GET {path}", response)
        body = b"" if response.is_fin else http.await_body(conn, stream, 5000)
        _show("body", body[:200])
    finally:
        connection.close(conn)


def demo_embedded() -> None:
    from gluegun_actors.testing import EmbeddedServer

    with ExitStack() as stack:
        server = stack.enter_context(EmbeddedServer())
        print(f"embedded server on 127.0.0.1:{server.port}\n")
        conn = connection.open("127.0.0.1", server.port)
        stack.callback(connection.close, conn)
        owner = mailbox.current()

        print("== HTTP/1.1 ==")
        protocol = connection.await_up(conn, connection.Milliseconds(5000))
        _show("await_up ->", protocol)

        stream = http.get(conn, "/")
        _show("GET / ->", http.await_response(conn, stream, 5000))
        _show("await_body ->", http.await_body(conn, stream, 5000))

        stream = http.post(conn, "/echo", [("content-type", "text/plain")], b"ping")
        _show("POST /echo ->", http.await_response(conn, stream, 5000))
        _show("await_body ->", http.await_body(conn, stream, 5000))

        stream = http.headers(conn, "POST", "/echo", [])
        http.data(conn, stream, False, b"streamed ")
        http.data(conn, stream, True, b"upload")
        http.await_response(conn, stream, 5000)
        _show("streamed upload ->", http.await_body(conn, stream, 5000))

        stream = http.get(conn, "/chunked?n=3")
        print("  GET /chunked?n=3, every message as it arrives:")
        while True:
            message = http.await_next(conn, stream, 5000)
            _show("", message)
            if getattr(message, "is_fin", False):
                break

        first, second = http.get(conn, "/delay?ms=50"), http.get(conn, "/")
        print("  two pipelined requests, answered in order:")
        for stream in (first, second):
            _show("", http.await_response(conn, stream, 5000))
            http.await_body(conn, stream, 5000)
        _show("mailbox left", len(owner))

        print("\n== WebSocket (Socket API) ==")

        def echo(socket: websocket.Socket) -> object:
            websocket.send_text(socket, "hello")
            return websocket.receive_app_frame(socket)

        reply = websocket.with_socket(
            host="127.0.0.1",
            port=server.port,
            path="/echo",
            options=websocket.options(),
            callback=echo,
        )
        _show("echo ->", reply)

        print("\n== WebSocket (low level) ==")
        stream = websocket.upgrade_with_protocol(conn, protocol, "/echo", [])
        _show("await_upgrade ->", websocket.await_upgrade(conn, stream, 5000))
        websocket.send(conn, stream, [Text("one"), Text("two")])
        _show("receive ->", websocket.receive(conn, stream, 5000))
        _show("receive ->", websocket.receive(conn, stream, 5000))
        _drain(conn)
    print("\ndone: server stopped, connections closed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gluegun_actors")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo (embedded server when no URL is given)")
    demo.add_argument("url", nargs="?", help="http://host:port/path or ws://host:port/path")
    args = parser.parse_args(argv)
    if args.url is None:
        demo_embedded()
        return 0
    url = urllib.parse.urlsplit(args.url)
    host = url.hostname or "localhost"
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    if url.scheme in ("ws", "wss"):
        options = websocket.options(
            connection=connection.options(transport="tls" if url.scheme == "wss" else "tcp")
        )
        with websocket.connect(
            host=host,
            port=url.port or (443 if url.scheme == "wss" else 80),
            path=path,
            options=options,
        ) as socket:
            websocket.send_text(socket, "hello from gluegun_actors")
            _show("reply", websocket.receive_app_frame(socket))
        return 0
    if url.scheme != "http":
        print(f"unsupported scheme {url.scheme!r}: use http:// or ws://", file=sys.stderr)
        return 2
    demo_http(host, url.port or 80, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

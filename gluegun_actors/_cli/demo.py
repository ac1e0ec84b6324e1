"""`gluegun demo [URL]`: a guided tour that prints what the owner receives.

Without a URL it starts the embedded server on 127.0.0.1 and talks to it: a GET, an echo
POST, a streamed upload, a chunked response, a pipelined pair, then a WebSocket echo.
With an `http(s)://` URL it GETs it; with a `ws(s)://` URL it sends one text message and
prints the echo.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from typing import Any

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors._cli.connecting import (
    add_connect_arguments,
    connect_failure,
    connect_options,
    connected,
    url_argument,
)
from gluegun_actors._cli.exits import ExitCode
from gluegun_actors._cli.progress import AttemptWatch, Progress
from gluegun_actors._url import Url
from gluegun_actors.errors import GluegunError
from gluegun_actors.message import Text

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the demo (embedded server when no URL is given)",
        description="A guided tour that prints what the owner receives. Without a URL it "
        "starts the embedded server; with an http(s):// URL it GETs it; with a ws(s):// "
        "URL it sends one text message and prints the echo.",
    )
    parser.add_argument(
        "url",
        nargs="?",
        type=url_argument,
        metavar="URL",
        help="http://host:port/path or ws://host:port/path",
    )
    add_connect_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    url: Url | None = args.url
    if url is None:
        demo_embedded()
        return ExitCode.OK
    with Progress() as progress:
        options, watch = connect_options(args, url, progress)
        if url.websocket:
            demo_websocket(url, options, watch)
        else:
            demo_http(url, options, watch)
    return ExitCode.OK


def _show(label: str, message: object) -> None:
    print(f"  {label:<22} {message!r}")


def _drain(conn: connection.Connection) -> None:
    for message in mailbox.current().messages():
        if getattr(message, "conn", None) is conn:
            _show("(also received)", message)
    connection.flush(conn)


def demo_http(url: Url, options: connection.Options, watch: AttemptWatch) -> None:
    with connected(url, options, watch) as (conn, protocol):
        print(f"connection up, protocol {protocol.value!r}")
        stream = http.get(conn, url.target, [("accept", "*/*")])
        response = http.await_response(conn, stream, 5000)
        _show(f"GET {url.target}", response)
        body = b"" if response.is_fin else http.await_body(conn, stream, 5000)
        _show("body", body[:200])


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


def demo_websocket(url: Url, options: connection.Options, watch: AttemptWatch) -> None:
    ws_options = websocket.options(connection=options, timeout=None)
    try:
        socket = websocket.connect(url=str(url), options=ws_options)
    except GluegunError as error:
        raise connect_failure(url, error, watch) from None
    with socket:
        websocket.send_text(socket, "hello from gluegun_actors")
        _show("reply", websocket.receive_app_frame(socket, 5000))

"""`gluegun serve`: the embedded HTTP/1.1 and WebSocket echo server, until Ctrl-C or SIGTERM.

Its first two lines on stdout are its URLs (`http://127.0.0.1:PORT/`, then the
WebSocket echo `ws://127.0.0.1:PORT/echo`), flushed at once so that a script can read
them; the routes are those of `gluegun_actors.testing.EmbeddedServer`. Both signals
stop it cleanly (open WebSockets get close 1001) and it exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from gluegun_actors._cli.exits import ExitCode, Failure
from gluegun_actors.testing import EmbeddedServer

__all__ = ["add_parser", "run"]

_ROUTES = (
    "routes: GET / | POST /echo | GET /chunked?n=3 | GET /stream?chunks=N&size=S&delay_ms=D | "
    "GET /status/CODE | GET /delay?ms=D | GET /headers | GET /inform | GET /trailers | "
    "WebSocket echo on /echo, and /ws/close?code=N, /ws/push?n=N&size=S, /ws/reject?status=N"
)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the embedded HTTP and WebSocket echo server",
        description="Run the embedded HTTP/1.1 and WebSocket echo server on 127.0.0.1 "
        "until Ctrl-C or SIGTERM; print its URLs first.",
    )
    parser.add_argument(
        "--port", type=int, default=0, metavar="N", help="the port to listen on (default: any)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", metavar="ADDRESS", help="the address (default 127.0.0.1)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise Failure(ExitCode.USAGE, f"--port must be in 0..65535, got {args.port}")
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        server = EmbeddedServer(args.host, args.port)
        try:
            server.start()
        except OSError as error:
            raise Failure(
                ExitCode.FAILED, f"cannot listen on {args.host}:{args.port}: {error.strerror}"
            ) from None
        try:
            print(server.url("/"), flush=True)
            print(server.ws_url("/echo"), flush=True)
            print(f"gluegun: {_ROUTES}; Ctrl-C stops", file=sys.stderr, flush=True)
            try:
                while not stop.wait(1.0):  # a timed wait: Ctrl-C lands between two
                    pass
            except KeyboardInterrupt:
                pass
        finally:
            server.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return ExitCode.OK

"""Peers for the benchmarks, each run in its own process: `python _servers.py KIND [--impl X]`.

Kinds:

- `ws-echo`: a WebSocket echo server. `--impl picows` (default when it installs) echoes
  frame by frame from a Cython frame parser on uvloop when uvloop is there; `--impl
  websockets` is the `websockets` asyncio server, echoing whole messages.
- `http`: an HTTP/1.1 server answering every request with a short fixed body (the
  embedded server's `/` body). `--impl uvicorn` (default) is uvicorn with httptools and
  uvloop when they are installed (h11 and asyncio otherwise); `--impl embedded` is
  `gluegun_actors.testing.EmbeddedServer` (a thread per client, h11).

The first line printed is `PORT <port> <description>`. The process raises its own
open-files limit, listens with a deep backlog (many connections arrive at once), and
exits when its stdin closes, so it never outlives the benchmark that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

HOST: Final = "127.0.0.1"
BACKLOG: Final = 16384
"""Listen backlog asked for (the kernel caps it at net.core.somaxconn)."""
MAX_FRAME: Final = 4 << 20
"""Largest frame or message the echo servers accept."""
HANDSHAKE_TIMEOUT: Final = 600.0
"""Seconds a client may take from TCP accept to its upgrade request: thousands of clients
connecting at once from one busy process are slow to send it, and must not be cut off."""
HELLO: Final = b"hello from gluegun_actors"


def _announce(port: int, description: str) -> None:
    print(f"PORT {port} {description}", flush=True)


def _exit_when_stdin_closes() -> None:
    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(BACKLOG)
    return sock


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> str:
    """Run `main` on uvloop when it is installed; returns the loop's name."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
        return "asyncio"
    uvloop.run(main())
    return "uvloop"


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# -- WebSocket echo -------------------------------------------------------------------------


def serve_picows() -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif kind == WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())
            elif kind != WSMsgType.PONG:
                transport.send(kind, frame.get_payload_as_memoryview(), frame.fin)

    loop_name = "uvloop" if _has("uvloop") else "asyncio"

    async def main() -> None:
        sock = _listening_socket()
        server = await ws_create_server(
            lambda _request: Echo(),
            sock=sock,
            max_frame_size=MAX_FRAME,
            backlog=BACKLOG,
            websocket_handshake_timeout=HANDSHAKE_TIMEOUT,
        )
        _announce(sock.getsockname()[1], f"picows echo on {loop_name}")
        await server.serve_forever()

    _run(main)


def serve_websockets() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    loop_name = "uvloop" if _has("uvloop") else "asyncio"

    async def main() -> None:
        sock = _listening_socket()
        async with serve(
            echo,
            sock=sock,
            compression=None,
            max_size=MAX_FRAME,
            open_timeout=HANDSHAKE_TIMEOUT,
            ping_interval=None,
        ) as server:
            _announce(sock.getsockname()[1], f"websockets asyncio echo on {loop_name}")
            await server.serve_forever()

    _run(main)


# -- HTTP -----------------------------------------------------------------------------------


async def hello_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """A minimal ASGI app: every request gets 200 and `HELLO`."""
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": HELLO})


def serve_uvicorn() -> None:
    import uvicorn

    parser = "httptools" if _has("httptools") else "h11"
    loop = "uvloop" if _has("uvloop") else "asyncio"
    config = uvicorn.Config(
        hello_app,
        http=parser,
        loop=loop,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=BACKLOG,
    )
    sock = _listening_socket()
    _announce(sock.getsockname()[1], f"uvicorn {uvicorn.__version__} ({parser}, {loop})")
    uvicorn.Server(config).run(sockets=[sock])


def serve_embedded() -> None:
    from gluegun_actors.testing import EmbeddedServer

    with EmbeddedServer(compression=False, max_connections=1 << 16) as server:
        _announce(server.port, "gluegun_actors EmbeddedServer (thread per client, h11)")
        threading.Event().wait()


SERVERS: Final = {
    ("ws-echo", "picows"): serve_picows,
    ("ws-echo", "websockets"): serve_websockets,
    ("http", "uvicorn"): serve_uvicorn,
    ("http", "embedded"): serve_embedded,
}


def default_impl(kind: str) -> str:
    if kind == "ws-echo":
        return "picows" if _has("picows") else "websockets"
    return "uvicorn"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("kind", choices=sorted({kind for kind, _ in SERVERS}))
    args.add_argument("--impl", default="auto")
    options = args.parse_args()
    impl = default_impl(options.kind) if options.impl == "auto" else options.impl
    serve = SERVERS.get((options.kind, impl))
    if serve is None:
        args.error(f"no {impl!r} implementation of {options.kind!r}")
    logging.basicConfig(level=logging.ERROR)
    _raise_nofile()
    _exit_when_stdin_closes()
    serve()


if __name__ == "__main__":
    main()

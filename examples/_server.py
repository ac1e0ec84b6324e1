"""Where the examples connect: a URL from the command line, or the embedded server."""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def echo_server() -> Iterator[tuple[str, int]]:
    """`(host, port)` of `ws://host:port` given as argv[1], else of a local embedded server."""
    if len(sys.argv) > 1:
        url = urllib.parse.urlsplit(sys.argv[1])
        yield url.hostname or "localhost", url.port or 80
        return
    from gluegun_actors.testing import EmbeddedServer

    with EmbeddedServer() as server:
        yield "127.0.0.1", server.port

"""Where the examples connect: the URL given on the command line, else the embedded server.

Every example takes an optional URL as its first argument. Without one it starts
`gluegun_actors.testing.EmbeddedServer` on 127.0.0.1 (an HTTP/1.1 and WebSocket echo
server that ships with the package) for the length of the run, and uses one of its routes.
"""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal


@contextmanager
def server_url(scheme: Literal["http", "ws"], path: str) -> Iterator[str]:
    """The URL in argv[1], else `scheme://127.0.0.1:PORT/path` of an embedded server."""
    if len(sys.argv) > 1:
        yield sys.argv[1]
        return
    from gluegun_actors.testing import EmbeddedServer

    with EmbeddedServer() as server:
        yield f"{scheme}://127.0.0.1:{server.port}{path}"


def target(url: str) -> str:
    """What to ask for at `url`: its path (`/` when it has none) and its query."""
    parts = urllib.parse.urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

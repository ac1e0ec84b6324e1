"""Checks of what callers pass to the public functions, made before anything is sent.

Each raises `InvalidArgument` (a `TypeError`) for a value of the wrong type, or
`LocalProtocolError` for a value HTTP forbids, with a message that says what to pass.
"""

from __future__ import annotations

import re
from typing import Any, Final

import pykka

from gluegun_actors._connection.destination import caller
from gluegun_actors._connection.handle import Connection
from gluegun_actors._protocol.http1_request import TOKEN_TEXT
from gluegun_actors._types import Headers, StreamRef
from gluegun_actors.errors import InvalidArgument, LocalProtocolError
from gluegun_actors.mailbox import Mailbox

__all__ = [
    "check_address",
    "check_connection",
    "check_headers",
    "check_reply_to",
    "check_stream",
]

_FORBIDDEN_IN_VALUE: Final = re.compile(r"[\r\n\x00]")


def check_address(host: object, port: object) -> tuple[str, int]:
    """A host name or address and a TCP port, checked."""
    if not isinstance(host, str) or not host:
        raise InvalidArgument(f"host must be a non-empty str, got {host!r}")
    if "@" in host:
        raise InvalidArgument(
            "host must be a name or an address, not user@host "
            f"(got '***@{host.rpartition('@')[2]}'): "
            "credentials go in a header, e.g. [('authorization', 'Basic ...')]"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidArgument(f"port must be an int in 1..65535, got {port!r}")
    return host, port


def check_connection(conn: object) -> Connection:
    if not isinstance(conn, Connection):
        raise InvalidArgument(f"expected a Connection (from connection.open), got {conn!r}")
    return conn


def check_stream(stream: object) -> StreamRef:
    if not isinstance(stream, StreamRef):
        raise InvalidArgument(
            f"expected a StreamRef (returned when the stream started), got {stream!r}"
        )
    return stream


def check_reply_to(reply_to: object) -> Mailbox | pykka.ActorRef[Any]:
    """A `reply_to` (None: the caller, see `destination.caller`), checked."""
    if reply_to is None:
        return caller()
    if not isinstance(reply_to, Mailbox | pykka.ActorRef):
        raise InvalidArgument(
            f"reply_to must be a gluegun_actors.mailbox.Mailbox or a pykka.ActorRef, "
            f"got {reply_to!r}"
        )
    return reply_to


def check_headers(headers: object, what: str = "headers") -> Headers:
    """Validate a header list from a caller; return it as an immutable tuple of str pairs.

    Takes a list or tuple of `(name, value)` pairs (str or bytes) or a dict.
    """
    if isinstance(headers, dict):
        items = list(headers.items())
    elif isinstance(headers, list | tuple):
        items = list(headers)
    else:
        raise InvalidArgument(
            f"{what} must be a list of (name, value) pairs, got {type(headers).__name__}"
        )
    out: list[tuple[str, str]] = []
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise InvalidArgument(f"{what} must be (name, value) pairs, got {item!r}")
        name, value = item
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidArgument(f"header names and values must be str or bytes, got {item!r}")
        if not TOKEN_TEXT.fullmatch(name):
            raise LocalProtocolError(f"invalid header name {name!r}: it must be a non-empty token")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise LocalProtocolError(
                f"header {name!r} has a value with CR, LF or NUL (not shown: it may be a "
                "secret, e.g. a token read from a file with its newline); such a value "
                "would split the header block, so nothing was sent"
            )
        out.append((name, value))
    return tuple(out)

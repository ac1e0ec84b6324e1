"""The response side of HTTP/1.1: what the core needs around h11's response parser.

h11 parses responses (framing by content-length, chunked, read-until-close, no body for
HEAD/204/304, 1xx, trailers, 101); this module holds the small rules around it: the
stand-in request that tells the parser how the next response is framed, whether a
response lets the connection carry on, header block sizes, and one fast path,
`whole_101`, for the plain 101 head that nearly every WebSocket handshake gets in one
read. It accepts only what h11 would and yields the same fields
(`tests/test_differential_http1.py` proves it).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TypeAlias

import h11

from gluegun_actors._protocol.http1_request import FIELD_VALUE, TOKEN
from gluegun_actors._types import Headers

__all__ = [
    "RawHeaders",
    "comma_tokens",
    "head_size",
    "join_pieces",
    "response_keeps_alive",
    "stand_in",
    "str_headers",
    "whole_101",
]

RawHeaders: TypeAlias = Sequence[tuple[bytes, bytes]]

_STATUS_101 = re.compile(rb"HTTP/1\.1 101(?: ((?:[ \t]|[^\x00\s])*))?")
_FIELD_LINE = re.compile(rb"(" + TOKEN.pattern + rb"):[ \t]*(" + FIELD_VALUE.pattern + rb")[ \t]*")


def str_headers(headers: RawHeaders) -> Headers:
    """Header pairs from h11 (lower-case names) as latin-1 str pairs."""
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)


def comma_tokens(headers: RawHeaders, name: bytes) -> set[bytes]:
    """Lower-cased comma-separated tokens of every `name` header."""
    tokens: set[bytes] = set()
    for key, value in headers:
        if key == name:
            tokens.update(token.strip().lower() for token in value.split(b","))
    return tokens


def response_keeps_alive(event: h11.Response) -> bool:
    """Whether the connection can carry another response after this one (RFC 9112 9.3)."""
    tokens = comma_tokens(event.headers, b"connection")
    if b"close" in tokens:
        return False
    return event.http_version != b"1.0" or b"keep-alive" in tokens


def head_size(reason: bytes, headers: RawHeaders) -> int:
    """Size of a parsed header block as it was on the wire (to within whitespace)."""
    size = 17 + len(reason)  # "HTTP/1.1 200 " + reason + CRLF, and the closing CRLF
    for name, value in headers:
        size += len(name) + len(value) + 4
    return size


@functools.lru_cache(maxsize=32)
def stand_in(method: bytes, upgrade: bool) -> h11.Request:
    """A request that frames the answer as `method` (and an upgrade offer) would; immutable,
    so every connection shares one per kind."""
    headers = [(b"host", b"stand-in")]
    if upgrade:
        headers += [(b"connection", b"upgrade"), (b"upgrade", b"stand-in")]
    return h11.Request(method=method, target=b"/", headers=headers)


def join_pieces(pieces: list[bytes]) -> bytes:
    """One immutable bytes object from `pieces` (h11 hands out bytearrays), copying once."""
    if len(pieces) == 1:
        piece = pieces[0]
        return piece if type(piece) is bytes else bytes(piece)
    return b"".join(pieces)


def whole_101(data: bytes, max_head: int) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
    """A whole, plain 101 head at the start of `data`: its fields and the bytes after it.

    None for anything it is not sure of (split, folded, bare line feeds, a field outside
    the grammar, content-length or transfer-encoding, near the size limit): such a head is
    left to h11, so what is accepted, and the fields, are the same either way.
    """
    end = data.find(b"\r\n\r\n", 0, max_head)
    if end < 0:
        return None
    status_line, *lines = data[:end].split(b"\r\n")
    status = _STATUS_101.fullmatch(status_line)
    if status is None:
        return None
    headers = []
    for line in lines:
        field = _FIELD_LINE.fullmatch(line)
        if field is None:
            return None
        name = field[1].lower()
        if name == b"content-length" or name == b"transfer-encoding":
            return None
        headers.append((name, field[2]))
    if head_size(status[1] or b"", headers) > max_head:
        return None
    return headers, data[end + 4 :]

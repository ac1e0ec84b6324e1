"""The request side of HTTP/1.1: the grammar a request must follow, checked and serialized
in one pass.

`prepare_request` applies the rules h11 applies to a request (RFC 9110 5.1/5.5, RFC 9112
3.2: token method, target, field names and values, one host, agreeing content-lengths
collapsed, transfer-encoding only `chunked`) while it writes the head, so a request
HTTP/1.1 forbids raises `LocalProtocolError` before a byte is queued. It is faster than
building an `h11.Request` to validate and serializing it again; `tests/test_differential_http1.py`
proves it gives h11's verdicts and bytes.
"""

from __future__ import annotations

import re

from gluegun_actors._protocol.http1_exchange import Exchange, Framing, SendState
from gluegun_actors._types import Headers, StreamRef
from gluegun_actors.errors import LocalProtocolError

__all__ = [
    "FIELD_VALUE",
    "HOST_FORBIDDEN",
    "TOKEN",
    "TOKEN_TEXT",
    "check_request",
    "host_header_value",
    "prepare_request",
]

HOST_FORBIDDEN = re.compile(r"[\x00-\x20\x7f/?#@]")
"""Characters that cannot be in a Host header made from a host name."""

# RFC 9110 5.1/5.5 and RFC 9112 3.2: the grammar a request line and its fields must follow.
TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
TOKEN_TEXT = re.compile(TOKEN.pattern.decode("ascii"))
"""`TOKEN` for text: header names from callers, subprotocols, extension parameters."""
_TARGET = re.compile(rb"[\x21-\x7e]+")
FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
_DIGITS = re.compile(rb"[0-9]{1,20}")


class _Invalid(Exception):
    """What makes a request one HTTP/1.1 forbids (the caller adds "nothing was sent")."""


def _request_head(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], host: bytes
) -> tuple[list[bytes], int | None, bool, bool, bool]:
    """Check a request against the grammar and serialize its head, without the blank line.

    Repeated `content-length` fields that agree collapse into one, `transfer-encoding` can
    only be `chunked`, and at most one `host` may be given (`host` goes first when none
    is). Returns the head's lines, the declared length, and whether it is chunked, offers
    an upgrade or asks to close.
    """
    if TOKEN.fullmatch(method) is None:
        raise _Invalid(f"illegal method characters {method!r}")
    if _TARGET.fullmatch(target) is None:
        raise _Invalid(
            f"illegal target characters in {target!r}: percent-encode spaces, tabs, "
            "control characters and non-ASCII"
        )
    lines = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    content_length: bytes | None = None
    hosts = 0
    chunked = upgrade = closes = False
    for name, value in headers:
        if TOKEN.fullmatch(name) is None:
            raise _Invalid(f"illegal header name {name!r}")
        if FIELD_VALUE.fullmatch(value) is None:
            raise _Invalid(
                f"illegal header value in {name.decode('latin-1')!r} (control characters, "
                "or spaces at either end; the value is not shown, it may be a secret)"
            )
        key = name.lower()
        if key == b"content-length":
            lengths = {length.strip() for length in value.split(b",")}
            if len(lengths) != 1:
                raise _Invalid("conflicting content-length values")
            value = lengths.pop()
            if _DIGITS.fullmatch(value) is None:
                raise _Invalid(f"bad content-length {value!r}")
            if content_length is not None:
                if content_length != value:
                    raise _Invalid("conflicting content-length values")
                continue
            content_length = value
        elif key == b"transfer-encoding":
            if chunked:
                raise _Invalid("more than one transfer-encoding field")
            value = value.lower()
            if value != b"chunked":
                raise _Invalid(f"transfer-encoding {value!r}: only chunked is supported")
            chunked = True
        elif key == b"host":
            hosts += 1
            if hosts > 1:
                raise _Invalid("more than one host field")
        elif key == b"upgrade":
            upgrade = True
        elif key == b"connection":
            closes = closes or b"close" in (t.strip().lower() for t in value.split(b","))
        lines.append(b"%s: %s\r\n" % (name, value))
    if not hosts:
        lines.insert(1, b"host: %s\r\n" % host)
    length = None if content_length is None else int(content_length)
    return lines, length, chunked, upgrade, closes


def host_header_value(host: str, port: int, default_port: int) -> str:
    """The Host header for `host:port`: port left out when default, IPv6 bracketed."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port == default_port else f"{host}:{port}"


def check_request(method: str, target: str, headers: Headers) -> None:
    """Refuse, in the caller and before anything is queued, a request HTTP/1.1 forbids.

    The same verdicts as `prepare_request` (which the connection runs again, as the
    sans-IO core must not trust its input): a caller learns of a tab in a method, a
    non-ASCII path, two `host` fields or `content-length` beside `transfer-encoding`
    from the call that made it, not from a `GunError` later.
    """
    _encoded_head(method, target, headers, b"")


def _encoded_head(
    method: str, target: str, headers: Headers, host: bytes
) -> tuple[bytes, list[bytes], int | None, bool, bool, bool]:
    """`_request_head` on the caller's text; every refusal a `LocalProtocolError`."""
    try:
        raw_method = method.encode("ascii")
        raw_target = target.encode("ascii")
    except UnicodeEncodeError:
        raise LocalProtocolError(
            f"the method and target must be ASCII (percent-encode the target): "
            f"{method!r} {target!r}; nothing was sent"
        ) from None
    try:
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    except UnicodeEncodeError:
        names = [name for name, value in headers if not _is_latin1(name + value)]
        raise LocalProtocolError(
            f"header names and values must be latin-1 text; not so: {names!r} "
            "(encode other text, e.g. RFC 8187); nothing was sent"
        ) from None
    try:
        head, content_length, chunked, upgrade, closes = _request_head(
            raw_method, raw_target, raw, host
        )
    except _Invalid as exc:
        raise LocalProtocolError(
            f"invalid request {method} {target}: {exc}; nothing was sent"
        ) from None
    if chunked and content_length is not None:
        raise LocalProtocolError(
            "a request cannot carry both content-length and transfer-encoding; nothing was sent"
        )
    return raw_method, head, content_length, chunked, upgrade, closes


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def prepare_request(
    stream: StreamRef,
    method: str,
    target: str,
    headers: Headers,
    body: bytes | None,
    is_fin: bool,
    host: bytes,
) -> tuple[Exchange, bool]:
    """Validate and serialize a request; returns it and whether it asks to close."""
    raw_method, head, content_length, chunked, upgrade, closes = _encoded_head(
        method, target, headers, host
    )
    if body is not None and type(body) is not bytes:
        body = bytes(body)

    exchange = Exchange(stream, raw_method, upgrade)
    if chunked:
        exchange.framing = Framing.CHUNKED
    elif content_length is not None:
        exchange.framing = Framing.LENGTH
        exchange.remaining = content_length
    elif not is_fin:
        exchange.framing = Framing.CHUNKED
        head.append(b"transfer-encoding: chunked\r\n")
    elif body is not None:
        exchange.framing = Framing.LENGTH
        exchange.remaining = len(body)
        head.append(b"content-length: %d\r\n" % len(body))
    head.append(b"\r\n")
    exchange.pending = [b"".join(head)]
    exchange.pending.extend(exchange.encode_body(body or b"", is_fin))
    exchange.send = SendState.HELD_COMPLETE if is_fin else SendState.HELD_STREAMING
    return exchange, closes

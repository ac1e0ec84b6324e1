"""The WebSocket opening handshake for a client (RFC 6455 4.1, RFC 7692 5-7).

The HTTP/1.1 core sends the upgrade request made from `handshake_request` and parses the
101 answer with h11; `validate_handshake` then checks that answer against what was
offered (accept key, upgrade tokens, the chosen subprotocol and extension) and returns
the `Negotiated` result a `WsConnection` is built from.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from gluegun_actors._protocol import ws_deflate
from gluegun_actors._protocol.http1_request import TOKEN_TEXT
from gluegun_actors._protocol.ws_deflate import DeflateParams
from gluegun_actors._protocol.ws_send import random_word
from gluegun_actors._types import Headers
from gluegun_actors.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "HANDSHAKE_HEADERS",
    "Handshake",
    "Negotiated",
    "accept_key",
    "check_extra_headers",
    "handshake_request",
    "validate_handshake",
]


HANDSHAKE_HEADERS: Final = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)
"""Headers the handshake sets itself; a caller's extra headers may not replace them."""

_ACCEPT_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the upgrade request offered, kept to check the 101 response against."""

    key: str
    headers: Headers
    subprotocols: tuple[str, ...] = ()
    compress: bool = False
    """Whether permessage-deflate was offered."""


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What the server chose: the subprotocol, and permessage-deflate's parameters if on."""

    protocol: str | None = None
    deflate: DeflateParams | None = None


def accept_key(key: str) -> str:
    """The `Sec-WebSocket-Accept` value a server must answer `key` with (RFC 6455 4.2.2)."""
    digest = hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def check_extra_headers(headers: Iterable[tuple[str, str]]) -> None:
    """Refuse an extra header that the handshake sets itself (`LocalProtocolError`)."""
    for name, _ in headers:
        if name.lower() in HANDSHAKE_HEADERS:
            raise LocalProtocolError(
                f"extra header {name!r} is part of the WebSocket handshake; "
                "use the subprotocols and compress options instead"
            )


def handshake_request(
    *,
    subprotocols: tuple[str, ...] = (),
    compress: bool = False,
    headers: Sequence[tuple[str, str]] = (),
) -> Handshake:
    """The WebSocket headers of an upgrade request, with a fresh random key.

    `headers` are the caller's extra headers (already checked). The HTTP core adds the
    method, target and `host`; the handshake's own header names are lower-case.
    """
    nonce = random_word() + random_word() + random_word() + random_word()  # 16 bytes
    key = base64.b64encode(nonce).decode("ascii")
    fields: list[tuple[str, str]] = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", key),
        ("sec-websocket-version", "13"),
    ]
    if subprotocols:
        fields.append(("sec-websocket-protocol", ", ".join(subprotocols)))
    if compress:
        fields.append(("sec-websocket-extensions", ws_deflate.OFFER))
    fields.extend(headers)
    return Handshake(key=key, headers=tuple(fields), subprotocols=subprotocols, compress=compress)


def validate_handshake(
    handshake: Handshake, status: int, headers: Sequence[tuple[str, str]]
) -> Negotiated:
    """Check a 101 response against what `handshake` offered (RFC 6455 4.1, RFC 7692 7.1).

    Raises `RemoteProtocolError` saying what was wrong; on success returns the chosen
    subprotocol and permessage-deflate parameters, ready for `WsConnection`.
    """
    if status != 101:
        raise RemoteProtocolError(
            f"the server answered the WebSocket upgrade with {status}, not 101 Switching Protocols"
        )
    fields: dict[str, list[str]] = {}
    for name, value in headers:
        fields.setdefault(name.lower(), []).append(value)

    if "websocket" not in _tokens(fields.get("upgrade", ())):
        raise RemoteProtocolError(
            "the 101 response lacks 'Upgrade: websocket' "
            f"(got {fields.get('upgrade')!r}); the server did not switch to WebSocket"
        )
    if "upgrade" not in _tokens(fields.get("connection", ())):
        raise RemoteProtocolError(
            f"the 101 response lacks 'Connection: Upgrade' (got {fields.get('connection')!r})"
        )
    accepts = fields.get("sec-websocket-accept")
    if not accepts:
        raise RemoteProtocolError("the 101 response has no Sec-WebSocket-Accept header")
    expected = accept_key(handshake.key)
    if len(accepts) != 1 or accepts[0].strip() != expected:
        raise RemoteProtocolError(
            f"wrong Sec-WebSocket-Accept {', '.join(accepts)!r}: expected {expected!r} "
            "for the key we sent; the server (or a proxy) did not process our handshake"
        )
    protocol = _chosen_protocol(fields.get("sec-websocket-protocol"), handshake.subprotocols)
    deflate = _chosen_deflate(fields.get("sec-websocket-extensions"), handshake.compress)
    return Negotiated(protocol=protocol, deflate=deflate)


def _tokens(values: Sequence[str]) -> set[str]:
    """The lower-cased tokens of a comma-separated header, over all its lines."""
    return {token.strip().lower() for value in values for token in value.split(",")}


def _chosen_protocol(values: list[str] | None, offered: tuple[str, ...]) -> str | None:
    if values is None:
        return None
    chosen = [token.strip() for value in values for token in value.split(",") if token.strip()]
    if len(chosen) != 1:
        raise RemoteProtocolError(
            f"the server must choose exactly one subprotocol, got {', '.join(values)!r}"
        )
    protocol = chosen[0]
    if protocol not in offered:
        raise RemoteProtocolError(
            f"the server chose subprotocol {protocol!r}, which was not offered "
            f"(offered: {', '.join(offered) or 'none'})"
        )
    return protocol


def _chosen_deflate(values: list[str] | None, offered: bool) -> DeflateParams | None:
    """permessage-deflate's parameters if the server enabled it (the only extension offered)."""
    if not values:
        return None
    chosen: DeflateParams | None = None
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            name, params = _parse_extension(item)
            if name != ws_deflate.NAME or not offered:
                raise RemoteProtocolError(
                    f"the server enabled extension {name!r}, which was not offered "
                    f"(offered: {ws_deflate.NAME if offered else 'none'})"
                )
            if chosen is not None:
                raise RemoteProtocolError(f"the server enabled extension {name!r} twice")
            chosen = ws_deflate.accept_response(params)
    return chosen


def _parse_extension(item: str) -> tuple[str, list[tuple[str, str | None]]]:
    """`name; a; b=1; c="2"` -> (`name`, [(a, None), (b, "1"), (c, "2")])."""
    name, *raw_params = (part.strip() for part in item.split(";"))
    if not TOKEN_TEXT.fullmatch(name):
        raise RemoteProtocolError(f"malformed Sec-WebSocket-Extensions entry {item.strip()!r}")
    params: list[tuple[str, str | None]] = []
    for raw in raw_params:
        key, sep, value = (part.strip() for part in raw.partition("="))
        if sep and len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not TOKEN_TEXT.fullmatch(key) or (sep and not TOKEN_TEXT.fullmatch(value)):
            raise RemoteProtocolError(f"malformed parameter {raw!r} of extension {name!r}")
        params.append((key.lower(), value if sep else None))
    return name.lower(), params

"""Sans-IO WebSocket client core: the opening handshake's headers and the framing after it.

Theory of operation
-------------------
The HTTP/1.1 core sends the upgrade request whose headers `handshake_request` made and
parses the 101 response with h11. The connection actor then calls `validate_handshake`
(accept key, upgrade tokens, subprotocol and extension choices) and builds a
`WsConnection` from the `Negotiated` result and h11's trailing bytes.

From then on the whole I/O contract is three calls, as in wsproto:

* `receive_data(bytes) -> list[WsEvent]` feeds bytes from the socket (`b""` is EOF);
* `send(frame)` queues one frame from the owner;
* `data_to_send() -> bytes` hands over everything queued, for the actor to write.

Events are the peer's frames themselves (`Text`/`Binary`, a whole message with its
fragments joined, or a `Ping`/`Pong`/`Close`), `Failed(error, close_code)` (the peer
broke the protocol; a close frame is queued) and `Finished(reason)`, always the last
event: the actor writes what is queued and closes the socket. `Failed` is always
followed by `Finished(error)`.

Without an extension, the bytes on the wire are parsed by `_frames.FrameParser`, which
checks every frame and hands over a batch of pieces per read for little work per frame
(the receive path of a throughput test is mostly this). With permessage-deflate they go
through wsproto's `FrameDecoder` and its extension object instead (header checks,
inflating). Either way messages are assembled here, below wsproto's `Connection`,
because that class reports a protocol error as if the peer had sent a close frame,
decodes text before it can be counted in bytes, and builds an event per frame that we
would only unwrap. Outgoing frames are built here too: client masking is the costly
part of sending, and building header, key and masked payload as separate chunks lets
`data_to_send` join them in one copy.

The connection's state machine is the table `_TRANSITIONS`; which frames may be sent in
which state is the table `_SENDABLE`. There is no REMOTE_CLOSING state: a close frame
from the peer is answered at once, so the connection goes straight to CLOSED.

Limits: `WsSettings.max_message_size` bounds a reassembled message, counted in bytes
after decompression as they arrive; without an extension a data frame whose announced
length would take its message past the bound fails at its header. It does not bound a
single inflate call: one compressed chunk from the socket may expand to (at most about
1000 times) its size before the count sees it.
"""

from __future__ import annotations

import base64
import codecs
import enum
import hashlib
import os
import re
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import (
    CloseReason,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    ParseFailed,
    RsvBits,
)

from gluegun_actors import _frames
from gluegun_actors._types import Headers, check_headers
from gluegun_actors.errors import (
    BadStateError,
    GluegunError,
    InvalidArgument,
    InvalidOptions,
    LocalProtocolError,
    MessageTooBig,
    RemoteProtocolError,
)
from gluegun_actors.message import Binary, Close, Frame, Ping, Pong, Text

__all__ = [
    "CLOSED",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "LOCAL_CLOSING",
    "OPEN",
    "Failed",
    "Finished",
    "Handshake",
    "Negotiated",
    "WsConnection",
    "WsEvent",
    "WsSettings",
    "WsState",
    "accept_key",
    "handshake_request",
    "validate_handshake",
]

# --------------------------------------------------------------------------- limits

DEFAULT_MAX_MESSAGE_SIZE: Final = 1 << 20
"""Largest reassembled message accepted by default (bytes, after decompression)."""

MAX_CONTROL_PAYLOAD: Final = 125
"""RFC 6455 5.5: control frame payloads are at most 125 bytes."""

MAX_CLOSE_REASON: Final = MAX_CONTROL_PAYLOAD - 2
"""A close reason shares the control payload with the 2-byte code."""

_INT_MASK_LIMIT: Final = 1024
"""Below this payload size masking through one big-int XOR beats four `translate` passes."""
_MASK_KEY_BATCH: Final = 256
"""Masking keys drawn from `os.urandom` per call (RFC 6455 10.3 asks for a strong source)."""

_mask_keys: deque[bytes] = deque()
"""Unused random 4-byte words, shared by every connection in the process: a connection that
sends once does not keep a batch of its own (256 keys are ~11 KiB)."""


def _mask_key() -> bytes:
    """Four random bytes nothing has used: a masking key, or a quarter of a handshake key.

    `deque.pop` is atomic, so threads never share one; two threads finding the pool empty
    at once each draw a batch, which only adds words.
    """
    try:
        return _mask_keys.pop()
    except IndexError:
        batch = os.urandom(4 * _MASK_KEY_BATCH)
        _mask_keys.extend(batch[i : i + 4] for i in range(4, len(batch), 4))
        return batch[:4]


# --------------------------------------------------------------------------- settings


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HANDSHAKE_HEADERS: Final = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)


@dataclass(frozen=True, slots=True)
class WsSettings:
    """The protocol-relevant subset of `websocket.options()`, validated once here."""

    subprotocols: tuple[str, ...] = ()
    compress: bool = False
    """Offer permessage-deflate."""
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """Bound on a reassembled message, in bytes; larger ones fail the connection with 1009."""
    extra_headers: Sequence[tuple[str, str]] = ()
    """Added to the upgrade request; may not replace the handshake's own headers."""

    def __post_init__(self) -> None:
        if isinstance(self.subprotocols, str) or not isinstance(self.subprotocols, Sequence):
            raise InvalidArgument(
                f"subprotocols must be a sequence of str, got {type(self.subprotocols).__name__}"
            )
        for protocol in self.subprotocols:
            if not isinstance(protocol, str) or not _TOKEN.fullmatch(protocol):
                raise InvalidOptions(f"subprotocol {protocol!r} is not an HTTP token")
        if len(set(self.subprotocols)) != len(self.subprotocols):
            raise InvalidOptions(f"subprotocols are offered more than once: {self.subprotocols!r}")
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))
        if not isinstance(self.compress, bool):
            raise InvalidArgument(f"compress must be a bool, got {self.compress!r}")
        size = self.max_message_size
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidArgument(f"max_message_size must be an int (bytes), got {size!r}")
        if size < 1:
            raise InvalidOptions(f"max_message_size must be at least 1 byte, got {size}")
        headers = tuple(check_headers(self.extra_headers, "extra_headers"))
        for name, _ in headers:
            if name.lower() in _HANDSHAKE_HEADERS:
                raise LocalProtocolError(
                    f"extra header {name!r} is part of the WebSocket handshake; "
                    "use the subprotocols and compress options instead"
                )
        object.__setattr__(self, "extra_headers", headers)


# --------------------------------------------------------------------------- handshake

_ACCEPT_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DEFLATE_OFFER: Final = "permessage-deflate; client_max_window_bits"
"""Our offer: we can compress with whatever window the server asks of us (9..15)."""


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the upgrade request offered, kept to check the 101 response against."""

    key: str
    headers: Headers
    offered_extensions: tuple[Extension, ...]


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What the server chose: the subprotocol and the enabled extensions (fresh instances)."""

    protocol: str | None
    extensions: tuple[Extension, ...]


def accept_key(key: str) -> str:
    """The `Sec-WebSocket-Accept` value a server must answer `key` with (RFC 6455 4.2.2)."""
    digest = hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake_request(settings: WsSettings) -> Handshake:
    """The WebSocket headers of an upgrade request, with a fresh random key.

    The HTTP core adds the method, target and `host`; header names are lower-case.
    """
    nonce = _mask_key() + _mask_key() + _mask_key() + _mask_key()  # 16 bytes, pooled
    key = base64.b64encode(nonce).decode("ascii")
    headers: Headers = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", key),
        ("sec-websocket-version", "13"),
    ]
    if settings.subprotocols:
        headers.append(("sec-websocket-protocol", ", ".join(settings.subprotocols)))
    offered: tuple[Extension, ...] = ()
    if settings.compress:
        headers.append(("sec-websocket-extensions", _DEFLATE_OFFER))
        offered = (PerMessageDeflate(),)
    headers.extend(settings.extra_headers)
    return Handshake(key=key, headers=headers, offered_extensions=offered)


def validate_handshake(
    handshake: Handshake,
    settings: WsSettings,
    status: int,
    headers: Sequence[tuple[str, str]],
) -> Negotiated:
    """Check a 101 response against what `handshake` offered (RFC 6455 4.1, RFC 7692 7.1).

    Raises `RemoteProtocolError` saying what was wrong; on success returns the chosen
    subprotocol and enabled extensions, ready for `WsConnection`.
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
    protocol = _chosen_protocol(fields.get("sec-websocket-protocol"), settings.subprotocols)
    extensions = _chosen_extensions(
        fields.get("sec-websocket-extensions"), handshake.offered_extensions
    )
    return Negotiated(protocol=protocol, extensions=extensions)


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


def _chosen_extensions(
    values: list[str] | None, offered: tuple[Extension, ...]
) -> tuple[Extension, ...]:
    if not values:
        return ()
    by_name = {extension.name: extension for extension in offered}
    chosen: dict[str, Extension] = {}
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            name, params = _parse_extension(item)
            if name not in by_name:
                raise RemoteProtocolError(
                    f"the server enabled extension {name!r}, which was not offered "
                    f"(offered: {', '.join(by_name) or 'none'})"
                )
            if name in chosen:
                raise RemoteProtocolError(f"the server enabled extension {name!r} twice")
            if name == PerMessageDeflate.name:
                chosen[name] = _accept_deflate(params)
            else:  # an extension offered by a caller-made Handshake: wsproto's own rules
                by_name[name].finalize(item.strip())
                chosen[name] = by_name[name]
    return tuple(chosen.values())


def _parse_extension(item: str) -> tuple[str, list[tuple[str, str | None]]]:
    """`name; a; b=1; c="2"` -> (`name`, [(a, None), (b, "1"), (c, "2")])."""
    name, *raw_params = (part.strip() for part in item.split(";"))
    if not _TOKEN.fullmatch(name):
        raise RemoteProtocolError(f"malformed Sec-WebSocket-Extensions entry {item.strip()!r}")
    params: list[tuple[str, str | None]] = []
    for raw in raw_params:
        key, sep, value = (part.strip() for part in raw.partition("="))
        if sep and len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not _TOKEN.fullmatch(key) or (sep and not _TOKEN.fullmatch(value)):
            raise RemoteProtocolError(f"malformed parameter {raw!r} of extension {name!r}")
        params.append((key.lower(), value if sep else None))
    return name.lower(), params


_WINDOW_BITS = re.compile(r"[89]|1[0-5]")
_NO_CONTEXT_TAKEOVER: Final = frozenset(
    {"server_no_context_takeover", "client_no_context_takeover"}
)
_MAX_WINDOW_BITS: Final = frozenset({"server_max_window_bits", "client_max_window_bits"})


def _accept_deflate(params: list[tuple[str, str | None]]) -> Extension:
    """A permessage-deflate extension set up as the server's response asks (RFC 7692 7.1)."""
    accepted: list[str] = [PerMessageDeflate.name]
    seen: set[str] = set()
    for key, value in params:
        if key in seen:
            raise RemoteProtocolError(f"permessage-deflate parameter {key!r} given twice")
        seen.add(key)
        if key in _NO_CONTEXT_TAKEOVER:
            if value is not None:
                raise RemoteProtocolError(
                    f"permessage-deflate parameter {key!r} takes no value, got {value!r}"
                )
            accepted.append(key)
        elif key in _MAX_WINDOW_BITS:
            if value is None or not _WINDOW_BITS.fullmatch(value):
                raise RemoteProtocolError(
                    f"permessage-deflate {key}={value!r} is invalid: it must be 8 to 15"
                )
            bits = int(value)
            if bits == 8 and key == "client_max_window_bits":
                raise RemoteProtocolError(
                    "the server asked for client_max_window_bits=8, which zlib cannot "
                    "compress with (its smallest window is 9 bits)"
                )
            # Inflating with a 9-bit window reads what an 8-bit one wrote; zlib needs >= 9.
            accepted.append(f"{key}={max(bits, 9)}")
        else:
            raise RemoteProtocolError(f"unknown permessage-deflate parameter {key!r}")
    extension = _PerMessageDeflate()
    extension.finalize("; ".join(accepted))
    return extension


class _PerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, with control frames kept out of the message's state.

    wsproto's class forgets that a message is compressed at the end of any final frame,
    control frames included, so a ping between two fragments of a compressed message
    makes the rest of it be read as uncompressed (and fail). Here control frames pass
    through without touching that state.
    """

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            self._inbound_is_compressible = False
            return _NO_RSV  # so a control frame with RSV1 set is refused
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not self._inbound_is_compressible:
            return None
        return super().frame_inbound_complete(proto, fin)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Failed:
    """The peer broke the protocol; a close frame with `close_code` is queued.

    (When our own close frame had already gone out, no second one is sent.)
    """

    error: GluegunError
    close_code: int


@dataclass(frozen=True, slots=True)
class Finished:
    """The WebSocket is over: write what is queued, then close the socket.

    `reason` is `"normal"` (closing handshake done), `"closed"` (EOF between
    messages) or the exception that ended it.
    """

    reason: object


WsEvent: TypeAlias = Frame | Failed | Finished
"""A frame from the peer (a whole Text/Binary message with its fragments joined, or a
Ping/Pong/Close), a failure, or the end."""

NORMAL: Final = "normal"
EOF_CLOSED: Final = "closed"

# --------------------------------------------------------------------------- state machine


class WsState(enum.Enum):
    """Where the connection is in RFC 6455's closing handshake."""

    OPEN = "open"
    LOCAL_CLOSING = "local_closing"  # we sent a close frame and wait for the peer's
    CLOSED = "closed"  # Finished was reported; nothing more is read or sent

    # Members are singletons compared by identity: hash them by identity in C, not by
    # name in Python as `Enum` does (every `send` looks its state up in `_SENDABLE`).
    __hash__ = object.__hash__


OPEN: Final = WsState.OPEN
LOCAL_CLOSING: Final = WsState.LOCAL_CLOSING
CLOSED: Final = WsState.CLOSED


class _Input(enum.Enum):
    SEND_CLOSE = enum.auto()
    RECEIVE_CLOSE = enum.auto()
    FAIL = enum.auto()
    EOF = enum.auto()


_TRANSITIONS: Final[dict[tuple[WsState, _Input], WsState]] = {
    (OPEN, _Input.SEND_CLOSE): LOCAL_CLOSING,
    (OPEN, _Input.RECEIVE_CLOSE): CLOSED,  # our answer is queued at once
    (OPEN, _Input.FAIL): CLOSED,
    (OPEN, _Input.EOF): CLOSED,
    (LOCAL_CLOSING, _Input.RECEIVE_CLOSE): CLOSED,
    (LOCAL_CLOSING, _Input.FAIL): CLOSED,
    (LOCAL_CLOSING, _Input.EOF): CLOSED,
}

_SENDABLE: Final[dict[WsState, frozenset[type]]] = {
    OPEN: frozenset({Text, Binary, Ping, Pong, Close}),
    LOCAL_CLOSING: frozenset({Ping, Pong}),  # RFC 6455 5.5.1: no data after our close
    CLOSED: frozenset(),
}
_FRAME_TYPES: Final = _SENDABLE[OPEN]

# --------------------------------------------------------------------------- close codes


def _valid_close_code(code: int) -> bool:
    """Codes an endpoint may put in a close frame (RFC 6455 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _BadClose(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _parse_close(payload: bytes) -> Close:
    """The peer's close frame, or `_BadClose` with the code to fail with (RFC 6455 5.5.1)."""
    if not payload:
        return Close(None, "")
    if len(payload) == 1:
        raise _BadClose("the server sent a close frame with a 1-byte payload", 1002)
    code = int.from_bytes(payload[:2], "big")
    if not _valid_close_code(code):
        raise _BadClose(f"the server sent a close frame with the invalid code {code}", 1002)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise _BadClose("the server sent a close reason that is not UTF-8", 1007) from None
    return Close(code, reason)


_FAIL_REASONS: Final = {
    1002: "protocol error",
    1007: "invalid frame payload data",
    1009: "message too big",
}

# --------------------------------------------------------------------------- framing out

_HEAD_7: Final = struct.Struct("!BB4s")
_HEAD_16: Final = struct.Struct("!BBH4s")
_HEAD_64: Final = struct.Struct("!BBQ4s")
_FIN: Final = 0x80
_RSV1: Final = 0x40
_MASKED: Final = 0x80
_NO_RSV: Final = RsvBits(False, False, False)
_IDENTITY: Final = bytes(range(256))
_XOR_TABLES: Final = [
    (int.from_bytes(_IDENTITY) ^ int.from_bytes(bytes((key,)) * 256)).to_bytes(256)
    for key in range(256)
]


def _mask_python(payload: bytes, key: bytes) -> bytes | bytearray:
    """XOR `payload` with the repeated 4-byte `key` (RFC 6455 5.3), in pure Python."""
    n = len(payload)
    if n < _INT_MASK_LIMIT:
        stream = (key * ((n >> 2) + 1))[:n]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
            n, "little"
        )
    out = bytearray(payload)
    for offset in range(4):
        out[offset::4] = out[offset::4].translate(_XOR_TABLES[key[offset]])
    return out


_mask: Callable[[bytes, bytes], bytes | bytearray]
try:  # the optional C masking of the websockets package (gluegun_actors[speedups]):
    from websockets.speedups import apply_mask as _mask  # 64 KiB in ~3 us instead of ~130 us
except ImportError:  # pragma: no cover - depends on what is installed
    _mask = _mask_python


_Utf8Decoder: Final = codecs.getincrementaldecoder("utf-8")

# --------------------------------------------------------------------------- connection


class WsConnection:
    """One client WebSocket after a 101: bytes in, events out, frames in, bytes out.

    `trailing_data` (what followed the 101 in the same read) is parsed at once; its
    events are returned by `initial_events()`, or else ahead of the next
    `receive_data` result, so none is lost. Pongs it calls for are queued already.
    """

    __slots__ = (
        "_bytes_parts",
        "_close_code",
        "_close_reason",
        "_decoder",
        "_deflate",
        "_max_size",
        "_message",
        "_out",
        "_parser",
        "_pending",
        "_size",
        "_state",
        "_text_parts",
        "_utf8",
        "negotiated",
    )

    def __init__(
        self, negotiated: Negotiated, settings: WsSettings, trailing_data: bytes = b""
    ) -> None:
        self.negotiated = negotiated
        extensions = [ext for ext in negotiated.extensions if ext.enabled()]
        if len(extensions) > 1:
            raise InvalidArgument(f"at most one extension is supported, got {extensions!r}")
        self._max_size = settings.max_message_size
        # Exactly one of the two parses incoming frames: the parser without an extension.
        self._parser: _frames.FrameParser | None = None
        self._decoder: FrameDecoder | None = None
        self._deflate: Extension | None = None
        if extensions:
            self._decoder = FrameDecoder(client=True, extensions=extensions)
            self._deflate = extensions[0]
        else:
            self._parser = _frames.FrameParser(self._max_size)
        self._state = OPEN
        self._close_code: int | None = None
        self._close_reason = ""
        self._out: list[bytes | bytearray] = []
        # Message assembly: `_message` is the opcode of the message in progress, or None.
        self._message: Opcode | None = None
        self._size = 0
        self._text_parts: list[str] = []
        self._bytes_parts: list[bytes] = []
        self._utf8 = _Utf8Decoder()
        self._pending: list[WsEvent] = []
        if trailing_data:
            self._pending = self.receive_data(trailing_data)

    # ------------------------------------------------------------------ public

    @property
    def state(self) -> WsState:
        return self._state

    @property
    def close_code(self) -> int | None:
        """RFC 6455 7.1.5's close code: the peer's (1005 when its frame had none), the
        code we failed with, 1006 when the connection ended without a close frame;
        None while not closed."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        return self._close_reason

    def initial_events(self) -> list[WsEvent]:
        """The events of the trailing data given to the constructor (once)."""
        events, self._pending = self._pending, []
        return events

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one buffer for the socket."""
        out = self._out
        if not out:
            return b""
        self._out = []
        if len(out) == 1 and type(out[0]) is bytes:
            return out[0]
        return b"".join(out)

    def send(self, frame: Frame) -> None:
        """Queue one frame. Raises `BadStateError` for data after our close frame."""
        kind = type(frame)
        if kind not in _SENDABLE[self._state]:
            if kind not in _FRAME_TYPES:
                raise InvalidArgument(
                    f"send takes a Text, Binary, Ping, Pong or Close frame, got {kind.__name__}"
                )
            if self._state is CLOSED:
                raise BadStateError(f"cannot send {kind.__name__}: the WebSocket is closed")
            raise BadStateError(
                f"cannot send {kind.__name__}: a close frame was already sent, so only "
                "ping and pong may follow (RFC 6455 5.5.1)"
            )
        if kind is Text:
            assert isinstance(frame, Text)
            try:
                payload = frame.text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise LocalProtocolError(f"text is not valid Unicode: {exc}") from None
            self._queue_message(Opcode.TEXT, payload)
        elif kind is Binary:
            assert isinstance(frame, Binary)
            self._queue_message(Opcode.BINARY, frame.data)
        elif kind is Ping or kind is Pong:
            assert isinstance(frame, Ping | Pong)
            if len(frame.data) > MAX_CONTROL_PAYLOAD:
                raise LocalProtocolError(
                    f"{kind.__name__} payload is {len(frame.data)} bytes; "
                    f"control frames carry at most {MAX_CONTROL_PAYLOAD}"
                )
            self._queue_frame(_FIN | (Opcode.PING if kind is Ping else Opcode.PONG), frame.data)
        else:
            assert isinstance(frame, Close)
            self._queue_close(*_close_payload(frame))
            self._state = _TRANSITIONS[(self._state, _Input.SEND_CLOSE)]

    def receive_data(self, data: bytes) -> list[WsEvent]:
        """Feed bytes read from the socket (`b""` for EOF); returns what they completed."""
        events = self._pending
        self._pending = []
        if self.state is CLOSED:  # (the property, so the loop's check is not narrowed away)
            return events
        if not data:
            self._on_eof(events)
            return events
        parser = self._parser
        if parser is not None:
            self._receive_pieces(parser, parser.parse(data), events)
            return events
        decoder = self._decoder
        assert decoder is not None
        decoder.receive_bytes(data)
        try:
            while self._state is not CLOSED:
                frame = decoder.process_buffer()
                if frame is None:
                    break
                opcode, payload, frame_done, message_done = frame
                assert isinstance(payload, bytes)  # FrameDecoder hands over raw bytes
                if opcode is Opcode.PING:
                    self._queue_frame(_FIN | Opcode.PONG, payload)
                    events.append(Ping(payload))
                elif opcode is Opcode.PONG:
                    events.append(Pong(payload))
                elif opcode is Opcode.CLOSE:
                    self._on_close(payload, events)
                else:
                    self._on_data(opcode, payload, frame_done and message_done, events)
        except ParseFailed as exc:
            error = RemoteProtocolError(f"the server broke the protocol: {exc}")
            self._fail(events, error, int(exc.code))
        return events

    # ------------------------------------------------------------------ receiving

    def _receive_pieces(
        self, parser: _frames.FrameParser, pieces: list[_frames.Piece], events: list[WsEvent]
    ) -> None:
        """Act on what the frame parser found; it has checked framing and message size."""
        append = events.append
        for opcode, payload, done in pieces:
            if done and self._message is None and opcode <= _frames.BINARY:
                if opcode == _frames.BINARY:  # a whole message in one piece: the common case
                    append(Binary(payload))
                    continue
                try:
                    append(Text(payload.decode("utf-8")))
                    continue
                except UnicodeDecodeError as exc:
                    self._fail_utf8(events, exc)
                    return
            if opcode == _frames.PING:
                self._queue_frame(_FIN | Opcode.PONG, payload)
                append(Ping(payload))
            elif opcode == _frames.PONG:
                append(Pong(payload))
            elif opcode == _frames.CLOSE:
                self._on_close(payload, events)
                return
            else:
                kind = self._message
                if kind is None:
                    kind = self._message = Opcode(opcode)
                    if kind is Opcode.TEXT:
                        self._utf8.reset()
                if not self._add_piece(kind, payload, done, events):
                    return
        if parser.error is not None:
            self._fail(events, parser.error, parser.error_code)

    def _on_data(
        self, opcode: Opcode, payload: bytes, finished: bool, events: list[WsEvent]
    ) -> None:
        """One piece of a data frame (wsproto hands over a frame's payload as it arrives)."""
        kind = self._message
        if opcode is Opcode.CONTINUATION:
            if kind is None:
                self._fail(
                    events,
                    RemoteProtocolError("continuation frame outside a fragmented message"),
                    1002,
                )
                return
        elif kind is not None:
            self._fail(
                events,
                RemoteProtocolError(f"new {opcode.name} message before the previous one finished"),
                1002,
            )
            return
        elif finished:  # a whole message in one piece: the common case, no assembly
            if len(payload) > self._max_size:
                self._fail_too_big(events, len(payload))
            elif opcode is Opcode.TEXT:
                try:
                    events.append(Text(payload.decode("utf-8")))
                except UnicodeDecodeError as exc:
                    self._fail_utf8(events, exc)
            else:
                events.append(Binary(payload))
            return
        else:
            kind = self._message = opcode
            self._size = 0
            if kind is Opcode.TEXT:
                self._utf8.reset()

        size = self._size + len(payload)
        if size > self._max_size:
            self._fail_too_big(events, size)
            return
        self._size = size
        self._add_piece(kind, payload, finished, events)

    def _add_piece(
        self, kind: Opcode, payload: bytes, finished: bool, events: list[WsEvent]
    ) -> bool:
        """Add a piece to the message in progress (the size is checked); False on failure."""
        if kind is Opcode.TEXT:
            try:
                piece = self._utf8.decode(payload, finished)
            except UnicodeDecodeError as exc:
                self._fail_utf8(events, exc)
                return False
            if piece:
                self._text_parts.append(piece)
            if finished:
                text = "".join(self._text_parts)
                self._text_parts = []
                self._message = None
                events.append(Text(text))
        else:
            if payload:
                self._bytes_parts.append(payload)
            if finished:
                data = b"".join(self._bytes_parts)
                self._bytes_parts = []
                self._message = None
                events.append(Binary(data))
        return True

    def _on_close(self, payload: bytes, events: list[WsEvent]) -> None:
        try:
            close = _parse_close(payload)
        except _BadClose as exc:
            self._fail(events, RemoteProtocolError(str(exc)), exc.code)
            return
        events.append(close)
        self._close_code = 1005 if close.code is None else close.code
        self._close_reason = close.reason
        if self._state is OPEN:  # echo the peer's code (RFC 6455 5.5.1)
            self._queue_close(1000 if close.code is None else close.code, b"")
        self._state = _TRANSITIONS[(self._state, _Input.RECEIVE_CLOSE)]
        self._drop_message()
        events.append(Finished(NORMAL))

    def _on_eof(self, events: list[WsEvent]) -> None:
        reason: object = EOF_CLOSED
        if self._mid_frame():
            reason = RemoteProtocolError(
                "the server closed the connection in the middle of a frame"
            )
        elif self._message is not None:
            reason = RemoteProtocolError(
                "the server closed the connection in the middle of a fragmented message"
            )
        self._close_code = int(CloseReason.ABNORMAL_CLOSURE)
        self._state = _TRANSITIONS[(self._state, _Input.EOF)]
        self._drop_message()
        events.append(Finished(reason))

    def _mid_frame(self) -> bool:
        if self._parser is not None:
            return self._parser.mid_frame
        assert self._decoder is not None
        return self._decoder.header is not None or len(self._decoder.buffer) > 0

    def _fail_too_big(self, events: list[WsEvent], size: int) -> None:
        error = MessageTooBig(
            f"the server sent a message of {size} bytes or more; "
            f"max_message_size is {self._max_size}"
        )
        self._fail(events, error, 1009)

    def _fail_utf8(self, events: list[WsEvent], exc: UnicodeDecodeError) -> None:
        self._fail(
            events,
            RemoteProtocolError(f"the server sent a text message that is not UTF-8: {exc}"),
            1007,
        )

    def _fail(self, events: list[WsEvent], error: GluegunError, code: int) -> None:
        """Fail the WebSocket connection (RFC 6455 7.1.7): close frame, then Finished."""
        if self._state is OPEN:
            self._queue_close(code, _FAIL_REASONS.get(code, "").encode("ascii"))
        self._close_code = code
        self._close_reason = str(error)
        self._state = _TRANSITIONS[(self._state, _Input.FAIL)]
        self._drop_message()
        events.append(Failed(error, code))
        events.append(Finished(error))

    def _drop_message(self) -> None:
        self._message = None
        self._text_parts = []
        self._bytes_parts = []

    # ------------------------------------------------------------------ sending

    def _queue_message(self, opcode: Opcode, payload: bytes) -> None:
        first = _FIN | opcode
        if self._deflate is not None:
            assert self._decoder is not None
            rsv, payload = self._deflate.frame_outbound(
                self._decoder, opcode, _NO_RSV, payload, True
            )
            if rsv.rsv1:
                first |= _RSV1
        self._queue_frame(first, payload)

    def _queue_close(self, code: int | None, reason: bytes) -> None:
        if code is None:
            self._queue_frame(_FIN | Opcode.CLOSE, b"")
        else:
            self._queue_frame(_FIN | Opcode.CLOSE, code.to_bytes(2, "big") + reason)

    def _queue_frame(self, first: int, payload: bytes) -> None:
        """Append a masked client frame: header and masking key, then the masked payload."""
        n = len(payload)
        key = _mask_key()
        if n < 126:
            self._out.append(_HEAD_7.pack(first, _MASKED | n, key))
        elif n < 65536:
            self._out.append(_HEAD_16.pack(first, _MASKED | 126, n, key))
        else:
            self._out.append(_HEAD_64.pack(first, _MASKED | 127, n, key))
        if n:
            self._out.append(_mask(payload, key))


def _close_payload(frame: Close) -> tuple[int | None, bytes]:
    """Check a close frame from the owner; returns its code and encoded reason."""
    if frame.code is None:
        if frame.reason:
            raise LocalProtocolError("a close frame without a code cannot carry a reason")
        return None, b""
    if isinstance(frame.code, bool) or not isinstance(frame.code, int):
        raise InvalidArgument(f"close code must be an int or None, got {frame.code!r}")
    if not _valid_close_code(frame.code):
        raise LocalProtocolError(
            f"close code {frame.code} may not be sent: use 1000-1003, 1007-1014 or 3000-4999 "
            "(RFC 6455 7.4)"
        )
    reason = frame.reason.encode("utf-8")
    if len(reason) > MAX_CLOSE_REASON:
        raise LocalProtocolError(
            f"close reason is {len(reason)} bytes in UTF-8; at most {MAX_CLOSE_REASON} fit"
        )
    return frame.code, reason

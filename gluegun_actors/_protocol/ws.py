"""Sans-IO WebSocket client core: the framing after a successful opening handshake.

Theory of operation
-------------------
The HTTP/1.1 core sends the upgrade request (`ws_handshake.handshake_request`) and parses
the 101 answer; the connection actor checks it (`ws_handshake.validate_handshake`) and
builds a `WsConnection` from the `Negotiated` result and the bytes that followed the 101.

From then on the whole I/O contract is three calls, as in wsproto:

* `receive_data(bytes) -> list[WsEvent]` feeds bytes from the socket (`b""` is EOF);
* `send(frame)` queues one frame from the owner;
* `data_to_send() -> bytes` hands over everything queued, for the actor to write.

Events are the peer's frames themselves (`Text`/`Binary`, a whole message with its
fragments joined, or a `Ping`/`Pong`/`Close`), `Failed(error, close_code)` (the peer
broke the protocol; a close frame is queued) and `Finished(reason)`, always the last
event: the actor writes what is queued and closes the socket. `Failed` is always
followed by `Finished(error)`.

One receive path serves every connection: `ws_frames.FrameParser` checks the frames and
hands over data pieces as they arrive; with permessage-deflate the pieces of a
compressed message are inflated here (`ws_deflate.Inflater`), in steps bounded by the
room the message has left. Messages are assembled here, not by wsproto's `Connection`,
which reports a protocol error as if the peer had sent a close frame, decodes text
before it can be counted in bytes, and builds an event per frame that we would only
unwrap. `tests/test_differential_ws.py` proves this path gives wsproto's events and
verdicts. Outgoing frames are built by `ws_send`.

The connection's state machine is the table `_TRANSITIONS`; which frames may be sent in
which state is the table `_SENDABLE`. There is no REMOTE_CLOSING state: a close frame
from the peer is answered at once, so the connection goes straight to CLOSED.

Limits: `max_message_size` bounds a reassembled message in bytes, after decompression.
An uncompressed data frame whose announced length would take its message past it fails
at its header; a compressed one fails as soon as inflating it would, having produced at
most one byte more than the bound.
"""

from __future__ import annotations

import codecs
import enum
from dataclasses import dataclass
from typing import Final, TypeAlias

from gluegun_actors._protocol.ws_close import (
    FAIL_REASONS,
    BadClose,
    close_payload,
    parse_close,
)
from gluegun_actors._protocol.ws_deflate import Deflater, InflateError, Inflater, TooBig
from gluegun_actors._protocol.ws_frames import (
    BINARY,
    CLOSE,
    COMPRESSED,
    PING,
    PONG,
    TEXT,
    FrameParser,
    Piece,
)
from gluegun_actors._protocol.ws_handshake import Negotiated
from gluegun_actors._protocol.ws_send import FIN, MAX_CONTROL_PAYLOAD, RSV1, encode_frame
from gluegun_actors.errors import (
    BadStateError,
    GluegunError,
    InvalidArgument,
    LocalProtocolError,
    MessageTooBig,
    RemoteProtocolError,
)
from gluegun_actors.message import Binary, Close, Frame, Ping, Pong, Text

__all__ = [
    "CLOSED",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "EOF_CLOSED",
    "LOCAL_CLOSING",
    "NORMAL",
    "OPEN",
    "Failed",
    "Finished",
    "WsConnection",
    "WsEvent",
    "WsState",
]

DEFAULT_MAX_MESSAGE_SIZE: Final = 1 << 20
"""Largest reassembled message accepted by default (bytes, after decompression)."""

_OPCODE: Final = 0x0F
_CLOSE_FRAME: Final = FIN | CLOSE


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

_Utf8Decoder: Final = codecs.getincrementaldecoder("utf-8")

# --------------------------------------------------------------------------- connection


class WsConnection:
    """One client WebSocket after a 101: bytes in, events out, frames in, bytes out.

    `trailing_data` (what followed the 101 in the same read) is parsed at once; its
    events are returned by `initial_events()`, or else ahead of the next
    `receive_data` result, so none is lost. Pongs it calls for are queued already.
    """

    __slots__ = (
        "_close_code",
        "_close_reason",
        "_deflater",
        "_inflater",
        "_max_size",
        "_message",
        "_out",
        "_parser",
        "_partial",
        "_pending",
        "_size",
        "_state",
        "_utf8",
        "negotiated",
    )

    def __init__(
        self,
        negotiated: Negotiated,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        trailing_data: bytes = b"",
    ) -> None:
        self.negotiated = negotiated
        self._max_size = max_message_size
        deflate = negotiated.deflate
        self._parser = FrameParser(max_message_size, compression=deflate is not None)
        self._inflater = None if deflate is None else Inflater(deflate)
        self._deflater = None if deflate is None else Deflater(deflate)
        self._state = OPEN
        self._close_code: int | None = None
        self._close_reason = ""
        self._out: list[bytes | bytearray] = []
        # The message in progress: its opcode as the parser gives it (TEXT or BINARY,
        # with COMPRESSED when so), or None; its size so far, after inflating.
        self._message: int | None = None
        self._size = 0
        self._partial = bytearray()
        """The message in progress, raw: one buffer however many fragments it came in."""
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
            self._queue_message(TEXT, payload)
        elif kind is Binary:
            assert isinstance(frame, Binary)
            self._queue_message(BINARY, frame.data)
        elif kind is Ping or kind is Pong:
            assert isinstance(frame, Ping | Pong)
            if len(frame.data) > MAX_CONTROL_PAYLOAD:
                raise LocalProtocolError(
                    f"{kind.__name__} payload is {len(frame.data)} bytes; "
                    f"control frames carry at most {MAX_CONTROL_PAYLOAD}"
                )
            encode_frame(self._out, FIN | (PING if kind is Ping else PONG), frame.data)
        else:
            assert isinstance(frame, Close)
            self._queue_close(*close_payload(frame))
            self._state = _TRANSITIONS[(self._state, _Input.SEND_CLOSE)]

    def receive_data(self, data: bytes) -> list[WsEvent]:
        """Feed bytes read from the socket (`b""` for EOF); returns what they completed."""
        events = self._pending
        self._pending = []
        if self._state is CLOSED:
            return events
        if not data:
            self._on_eof(events)
            return events
        parser = self._parser
        self._receive_pieces(parser.parse(data), events)
        if parser.error is not None and self.state is not CLOSED:  # (not narrowed away)
            self._fail(events, parser.error, parser.error_code)
        return events

    # ------------------------------------------------------------------ receiving

    def _receive_pieces(self, pieces: list[Piece], events: list[WsEvent]) -> None:
        """Act on what the frame parser found; it has checked the framing."""
        append = events.append
        for opcode, payload, done in pieces:
            if done and self._message is None and opcode <= BINARY:
                if opcode == BINARY:  # a whole message in one piece: the common case
                    append(Binary(payload))
                    continue
                try:
                    append(Text(payload.decode("utf-8")))
                    continue
                except UnicodeDecodeError as exc:
                    self._fail_utf8(events, exc)
                    return
            if opcode == PING:
                encode_frame(self._out, FIN | PONG, payload)
                append(Ping(payload))
            elif opcode == PONG:
                append(Pong(payload))
            elif opcode == CLOSE:
                self._on_close(payload, events)
                return
            elif not self._add_piece(opcode, payload, done, events):
                return

    def _add_piece(self, opcode: int, payload: bytes, done: bool, events: list[WsEvent]) -> bool:
        """Add a piece to the message in progress (inflated, counted); False on failure."""
        kind = self._message
        if kind is None:
            kind = self._message = opcode
            self._size = 0
            if kind & _OPCODE == TEXT:
                self._utf8.reset()
        if kind & COMPRESSED:
            inflated = self._inflate(payload, done, events)
            if inflated is None:
                return False
            payload = inflated
            self._size += len(payload)
        if kind & _OPCODE == TEXT:
            try:
                piece = self._utf8.decode(payload, done)  # fails fast on invalid UTF-8
            except UnicodeDecodeError as exc:
                self._fail_utf8(events, exc)
                return False
            if not done:
                self._partial += payload
                return True
            if self._partial:  # fragmented: one buffer, decoded once more at the end
                self._partial += payload
                piece = self._partial.decode("utf-8")
                self._partial = bytearray()
            self._message = None
            events.append(Text(piece))
        else:
            if not done:
                self._partial += payload
                return True
            if self._partial:
                self._partial += payload
                payload = bytes(self._partial)
                self._partial = bytearray()
            self._message = None
            events.append(Binary(payload))
        return True

    def _inflate(self, payload: bytes, done: bool, events: list[WsEvent]) -> bytes | None:
        """Inflate a compressed piece within the room its message has left; None on failure."""
        inflater = self._inflater
        assert inflater is not None
        room = self._max_size - self._size
        try:
            out = inflater.feed(payload, room)
            if done:
                out += inflater.finish(room - len(out))
        except TooBig:
            self._fail_too_big(events, self._max_size + 1)
            return None
        except InflateError as exc:
            error = RemoteProtocolError(f"the server sent invalid compressed data: {exc}")
            self._fail(events, error, 1007)
            return None
        return out

    def _on_close(self, payload: bytes, events: list[WsEvent]) -> None:
        try:
            close = parse_close(payload)
        except BadClose as exc:
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
        if self._parser.mid_frame:
            reason = RemoteProtocolError(
                "the server closed the connection in the middle of a frame"
            )
        elif self._message is not None:
            reason = RemoteProtocolError(
                "the server closed the connection in the middle of a fragmented message"
            )
        self._close_code = 1006  # RFC 6455 7.1.5: closed without a close frame
        self._state = _TRANSITIONS[(self._state, _Input.EOF)]
        self._drop_message()
        events.append(Finished(reason))

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
            self._queue_close(code, FAIL_REASONS.get(code, "").encode("ascii"))
        self._close_code = code
        self._close_reason = str(error)
        self._state = _TRANSITIONS[(self._state, _Input.FAIL)]
        self._drop_message()
        events.append(Failed(error, code))
        events.append(Finished(error))

    def _drop_message(self) -> None:
        self._message = None
        self._partial = bytearray()
        if self._inflater is not None:
            self._inflater.abandon()

    # ------------------------------------------------------------------ sending

    def _queue_message(self, opcode: int, payload: bytes) -> None:
        first = FIN | opcode
        if self._deflater is not None:
            payload = self._deflater.compress(payload)
            first |= RSV1
        encode_frame(self._out, first, payload)

    def _queue_close(self, code: int | None, reason: bytes) -> None:
        payload = b"" if code is None else code.to_bytes(2, "big") + reason
        encode_frame(self._out, _CLOSE_FRAME, payload)

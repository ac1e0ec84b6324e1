"""Sans-IO parser of the frames a WebSocket server sends a client.

Theory of operation
-------------------
`FrameParser.parse(data)` takes the bytes of one socket read and returns every frame
piece they complete, as `(opcode, payload, done)` tuples in wire order:

* control frames (`CLOSE`, `PING`, `PONG`) come whole, once all their bytes are here
  (at most 125 bytes of payload, so waiting for them costs nothing);
* data frames come as pieces of their message, as soon as bytes arrive: `opcode` is
  the message's (`TEXT` or `BINARY`, continuation frames resolved), `done` is true for
  the piece that ends the message. A message sent whole in one frame that arrived in
  one read is one tuple with `done` true, which is the case the parser is fast for.
  With permessage-deflate on, the pieces of a compressed message (RSV1 set on its
  first frame) carry `opcode | COMPRESSED`: they are still compressed.

Handing data pieces over as they arrive keeps the buffer small: only a partial header
or a partial control frame is kept between reads (under 140 bytes), so a large frame
arriving over many reads has each byte copied once, into its piece, and a new read is
used as the buffer as it is unless such a remnant must be put in front of it. Within a
read, frames are located by offset arithmetic on the one buffer; each payload is
sliced once.

Everything RFC 6455 5.2-5.5 (and RFC 7692 6 for the RSV1 bit) asks of a client is
checked, and the message size limit is applied to each data frame's announced length,
so a frame too large fails at its header without being buffered. A compressed message
is bounded after inflating, by the caller: its size on the wire says nothing of it.
The first violation stops the parser: `parse` returns the pieces before it and
`error`/`error_code` describe it (the close code to fail the connection with: 1002, or
1009 for a message too big). Nothing is parsed after a close frame.

Inflating, UTF-8 validation and message assembly are the caller's (`ws.WsConnection`).
`tests/test_differential_ws.py` proves the parser gives wsproto's verdicts.
"""

from __future__ import annotations

import struct
from typing import Final, TypeAlias

from gluegun_actors.errors import GluegunError, MessageTooBig, RemoteProtocolError

__all__ = [
    "BINARY",
    "CLOSE",
    "COMPRESSED",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "FrameParser",
    "Piece",
]

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
COMPRESSED: Final = 0x40
"""Flag on the opcode of a compressed message's pieces (the RSV1 bit's place in byte 0)."""

MAX_CONTROL_PAYLOAD: Final = 125
"""RFC 6455 5.5: control frame payloads are at most 125 bytes."""

Piece: TypeAlias = tuple[int, bytes, bool]
"""`(opcode, payload, done)`: a control frame, or a piece of a data message."""

_FIN: Final = 0x80
_RSV: Final = 0x70
_RSV1: Final = 0x40
_OPCODE: Final = 0x0F
_MASKED: Final = 0x80
_LENGTH: Final = 0x7F
_LENGTH_16: Final = 126
_LENGTH_64: Final = 127
_TOP_BIT: Final = 1 << 63
_U16: Final = struct.Struct("!H").unpack_from
_U64: Final = struct.Struct("!Q").unpack_from
_NO_MESSAGE: Final = 0
"""`_message` when no fragmented message is in progress (no data opcode is 0 there)."""


class FrameParser:
    """Frames from a server to a client (RFC 6455 5); `compression` if deflate was agreed."""

    __slots__ = (
        "_buf",
        "_closed",
        "_compression",
        "_fin",
        "_max_size",
        "_message",
        "_remaining",
        "_size",
        "error",
        "error_code",
    )

    def __init__(self, max_message_size: int, *, compression: bool = False) -> None:
        self._max_size = max_message_size
        self._compression = compression
        self._buf = b""  # a partial header or control frame, waiting for the rest
        # The data frame whose payload is arriving: bytes still to come and its FIN bit.
        self._remaining = 0
        self._fin = False
        # The message in progress (its opcode, with COMPRESSED if so, or _NO_MESSAGE) and
        # its bytes on the wire so far, counting the frame that is arriving in full.
        self._message = _NO_MESSAGE
        self._size = 0
        self._closed = False
        self.error: GluegunError | None = None
        """The violation that stopped the parser, if any."""
        self.error_code = 0
        """The close code to fail the connection with for `error`."""

    @property
    def mid_frame(self) -> bool:
        """True while part of a frame has arrived and the rest has not."""
        return self._remaining > 0 or len(self._buf) > 0

    @property
    def mid_message(self) -> bool:
        """True between the frames of a fragmented message (or inside its first)."""
        return self._message != _NO_MESSAGE

    def parse(self, data: bytes | bytearray) -> list[Piece]:
        """Take the bytes of one read; return the frame pieces they complete, in order."""
        if self._closed or self.error is not None or not data:
            return []
        chunk = data if isinstance(data, bytes) else bytes(data)  # payloads are bytes
        pieces: list[Piece] = []
        buf = self._buf + chunk if self._buf else chunk
        pos = 0
        end = len(buf)
        remaining = self._remaining
        if remaining:  # the payload of a data frame is arriving
            take = min(remaining, end)
            remaining -= take
            done = not remaining and self._fin
            pieces.append((self._message, buf[:take], done))
            pos = take
            if not remaining:
                self._remaining = 0
                if done:
                    self._message = _NO_MESSAGE
            else:
                self._remaining = remaining
                return pieces
        append = pieces.append
        max_size = self._max_size
        # Consecutive whole fragments of one message become one piece, so that a peer
        # sending many tiny fragments costs one buffer, not an object per fragment.
        run: bytearray | None = None
        run_message = _NO_MESSAGE
        while end - pos >= 2:
            first = buf[pos]
            second = buf[pos + 1]
            opcode = first & _OPCODE
            length = second & _LENGTH
            if second & _MASKED:
                self._stop("the server sent a masked frame (RFC 6455 5.1)", 1002)
                break
            rsv = first & _RSV
            if rsv and not (rsv == _RSV1 and self._compression and opcode in (TEXT, BINARY)):
                self._stop_reserved(rsv, opcode)
                break
            if opcode >= CLOSE:
                if opcode > PONG:
                    self._stop(f"the server sent a frame with reserved opcode {opcode:#x}", 1002)
                    break
                if not first & _FIN:
                    self._stop("the server fragmented a control frame (RFC 6455 5.5)", 1002)
                    break
                if length > MAX_CONTROL_PAYLOAD:
                    self._stop(
                        "the server sent a control frame longer than "
                        f"{MAX_CONTROL_PAYLOAD} bytes (RFC 6455 5.5)",
                        1002,
                    )
                    break
                start = pos + 2
                stop = start + length
                if stop > end:
                    break  # wait for the whole control frame
                if run is not None:
                    append((run_message, bytes(run), False))
                    run = None
                append((opcode, buf[start:stop], True))
                pos = stop
                if opcode == CLOSE:
                    self._closed = True
                    break
                continue

            if length < _LENGTH_16:
                start = pos + 2
            elif length == _LENGTH_16:
                if end - pos < 4:
                    break
                (length,) = _U16(buf, pos + 2)
                if length < _LENGTH_16:
                    self._stop_length(length, 2)
                    break
                start = pos + 4
            else:
                if end - pos < 10:
                    break
                (length,) = _U64(buf, pos + 2)
                if length & _TOP_BIT:
                    self._stop(
                        "the server sent a 64-bit frame length with the top bit set (RFC 6455 5.2)",
                        1002,
                    )
                    break
                if length < 0x10000:
                    self._stop_length(length, 8)
                    break
                start = pos + 10

            message = self._message
            if opcode == CONTINUATION:
                if message == _NO_MESSAGE:
                    self._stop("the server sent a continuation frame outside a message", 1002)
                    break
                size = self._size + length
            elif opcode in (TEXT, BINARY):
                if message != _NO_MESSAGE:
                    self._stop(
                        "the server began a new message before the fragmented one finished",
                        1002,
                    )
                    break
                message = opcode | rsv  # RSV1 here means compressed (COMPRESSED's bit)
                size = length
            else:
                self._stop(f"the server sent a frame with reserved opcode {opcode:#x}", 1002)
                break
            if size > max_size and not message & COMPRESSED:
                self.error = MessageTooBig(
                    f"the server sent a message of {size} bytes or more; "
                    f"max_message_size is {max_size}"
                )
                self.error_code = 1009
                break

            fin = bool(first & _FIN)
            stop = start + length
            if stop <= end:  # the whole frame is here
                pos = stop
                if fin:
                    if run is None:
                        append((message, buf[start:stop], True))
                    else:
                        run += memoryview(buf)[start:stop]
                        append((message, bytes(run), True))
                        run = None
                    self._message = _NO_MESSAGE
                else:
                    if run is None:
                        run = bytearray()
                        run_message = message
                    run += memoryview(buf)[start:stop]
                    self._message = message
                    self._size = size
                continue
            if run is not None:
                append((run_message, bytes(run), False))
                run = None
            # Only part of the payload is here: hand it over, the rest follows in later reads.
            self._message = message
            self._size = size
            self._fin = fin
            self._remaining = stop - end
            if start < end:
                append((message, buf[start:end], False))
            pos = end
            break
        if run is not None:
            append((run_message, bytes(run), False))
        self._buf = buf[pos:] if pos < end and not self._closed and self.error is None else b""
        return pieces

    def _stop(self, message: str, code: int) -> None:
        self.error = RemoteProtocolError(message)
        self.error_code = code

    def _stop_reserved(self, rsv: int, opcode: int) -> None:
        if not self._compression:
            text = f"set reserved bits {rsv:#04x} with no extension negotiated (RFC 6455 5.2)"
        elif rsv != _RSV1:
            text = f"set reserved bits {rsv:#04x}, which permessage-deflate does not use"
        else:
            kind = "control" if opcode >= CLOSE else "continuation"
            text = f"set RSV1 on a {kind} frame (RFC 7692 6.1)"
        self._stop(f"the server {text}", 1002)

    def _stop_length(self, length: int, width: int) -> None:
        self._stop(
            f"the server encoded the frame length {length} in {width} bytes; "
            "RFC 6455 5.2 requires the shortest encoding",
            1002,
        )

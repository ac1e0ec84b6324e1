"""permessage-deflate (RFC 7692) for a client: the offer, the server's answer, and the codec.

The client offers `OFFER`. `accept_response` checks the parameters the server answered
with and returns the `DeflateParams` both sides then use. `Deflater` compresses what we
send; `Inflater` decompresses what we receive, in bounded steps: every call is given how
many bytes the message may still grow by and never produces more than one byte past it,
so a small compressed frame cannot make the process allocate what it would inflate to
(a "deflate bomb") before the size check sees it.

Both follow RFC 7692 7.2: a message is compressed with a sync flush whose final
``00 00 ff ff`` is left off the wire; the receiver puts it back at the end of the message.
With "no context takeover" for a direction, that direction starts each message afresh.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final

from gluegun_actors.errors import RemoteProtocolError

__all__ = [
    "NAME",
    "OFFER",
    "DeflateParams",
    "Deflater",
    "InflateError",
    "Inflater",
    "TooBig",
    "accept_response",
]

NAME: Final = "permessage-deflate"
OFFER: Final = "permessage-deflate; client_max_window_bits"
"""Our offer: we can compress with whatever window the server asks of us (9..15)."""

_TAIL: Final = b"\x00\x00\xff\xff"
_WINDOW_BITS = re.compile(r"[89]|1[0-5]")


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """The agreed parameters (RFC 7692 7.1); "server" is what the server compresses."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


def accept_response(params: list[tuple[str, str | None]]) -> DeflateParams:
    """The parameters of the server's permessage-deflate answer, checked (RFC 7692 7.1).

    `params` are the answer's `key[=value]` pairs, keys lower-cased. Raises
    `RemoteProtocolError` for an unknown, repeated or malformed parameter.
    """
    seen: set[str] = set()
    flags = {"server_no_context_takeover": False, "client_no_context_takeover": False}
    bits = {"server_max_window_bits": 15, "client_max_window_bits": 15}
    for key, value in params:
        if key in seen:
            raise RemoteProtocolError(f"permessage-deflate parameter {key!r} given twice")
        seen.add(key)
        if key in flags:
            if value is not None:
                raise RemoteProtocolError(
                    f"permessage-deflate parameter {key!r} takes no value, got {value!r}"
                )
            flags[key] = True
        elif key in bits:
            if value is None or not _WINDOW_BITS.fullmatch(value):
                raise RemoteProtocolError(
                    f"permessage-deflate {key}={value!r} is invalid: it must be 8 to 15"
                )
            if value == "8" and key == "client_max_window_bits":
                raise RemoteProtocolError(
                    "the server asked for client_max_window_bits=8, which zlib cannot "
                    "compress with (its smallest window is 9 bits)"
                )
            # Inflating with a 9-bit window reads what an 8-bit one wrote; zlib needs >= 9.
            bits[key] = max(int(value), 9)
        else:
            raise RemoteProtocolError(f"unknown permessage-deflate parameter {key!r}")
    return DeflateParams(
        server_no_context_takeover=flags["server_no_context_takeover"],
        client_no_context_takeover=flags["client_no_context_takeover"],
        server_max_window_bits=bits["server_max_window_bits"],
        client_max_window_bits=bits["client_max_window_bits"],
    )


class InflateError(Exception):
    """The peer's compressed data is not valid deflate data (close code 1007)."""


class TooBig(Exception):
    """Inflating would take the message past its limit (close code 1009)."""


class Inflater:
    """Decompresses the server's messages, never past the room a message has left."""

    __slots__ = ("_bits", "_reset", "_zlib")

    def __init__(self, params: DeflateParams) -> None:
        self._bits = params.server_max_window_bits
        self._reset = params.server_no_context_takeover
        self._zlib: zlib._Decompress | None = None

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate a piece of a compressed message; `room` is how many bytes it may still add.

        Raises `TooBig` when the piece would inflate past `room` (having produced at most
        `room + 1` bytes), `InflateError` when it is not deflate data.
        """
        decompressor = self._zlib
        if decompressor is None:
            decompressor = self._zlib = zlib.decompressobj(-self._bits)
        try:
            out = decompressor.decompress(data, room + 1)
        except zlib.error as exc:
            raise InflateError(str(exc)) from None
        if len(out) > room:
            raise TooBig
        return out

    def finish(self, room: int) -> bytes:
        """The end of the message: what its sync-flush tail still yields, bounded as `feed`."""
        out = self.feed(_TAIL, room)
        decompressor = self._zlib
        if self._reset or (decompressor is not None and decompressor.eof):
            # A server may end its deflate stream with a final block (RFC 7692 7.2.3.4):
            # the next message then starts afresh; an ended zlib object would swallow it.
            self._zlib = None
        return out

    def abandon(self) -> None:
        """The message was dropped (the connection failed): forget its state."""
        self._zlib = None


class Deflater:
    """Compresses our messages as the server agreed to read them."""

    __slots__ = ("_bits", "_reset", "_zlib")

    def __init__(self, params: DeflateParams) -> None:
        self._bits = params.client_max_window_bits
        self._reset = params.client_no_context_takeover
        self._zlib: zlib._Compress | None = None

    def compress(self, payload: bytes) -> bytes:
        """One whole message, compressed and sync-flushed, without the final empty block."""
        compressor = self._zlib
        if compressor is None:
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._bits)
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._zlib = None if self._reset else compressor
        return data[:-4] if data.endswith(_TAIL) else data

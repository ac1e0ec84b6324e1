"""One request and its response as the HTTP/1.1 core tracks them: state tables and framing.

A request moves through `SendState` (the `RELEASE` and `FINISH_BODY` tables say how);
its response through `RecvState`. `Framing` says how the request body is delimited, and
`Exchange.encode_body` turns body pieces into wire pieces under it.
"""

from __future__ import annotations

import enum
from typing import Final

from gluegun_actors._types import StreamRef
from gluegun_actors.errors import LocalProtocolError

__all__ = ["FINISH_BODY", "RELEASE", "WRITTEN", "Exchange", "Framing", "RecvState", "SendState"]


class SendState(enum.Enum):
    """The request side of one exchange."""

    HELD_STREAMING = "held, body still coming"
    HELD_COMPLETE = "held, request complete"
    STREAMING = "written, body still coming"
    SENT = "written completely"


RELEASE: Final = {
    SendState.HELD_STREAMING: SendState.STREAMING,
    SendState.HELD_COMPLETE: SendState.SENT,
}
"""What a held request becomes when it is written."""

FINISH_BODY: Final = {
    SendState.HELD_STREAMING: SendState.HELD_COMPLETE,
    SendState.STREAMING: SendState.SENT,
}
"""What a streaming request becomes when its body ends."""

WRITTEN: Final = frozenset({SendState.STREAMING, SendState.SENT})


class RecvState(enum.Enum):
    """The response side of one exchange."""

    WAITING = "no final response yet"
    BODY = "final response head received"
    DONE = "response complete, or the stream ended otherwise"


class Framing(enum.Enum):
    """How a request body is delimited on the wire."""

    NONE = "no body"
    LENGTH = "content-length"
    CHUNKED = "chunked"


class Exchange:
    """One request and its response, as the core tracks them."""

    __slots__ = (
        "framing",
        "informs",
        "keep_alive",
        "method",
        "pending",
        "recv",
        "remaining",
        "send",
        "stream",
        "upgrade_header",
    )

    def __init__(self, stream: StreamRef, method: bytes, upgrade_header: bool) -> None:
        self.stream = stream
        self.method = method
        self.upgrade_header = upgrade_header
        self.send = SendState.HELD_COMPLETE
        self.recv = RecvState.WAITING
        self.framing = Framing.NONE
        self.remaining = 0  # body bytes still owed under content-length framing
        self.pending: list[bytes] = []  # bytes of a held request, written on release
        self.keep_alive = True  # the response lets the connection carry on
        self.informs = 0  # 1xx responses before the final one (bounded: MAX_INFORMS)

    @property
    def switches(self) -> bool:
        """True for a request whose answer may switch protocols: hold what follows it."""
        return self.upgrade_header or self.method == b"CONNECT"

    def encode_body(self, data: bytes, is_fin: bool) -> list[bytes]:
        """Wire pieces for `data`; raises (changing nothing) when the framing forbids it."""
        size = len(data)
        if self.framing is Framing.CHUNKED:
            out = [b"%x\r\n" % size, data, b"\r\n"] if size else []
            if is_fin:
                out.append(b"0\r\n\r\n")
            return out
        if self.framing is Framing.LENGTH:
            if size > self.remaining:
                raise LocalProtocolError(
                    f"{self.stream!r}: {size} body bytes exceed the declared content-length "
                    f"({self.remaining} bytes still expected); nothing was sent"
                )
            if is_fin and size != self.remaining:
                raise LocalProtocolError(
                    f"{self.stream!r}: the body ends {self.remaining - size} bytes short of "
                    "its declared content-length; nothing was sent"
                )
            self.remaining -= size
            return [data] if size else []
        if size:
            raise LocalProtocolError(f"{self.stream!r} has no request body; nothing was sent")
        return []

"""Close frames (RFC 6455 5.5.1, 7.4): which codes may be sent, the peer's parsed, ours checked."""

from __future__ import annotations

from typing import Final

from gluegun_actors.errors import InvalidArgument, LocalProtocolError
from gluegun_actors.message import Close

__all__ = ["FAIL_REASONS", "MAX_CLOSE_REASON", "BadClose", "close_payload", "parse_close"]

MAX_CLOSE_REASON: Final = 123
"""A close reason shares the 125-byte control payload with the 2-byte code."""

FAIL_REASONS: Final = {
    1002: "protocol error",
    1007: "invalid frame payload data",
    1009: "message too big",
}
"""The reason we send with the close code we fail a connection with."""


def valid_close_code(code: int) -> bool:
    """Codes an endpoint may put in a close frame (RFC 6455 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class BadClose(Exception):
    """The peer's close frame is malformed; `code` is the close code to fail with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def parse_close(payload: bytes) -> Close:
    """The peer's close frame, or `BadClose` with the code to fail with."""
    if not payload:
        return Close(None, "")
    if len(payload) == 1:
        raise BadClose("the server sent a close frame with a 1-byte payload", 1002)
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise BadClose(f"the server sent a close frame with the invalid code {code}", 1002)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise BadClose("the server sent a close reason that is not UTF-8", 1007) from None
    return Close(code, reason)


def close_payload(frame: Close) -> tuple[int | None, bytes]:
    """Check a close frame from the owner; returns its code and encoded reason."""
    if frame.code is None:
        if frame.reason:
            raise LocalProtocolError("a close frame without a code cannot carry a reason")
        return None, b""
    if isinstance(frame.code, bool) or not isinstance(frame.code, int):
        raise InvalidArgument(f"close code must be an int or None, got {frame.code!r}")
    if not valid_close_code(frame.code):
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

"""The exceptions of gluegun_actors: one small tree under `GluegunError`.

The tree is flat on purpose (as httpcore's): callers catch a family
(`ConnectionDown`, `StreamError`, `ProtocolError`) or everything at once.
Every message says what happened and what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gluegun_actors._types import Headers, StreamRef


class GluegunError(Exception):
    """Base of every error raised by gluegun_actors."""


class InvalidArgument(GluegunError, TypeError):
    """A caller passed a value of the wrong type."""


class InvalidTimeout(InvalidArgument):
    """A timeout that is not milliseconds (`int`, `Milliseconds`) or `Infinity`."""


class InvalidOptions(GluegunError, ValueError):
    """An option has a value out of its range, or options that contradict each other."""


class AwaitTimeout(GluegunError, TimeoutError):
    """Nothing matched within the timeout. Nothing was taken from the mailbox."""


class BadStateError(GluegunError):
    """The operation is not valid in the connection's or stream's current state."""


class ConnectionDown(GluegunError):
    """The connection was lost (or could not be made) while a caller waited on it.

    `reason` is the same value the owner sees in `GunDown` / `Down`.
    """

    def __init__(self, message: str, reason: object = None) -> None:
        super().__init__(message)
        self.reason = reason


class ConnectionTerminated(ConnectionDown):
    """The connection actor itself has stopped: nothing more will come from it."""


class StreamError(GluegunError):
    """One stream failed; the connection may still be up.

    `stream` is the stream's reference and `reason` what ended it.
    """

    def __init__(
        self, message: str, stream: StreamRef | None = None, reason: object = None
    ) -> None:
        super().__init__(message)
        self.stream = stream
        self.reason = reason


class UpgradeFailed(StreamError):
    """The server answered a WebSocket upgrade with something other than 101.

    Carries the response's `status`, `headers` and `body` so the caller can report it.
    """

    def __init__(
        self,
        message: str,
        stream: StreamRef | None,
        status: int,
        headers: Headers,
        body: bytes,
    ) -> None:
        super().__init__(message, stream, reason=status)
        self.status = status
        self.headers = headers
        self.body = body


class WebSocketClosed(StreamError):
    """The peer closed the WebSocket; `code` and `close_reason` are from its close frame."""

    def __init__(
        self, message: str, stream: StreamRef | None, code: int | None, close_reason: str
    ) -> None:
        super().__init__(message, stream, reason=code)
        self.code = code
        self.close_reason = close_reason


class ProtocolError(GluegunError):
    """The protocol was broken: by us (`LocalProtocolError`) or the peer (`RemoteProtocolError`)."""


class LocalProtocolError(ProtocolError, ValueError):
    """The caller asked for something the protocol forbids (e.g. a header value with CR/LF).

    Raised in the caller before anything is sent.
    """


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids (bad status line, oversized headers...)."""


class MessageTooBig(RemoteProtocolError):
    """The peer sent a message larger than the configured limit."""


def describe(reason: Any) -> str:
    """A short human text for a down/error reason (a string or an exception)."""
    if isinstance(reason, BaseException):
        text = str(reason)
        return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
    return str(reason)


class PongTimeout(GluegunError, TimeoutError):
    """The peer did not answer a keepalive ping within `pong_timeout`: it is presumed dead."""


class ClosingTimeout(GluegunError, TimeoutError):
    """The peer did not finish the WebSocket closing handshake within `closing_timeout`."""


class UnsupportedProtocol(BadStateError):
    """The operation needs a protocol this connection does not speak (WebSocket over HTTP/2)."""


class SupervisorError(GluegunError):
    """A supervisor refused an operation: an unknown or duplicate child, a child that is
    (or is not) running, or a supervisor that has stopped. The message says which."""


class ManagerError(GluegunError, LookupError):
    """A connection manager refused an operation: a key already in use, a key it does not
    know, or the manager has stopped. The message says which."""


class ChildStartError(SupervisorError):
    """A child's start callable raised, or returned something that is not an actor.

    `child_id` names the child; `__cause__` is what the start callable raised. When a
    supervisor's own start fails so, every child it had started is stopped first.
    """

    def __init__(self, message: str, child_id: object) -> None:
        super().__init__(message)
        self.child_id = child_id

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


class ProxyError(ConnectionDown):
    """The proxy could not be reached, or did not open the tunnel to the server.

    `proxy` is the proxy's `host:port` and `reply` its answer, when it gave one (the HTTP
    status of a CONNECT, or the SOCKS5 reply code). Messages never carry the credentials.
    Retried by the connection's retry policy like any failed connect, except
    `ProxyAuthenticationError`.
    """

    def __init__(self, message: str, *, proxy: str = "", reply: int | None = None) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.reply = reply


class ProxyAuthenticationError(ProxyError):
    """The proxy refused the credentials (HTTP 407, a SOCKS5 authentication failure), or
    wants credentials that were not given. Not retried: the connection stops at once."""


class ConnectFailed(ConnectionTerminated):
    """The connection stopped because it could not connect: every attempt of its last run
    of retries failed (or the only one, with `retry=0`).

    `reason` (the same as in `Down`) and `__cause__` are the last attempt's own exception,
    as the socket layer raised it: `ConnectionRefusedError`, `socket.gaierror` (DNS),
    `TimeoutError` (`connect_timeout` and friends), `ssl.SSLCertVerificationError` (its
    `verify_message` says why) or another `ssl.SSLError`. `attempts` counts the failures.
    """

    def __init__(self, message: str, reason: object = None, attempts: int = 0) -> None:
        super().__init__(message, reason)
        self.attempts = attempts


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

    @classmethod
    def of_response(
        cls,
        stream: StreamRef | None,
        status: int,
        headers: Headers,
        body: bytes,
        path: str | None = None,
    ) -> UpgradeFailed:
        """The error for an upgrade answered with `status`: the status, a hint at the likely
        cause, and the body when it is short enough to read in a message."""
        where = "the upgrade's path" if path is None else repr(path)
        message = (
            f"the server refused the WebSocket upgrade of {stream!r} with status {status}: "
            f"{_refusal_hint(status, headers, where)}"
        )
        text = body.strip()
        if text and len(text) <= _BODY_SHOWN:
            message += f"; its body: {text.decode('utf-8', 'replace')!r}"
        elif text:
            message += f"; its body ({len(body)} bytes) is in .body"
        return cls(message, stream, status, headers, body)


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


_BODY_SHOWN = 200
"""Bytes of a refused upgrade's body quoted in its message, at most."""


def _refusal_hint(status: int, headers: Headers, where: str) -> str:
    if 200 <= status < 300:
        return f"it answered as to a plain HTTP request: is {where} a WebSocket endpoint?"
    if 300 <= status < 400:
        location = next((value for name, value in headers if name == "location"), None)
        target = f" to {location!r}" if location else ""
        return f"it redirects{target}; upgrades do not follow redirects: connect there instead"
    match status:
        case 400:
            return f"it rejected the handshake: is {where} a WebSocket endpoint?"
        case 401 | 403:
            return "not allowed: does it want credentials (an authorization header) or an origin?"
        case 404:
            return f"{where} was not found: is it the WebSocket endpoint's path?"
        case 426:
            return "it asks for another protocol version (see its sec-websocket-version header)"
    if status >= 500:
        return "the server failed; try again later"
    return f"is {where} a WebSocket endpoint?"


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

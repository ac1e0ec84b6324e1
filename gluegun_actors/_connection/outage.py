"""Why a connection is not up: the failed connect attempts of one outage, explained.

An outage starts with the first failed connect attempt after the connection was up (or
since it was opened) and ends when an attempt succeeds. At each failure the actor
publishes a fresh `Outage` on the connection's handle (a reference swap, made only on
failure: nothing on the message path), so that a caller whose wait timed out, or who
finds the connection stopped, can say why without asking the actor.

`explain` turns one attempt's exception into a sentence that names the kind of failure
(refused, DNS, timeout, TLS certificate, TLS to a plain server) and what to do about it.
The exception itself stays what the socket layer raised (`ConnectionRefusedError`,
`socket.gaierror`, `TimeoutError`, `ssl.SSLCertVerificationError`...): it is the `reason`
of `Down` (as Gun's) and the `__cause__` of the error a wait raises.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Final

from gluegun_actors._io.addresses import host_port
from gluegun_actors.errors import describe

__all__ = ["Outage", "explain", "permanent"]

_PLAIN_TEXT_REASONS: Final = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)
"""OpenSSL's reasons for a handshake answered with bytes that are not TLS."""

_UNREACHABLE: Final = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL})


def permanent(error: BaseException) -> bool:
    """A failure the next attempt would meet again: a certificate that does not verify,
    proxy credentials refused. It is reported at once, not retried (unless the caller
    asks with `retry_permanent`): retrying would only hide it behind a timeout."""
    from gluegun_actors.errors import ProxyAuthenticationError

    return isinstance(error, ssl.SSLCertVerificationError | ProxyAuthenticationError)


@dataclass(frozen=True, slots=True)
class Outage:
    """The failed attempts since the connection was last up."""

    host: str
    port: int
    error: BaseException
    """The last attempt's exception."""
    failures: int
    """Failed attempts in this outage, the last one included."""
    retries_left: int
    """Retries left after the next attempt."""
    next_attempt_at: float | None
    """`time.monotonic()` of the next attempt; None when no retry is left."""

    @property
    def target(self) -> str:
        return host_port(self.host, self.port)

    def __str__(self) -> str:
        """E.g. "connect to 127.0.0.1:1 failed 3 times, last: ConnectionRefusedError: ...
        (retrying in 200 ms, then 2 more retries)"."""
        times = "once" if self.failures == 1 else f"{self.failures} times"
        return f"connect to {self.target} failed {times}, last: {self.why()} ({self.plan()})"

    def why(self) -> str:
        """The last attempt's failure, explained."""
        return explain(self.error, self.host)

    def plan(self) -> str:
        """What the connection does next, as seen now."""
        if self.next_attempt_at is None:
            return "no retries left"
        wait_ms = round((self.next_attempt_at - time.monotonic()) * 1000)
        when = f"retrying in {wait_ms} ms" if wait_ms > 0 else "retrying now"
        if self.retries_left == 0:
            return f"{when}, the last retry"
        more = "retry" if self.retries_left == 1 else "retries"
        return f"{when}, then {self.retries_left} more {more}"


def explain(error: BaseException, host: str) -> str:
    """One connect attempt's failure: its kind, the exception, and a hint where one helps."""
    text = describe(error)
    if isinstance(error, ssl.SSLCertVerificationError):
        why = error.verify_message or error.reason or "rejected"
        return (
            f"TLS certificate verification failed: {why} ({text}); to trust it, pass "
            "tls_context=ssl.create_default_context(cafile=...) with its issuer"
        )
    if isinstance(error, ssl.SSLError):
        if error.reason in _PLAIN_TEXT_REASONS:
            return (
                f"TLS handshake failed: the server answered in plain text? ({text}); "
                "use transport='tcp' (ws://, http://) for a server without TLS"
            )
        if isinstance(error, ssl.SSLEOFError):
            return (
                f"TLS handshake failed: the server closed the connection ({text}); "
                "does it speak TLS on this port?"
            )
        return f"TLS handshake failed: {text}"
    if isinstance(error, socket.gaierror):
        return f"DNS lookup of {host!r} failed: {text}"
    if isinstance(error, ConnectionRefusedError):
        return f"{text} (nothing accepts connections there: is the server running?)"
    if isinstance(error, OSError) and error.errno in _UNREACHABLE:
        return f"{text} (the host cannot be reached from here)"
    return text

"""Secrets stay out of logs, reprs and error messages.

Header values named in `SENSITIVE_HEADERS` (plus a connection's own
`sensitive_headers` option) are shown as `<redacted>` wherever the library prints
headers: the DEBUG event log and the repr of options. An `event_handler` still sees
the real values, as Gun's does: it is the caller's own code. URLs in messages lose
their userinfo (`shown_url`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

__all__ = [
    "REDACTED",
    "SENSITIVE_HEADERS",
    "SafeHeaders",
    "redact_fields",
    "redact_headers",
    "shown_url",
]

SENSITIVE_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "sec-websocket-key",
    }
)
"""Header names whose values are never printed (compared lower-cased)."""

REDACTED: Final = "<redacted>"


def redact_headers(
    headers: Iterable[tuple[Any, Any]], extra: frozenset[str] = frozenset()
) -> list[tuple[Any, Any]]:
    """`headers` with the values of sensitive names replaced by `REDACTED`."""
    shown = []
    for name, value in headers:
        text = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        key = text.lower()
        hidden = key in SENSITIVE_HEADERS or key in extra
        shown.append((name, REDACTED if hidden else value))
    return shown


def redact_fields(fields: dict[str, Any], extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """An event's fields for the log: every `headers` field redacted, the rest as is."""
    if "headers" not in fields:
        return fields
    return {**fields, "headers": redact_headers(fields["headers"], extra)}


def shown_url(url: str) -> str:
    """`url` quoted for an error message, its userinfo replaced by `***@`."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return repr(f"{scheme}{sep}{netloc}{slash}{tail}")


class SafeHeaders(tuple[tuple[str, str], ...]):
    """A header tuple whose repr hides sensitive values (for options kept in reprs)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(tuple(redact_headers(self)))

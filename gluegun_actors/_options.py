"""Connection options: every knob in one frozen dataclass, validated once.

Names follow Gun's where Gun has one (`retry`, `retry_timeout`, `retry_fun`,
`connect_timeout`, `transport`, `protocols`, `closing_timeout`, `keepalive`, `flow`).
Durations are milliseconds (an `int`, `Milliseconds` or `Infinity`), as everywhere else.
"""

from __future__ import annotations

import dataclasses
import random
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gluegun_actors._types import Infinity, Milliseconds, Protocol, timeout_ms
from gluegun_actors.errors import InvalidOptions, InvalidTimeout

if TYPE_CHECKING:
    import pykka

    from gluegun_actors.mailbox import Mailbox

EventHandler = Callable[[str, Mapping[str, Any]], None]
"""Called as `handler(event_name, fields)` during the connection actor's turn; must not block."""

RetryFun = Callable[[int, "Options"], tuple[int, int]]
"""`retry_fun(retries_left, options) -> (retries_left_after, delay_ms)`, as Gun's retry_fun."""


@dataclass(frozen=True, slots=True)
class Options:
    """How a connection connects, retries, reports and bounds what it reads.

    Build it with `connection.options(**fields)`, which validates every field.
    """

    connect_timeout: int | None = 30_000
    """Bound on one connect attempt (DNS, TCP, TLS), ms; None waits as long as the OS does."""
    retry: int = 5
    """Attempts after the first one (Gun's `retry`); the count resets after a success."""
    retry_timeout: int = 5_000
    """Delay between retries, ms; the first retry after a loss or failure is immediate."""
    retry_fun: RetryFun | None = None
    """Replaces the delay policy: `(retries_left, options) -> (retries_left_after, delay_ms)`."""
    retry_backoff: float = 1.0
    """Each further delay is multiplied by this (1.0 = Gun's fixed delay)."""
    retry_max_timeout: int = 60_000
    """Upper bound on any retry delay, ms."""
    retry_jitter: float = 0.0
    """Spread each delay by up to this fraction either way (0.2 = ±20 %)."""
    transport: Literal["tcp", "tls"] = "tcp"
    tls_context: ssl.SSLContext | None = None
    """The context for `transport="tls"`; None uses `ssl.create_default_context()`."""
    tls_server_name: str | None = None
    """SNI and certificate name; defaults to the host."""
    protocols: tuple[Protocol, ...] = (Protocol.HTTP1,)
    closing_timeout: int = 15_000
    """How long a WebSocket close waits for the peer's close frame, ms."""
    keepalive: int | None = None
    """Ping an upgraded WebSocket after this much silence, ms; None never pings."""
    pong_timeout: int | None = None
    """After a keepalive ping, the peer must answer within this, ms, or the connection is down."""
    flow: int | None = None
    """Initial flow credits per stream (messages); None = no flow control."""
    owner: Mailbox | pykka.ActorRef[Any] | None = None
    """Where messages go; None = the opening thread's own mailbox (`mailbox.current()`)."""
    event_handler: EventHandler | None = None
    max_header_block_size: int = 100_000
    """Largest response header block accepted, bytes; more is a protocol error."""
    owner_check_interval: int = 200
    """How often an owner that is a Pykka actor is checked for life, ms."""

    def retry_delay(self, attempt: int, retries_left: int) -> tuple[int, int]:
        """The `(retries_left_after, delay_ms)` before retry number `attempt` (1-based)."""
        if self.retry_fun is not None:
            left, pause = self.retry_fun(retries_left, self)
            return max(0, int(left)), max(0, int(pause))
        if attempt <= 1:
            return retries_left - 1, 0
        delay: float = min(
            self.retry_timeout * self.retry_backoff ** (attempt - 2), self.retry_max_timeout
        )
        if self.retry_jitter:
            delay *= 1.0 + random.uniform(-self.retry_jitter, self.retry_jitter)
        return retries_left - 1, int(max(0.0, delay))


_MS_FIELDS = (
    "connect_timeout",
    "retry_timeout",
    "retry_max_timeout",
    "closing_timeout",
    "keepalive",
    "pong_timeout",
    "owner_check_interval",
)
_OPTIONAL_MS = ("connect_timeout", "keepalive", "pong_timeout")
_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Options))


def check_names(fields: dict[str, Any], valid: frozenset[str]) -> None:
    """Refuse option names that are not in `valid`, listing the valid ones."""
    unknown = set(fields) - valid
    if unknown:
        raise InvalidOptions(
            f"unknown option(s) {sorted(unknown)}; valid options are {sorted(valid)}"
        )


def milliseconds_option(name: str, value: object, optional: bool) -> int | None:
    """An option's duration as int ms (None for Infinity when `optional`), validated."""
    if value is None or value is Infinity:
        if optional:
            return None
        raise InvalidOptions(f"option {name} needs a finite number of milliseconds")
    if isinstance(value, Milliseconds):
        return value.value
    try:
        ms = timeout_ms(value)
    except InvalidTimeout as error:
        raise InvalidOptions(f"option {name}: {error}") from None
    if ms is None and not optional:
        raise InvalidOptions(f"option {name} needs a finite number of milliseconds")
    return ms


def make_options(base: Options | None = None, **fields: Any) -> Options:
    """Validate `fields` and return new `Options` (Gun-style names, ms durations)."""
    check_names(fields, _FIELD_NAMES)
    for name in _MS_FIELDS:
        if name in fields:
            fields[name] = milliseconds_option(name, fields[name], name in _OPTIONAL_MS)
    for name in ("retry", "flow"):
        value = fields.get(name, 0)
        if value is None and name == "flow":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidOptions(f"option {name} must be a non-negative int, got {value!r}")
    if "retry_backoff" in fields:
        backoff = fields["retry_backoff"]
        if not isinstance(backoff, int | float) or backoff < 1.0:
            raise InvalidOptions(f"retry_backoff must be a number >= 1.0, got {backoff!r}")
    if "retry_jitter" in fields:
        jitter = fields["retry_jitter"]
        if not isinstance(jitter, int | float) or not 0.0 <= jitter < 1.0:
            raise InvalidOptions(f"retry_jitter must be in [0, 1), got {jitter!r}")
    if fields.get("transport", "tcp") not in ("tcp", "tls"):
        raise InvalidOptions(f"transport must be 'tcp' or 'tls', got {fields['transport']!r}")
    context = fields.get("tls_context")
    if context is not None and not isinstance(context, ssl.SSLContext):
        raise InvalidOptions(f"tls_context must be an ssl.SSLContext, got {type(context).__name__}")
    if "protocols" in fields:
        fields["protocols"] = _protocols(fields["protocols"])
    for name in ("retry_fun", "event_handler"):
        if fields.get(name) is not None and not callable(fields[name]):
            raise InvalidOptions(f"option {name} must be callable, got {fields[name]!r}")
    if fields.get("owner") is not None:
        _check_owner(fields["owner"])
    header_limit = fields.get("max_header_block_size", 1)
    if isinstance(header_limit, bool) or not isinstance(header_limit, int) or header_limit < 1:
        raise InvalidOptions(f"max_header_block_size must be a positive int, got {header_limit!r}")
    return dataclasses.replace(base or Options(), **fields)


def _protocols(value: object) -> tuple[Protocol, ...]:
    items = (value,) if isinstance(value, Protocol | str) else value
    if not isinstance(items, list | tuple) or not items:
        raise InvalidOptions(f"protocols must be a non-empty list of Protocol, got {value!r}")
    protocols = []
    for item in items:
        try:
            protocol = Protocol(item.value if isinstance(item, Protocol) else item)
        except ValueError:
            raise InvalidOptions(f"unknown protocol {item!r}; use Protocol.HTTP1") from None
        if protocol is not Protocol.HTTP1:
            raise InvalidOptions(
                f"protocol {protocol.value!r} is not supported; only Protocol.HTTP1 is "
                "(WebSocket is reached by upgrading an HTTP/1.1 stream)"
            )
        protocols.append(protocol)
    return tuple(protocols)


def _check_owner(owner: object) -> None:
    import pykka

    from gluegun_actors.mailbox import Mailbox

    if not isinstance(owner, Mailbox | pykka.ActorRef):
        raise InvalidOptions(
            f"owner must be a gluegun_actors.mailbox.Mailbox or a pykka.ActorRef, got {owner!r}"
        )

"""Options: every knob of a connection, and of a WebSocket, in one frozen dataclass each.

Each is checked once, where it is built (`__post_init__`, so `connection.options()`,
`websocket.options()` and the classes themselves all check): a value of the wrong type
or out of range raises `InvalidOptions` saying which option and what it takes. Every
default lives in the field that has it.

Names follow Gun's where Gun has one (`retry`, `retry_timeout`, `retry_fun`,
`connect_timeout`, `transport`, `protocols`, `closing_timeout`, `keepalive`, `flow`).
Durations are milliseconds (an `int`, `Milliseconds` or `Infinity`), as everywhere else,
and are stored as `int` (None for "never" where an option allows it).
"""

from __future__ import annotations

import dataclasses
import random
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gluegun_actors._checks import check_headers
from gluegun_actors._protocol.http1 import DEFAULT_MAX_HEADER_BLOCK_SIZE
from gluegun_actors._protocol.http1_request import TOKEN_TEXT
from gluegun_actors._protocol.ws import DEFAULT_MAX_MESSAGE_SIZE
from gluegun_actors._protocol.ws_handshake import check_extra_headers
from gluegun_actors._proxy import Proxy, parse_proxy
from gluegun_actors._redact import SafeHeaders
from gluegun_actors._timeouts import Infinity, Milliseconds, timeout_ms
from gluegun_actors._types import Headers, Protocol
from gluegun_actors.errors import GluegunError, InvalidOptions, InvalidTimeout

if TYPE_CHECKING:
    import pykka

    from gluegun_actors.mailbox import Mailbox

__all__ = [
    "EventHandler",
    "Options",
    "RetryFun",
    "WsOptions",
    "check_names",
    "make_options",
    "milliseconds",
]

EventHandler = Callable[[str, Mapping[str, Any]], None]
"""Called as `handler(event_name, fields)` during the connection actor's turn; must not block."""

RetryFun = Callable[[int, "Options"], tuple[int, int]]
"""`retry_fun(retries_left, options) -> (retries_left_after, delay_ms)`, as Gun's retry_fun."""


@dataclass(frozen=True, slots=True)
class Options:
    """How a connection connects, retries, reports and bounds what it reads.

    Build it with `connection.options(**fields)`; every field is checked.
    """

    connect_timeout: int | None = 30_000
    """Bound on the TCP connect of one attempt (every address the name gave), ms; None
    waits as long as the OS does."""
    domain_lookup_timeout: int | None = 30_000
    """Bound on resolving the host name of one attempt, ms (not used for an IP literal)."""
    tls_handshake_timeout: int | None = 30_000
    """Bound on the TLS handshake of one attempt, ms."""
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
    retry_permanent: bool = False
    """Retry failures that do not go away by themselves too (a certificate that does not
    verify, proxy credentials refused); by default they end the connection at once."""
    transport: Literal["tcp", "tls"] | None = None
    """"tcp" or "tls"; None chooses by port, as Gun does: TLS on 443, TCP elsewhere."""
    tls_context: ssl.SSLContext | None = None
    """The context for `transport="tls"`; None uses `ssl.create_default_context()`."""
    tls_server_name: str | None = None
    """SNI and certificate name; defaults to the host."""
    proxy: Proxy | None = None
    """Reach the server through a proxy, given as a URL (kept as a `Proxy`):
    `"http://[user:password@]host:port"` asks an HTTP proxy for a tunnel with CONNECT
    (credentials as `Proxy-Authorization: Basic`); `"socks5://[user:password@]host:port"`
    asks a SOCKS5 proxy (RFC 1928, credentials by RFC 1929). The port is required. The
    proxy's name is resolved here and the server's by the proxy; TLS runs inside the
    tunnel, with SNI and verification against the server's name. Every connect attempt,
    retries included, dials the proxy and opens the tunnel anew, bounded by
    `connect_timeout`. A proxy that cannot be reached or refuses the tunnel fails the
    attempt with `ProxyError`; refused credentials (407, SOCKS5 authentication) with
    `ProxyAuthenticationError`, which is not retried. Credentials are never shown: the
    option's repr and every message write `***`. A bad URL raises `InvalidOptions`.
    Example: `connection.options(proxy="socks5://user:secret@127.0.0.1:1080")`."""
    proxy_from_env: bool = False
    """Take the proxy from the environment when `proxy` is not given: `https_proxy` for
    TLS connections, `http_proxy` for TCP ones, else `all_proxy`; none for a host that
    `no_proxy` lists. Read when the connection is opened; off by default, so the
    environment is never used unless asked. A bad URL there raises `InvalidOptions` from
    `connection.open`. Example: `connection.options(proxy_from_env=True)`."""
    protocols: tuple[Protocol, ...] = (Protocol.HTTP1,)
    closing_timeout: int = 15_000
    """How long a WebSocket close waits for the peer's close frame, ms."""
    keepalive: int | None = None
    """Ping an upgraded WebSocket after this much silence from the peer, ms; None never
    pings (Gun's `ws_opts.keepalive`)."""
    http_keepalive: int | None = None
    """Send an empty line on an idle HTTP/1.1 connection after this much silence, ms, as
    Gun's `http_opts.keepalive` does, so that a server's idle timeout does not close it;
    None (the default, as in Gun) never does. Servers built on h11 or `http.server`
    refuse an empty line before a request: use it only with servers that accept one
    (RFC 9112 2.2 asks them to)."""
    pong_timeout: int | None = None
    """After a keepalive ping, the peer must answer within this, ms, or the connection is down."""
    flow: int | None = None
    """Initial flow credits per stream (messages); None = no flow control."""
    owner: Mailbox | pykka.ActorRef[Any] | None = None
    """Where messages go; None = the opening thread's own mailbox (`mailbox.current()`)."""
    event_handler: EventHandler | None = None
    """Called with Gun's event names and fields (`trace` module); sees header values whole."""
    sensitive_headers: frozenset[str] = frozenset()
    """Header names, beside the default list (authorization, proxy-authorization, cookie,
    set-cookie, x-api-key, x-auth-token, sec-websocket-key), whose values the DEBUG log
    and reprs show as `<redacted>`."""
    max_header_block_size: int = DEFAULT_MAX_HEADER_BLOCK_SIZE
    """Largest response header block accepted, bytes; more is a protocol error."""

    def __post_init__(self) -> None:
        for name in ("retry_timeout", "retry_max_timeout", "closing_timeout"):
            _set(self, name, milliseconds(name, getattr(self, name), optional=False))
        for name in (
            "connect_timeout",
            "domain_lookup_timeout",
            "tls_handshake_timeout",
            "keepalive",
            "http_keepalive",
            "pong_timeout",
        ):
            _set(self, name, milliseconds(name, getattr(self, name), optional=True))
        _count("retry", self.retry, optional=False)
        if not isinstance(self.retry_permanent, bool):
            raise InvalidOptions(f"retry_permanent must be a bool, got {self.retry_permanent!r}")
        _count("flow", self.flow, optional=True)
        backoff = self.retry_backoff
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 1.0:
            raise InvalidOptions(f"retry_backoff must be a number >= 1.0, got {backoff!r}")
        jitter = self.retry_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float):
            raise InvalidOptions(f"retry_jitter must be in [0, 1), got {jitter!r}")
        if not 0.0 <= jitter < 1.0:
            raise InvalidOptions(f"retry_jitter must be in [0, 1), got {jitter!r}")
        if self.transport not in (None, "tcp", "tls"):
            raise InvalidOptions(
                f"transport must be 'tcp', 'tls' or None (by port), got {self.transport!r}"
            )
        context = self.tls_context
        if context is not None and not isinstance(context, ssl.SSLContext):
            raise InvalidOptions(
                f"tls_context must be an ssl.SSLContext, got {type(context).__name__}"
            )
        server_name = self.tls_server_name
        if server_name is not None and (not isinstance(server_name, str) or not server_name):
            raise InvalidOptions(f"tls_server_name must be a non-empty str, got {server_name!r}")
        _set(self, "protocols", _protocols(self.protocols))
        for field in ("retry_fun", "event_handler"):
            if getattr(self, field) is not None and not callable(getattr(self, field)):
                raise InvalidOptions(
                    f"option {field} must be callable, got {getattr(self, field)!r}"
                )
        if self.owner is not None:
            _check_owner(self.owner)
        _set(self, "sensitive_headers", _header_names(self.sensitive_headers))
        limit = self.max_header_block_size
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidOptions(f"max_header_block_size must be a positive int, got {limit!r}")
        if self.proxy is not None:
            _set(self, "proxy", parse_proxy(self.proxy))
        if not isinstance(self.proxy_from_env, bool):
            raise InvalidOptions(f"proxy_from_env must be a bool, got {self.proxy_from_env!r}")
        if self.proxy is not None and self.proxy_from_env:
            raise InvalidOptions("give proxy or proxy_from_env=True, not both")

    def transport_for(self, port: int) -> Literal["tcp", "tls"]:
        """The transport a connection to `port` uses: the option, or by port as Gun."""
        if self.transport is not None:
            return self.transport
        return "tls" if port == 443 else "tcp"

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


@dataclass(frozen=True, slots=True)
class WsOptions:
    """WebSocket options (`websocket.Options`); build with `websocket.options(**fields)`.

    Durations are milliseconds; None for `keepalive`, `pong_timeout`, `closing_timeout`
    and `flow` takes the connection's value.
    """

    protocol: Protocol = Protocol.HTTP1
    """The protocol to upgrade over; only HTTP/1.1 carries WebSocket here."""
    headers: Headers = ()
    """Extra request headers for the upgrade (e.g. authorization, origin)."""
    subprotocols: tuple[str, ...] = ()
    """Offered in sec-websocket-protocol; the server's choice is reported in GunUpgrade."""
    compress: bool = False
    """Offer permessage-deflate."""
    keepalive: int | None = None
    """Ping after this many ms; None = the connection's `keepalive`."""
    pong_timeout: int | None = None
    """A ping unanswered for this many ms takes the connection down (`PongTimeout`)."""
    silence_pings: bool = True
    """Keep ping and pong frames from the owner (they are answered regardless)."""
    closing_timeout: int | None = None
    """How long a close waits for the peer's close frame; None = the connection's (15 s)."""
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """Largest reassembled message accepted, bytes after decompression; larger closes
    with 1009."""
    flow: int | None = None
    """Flow credits (messages) for the stream; None = the connection's `flow`."""
    reupgrade: bool = False
    """After each reconnect, redo the upgrade (same path, headers, subprotocols and
    extensions) on the same stream: the owner gets `GunDown`, `GunUp`, then a fresh
    `GunUpgrade` for the same `StreamRef`. A refusal (a 4xx or 5xx) ends the stream with a
    `GunError` carrying `UpgradeFailed`, and is not retried. A close the owner sends ends
    the stream for good: it is not upgraded again."""
    connection: Options | None = None
    """Connection options for `connect` / `with_socket`."""
    timeout: int | None = 5000
    """Socket API: bound on connect + upgrade and on each receive, ms; None = forever."""

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, Protocol):
            raise InvalidOptions(f"protocol must be a Protocol, got {self.protocol!r}")
        _set(self, "headers", _upgrade_headers(self.headers))
        _set(self, "subprotocols", _subprotocols(self.subprotocols))
        for name in ("compress", "silence_pings", "reupgrade"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidOptions(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("keepalive", "pong_timeout", "closing_timeout", "timeout"):
            _set(self, name, milliseconds(name, getattr(self, name), optional=True))
        size = self.max_message_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidOptions(f"max_message_size must be a positive int, got {size!r}")
        _count("flow", self.flow, optional=True)
        if self.connection is not None and not isinstance(self.connection, Options):
            raise InvalidOptions("connection must come from connection.options()")


def check_names(fields: Mapping[str, Any], valid: frozenset[str]) -> None:
    """Refuse option names that are not in `valid`, listing the valid ones."""
    unknown = set(fields) - valid
    if unknown:
        raise InvalidOptions(
            f"unknown option(s) {sorted(unknown)}; valid options are {sorted(valid)}"
        )


_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(Options))
_WS_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(WsOptions))


def make_options(base: Options | None = None, **fields: Any) -> Options:
    """`Options` from `fields` (Gun-style names, ms durations), over `base` if given."""
    check_names(fields, _OPTION_NAMES)
    return dataclasses.replace(base or Options(), **fields)


def make_ws_options(**fields: Any) -> WsOptions:
    """`WsOptions` from `fields`."""
    check_names(fields, _WS_OPTION_NAMES)
    return WsOptions(**fields)


def _set(options: object, name: str, value: object) -> None:
    object.__setattr__(options, name, value)


def milliseconds(name: str, value: object, *, optional: bool) -> int | None:
    """An option's duration as int ms (None for Infinity when `optional`), validated."""
    if value is None or value is Infinity:
        if optional:
            return None
        raise InvalidOptions(f"option {name} needs a finite number of milliseconds")
    if isinstance(value, Milliseconds):
        return value.value
    try:
        return timeout_ms(value)
    except InvalidTimeout as error:
        raise InvalidOptions(f"option {name}: {error}") from None


def _count(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        what = "a non-negative int or None" if optional else "a non-negative int"
        raise InvalidOptions(f"option {name} must be {what}, got {value!r}")


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


def _upgrade_headers(value: object) -> Headers:
    try:
        headers = check_headers(value)
        check_extra_headers(headers)
    except GluegunError as error:
        raise InvalidOptions(f"option headers: {error}") from None
    return SafeHeaders(headers)


def _header_names(value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise InvalidOptions(f"sensitive_headers must be a list of header names, got {value!r}")
    for name in value:
        if not isinstance(name, str) or not TOKEN_TEXT.fullmatch(name):
            raise InvalidOptions(f"sensitive_headers: {name!r} is not a header name")
    return frozenset(name.lower() for name in value)


def _subprotocols(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidOptions(f"subprotocols must be a list of str, got {value!r}")
    for protocol in value:
        if not isinstance(protocol, str) or not TOKEN_TEXT.fullmatch(protocol):
            raise InvalidOptions(f"subprotocol {protocol!r} is not an HTTP token")
    if len(set(value)) != len(value):
        raise InvalidOptions(f"subprotocols are offered more than once: {tuple(value)!r}")
    return tuple(value)


def _check_owner(owner: object) -> None:
    import pykka

    from gluegun_actors.mailbox import Mailbox

    if not isinstance(owner, Mailbox | pykka.ActorRef):
        raise InvalidOptions(
            f"owner must be a gluegun_actors.mailbox.Mailbox or a pykka.ActorRef, got {owner!r}"
        )

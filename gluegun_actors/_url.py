"""URLs as entry points: `ws://`, `wss://`, `http://`, `https://`, checked once.

The scheme chooses the transport (`wss`/`https` are TLS with verification on) and the
default port (80/443); the path and query become the request target. Credentials never
travel in a URL here: userinfo is refused with a pointer to the `headers=` path, so a
password cannot end up in a `repr`, a log line or a `GunDown`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, replace
from typing import Literal

from gluegun_actors._checks import check_address
from gluegun_actors._options import Options
from gluegun_actors._protocol.http1_request import host_header_value
from gluegun_actors._redact import shown_url
from gluegun_actors.errors import InvalidArgument, InvalidOptions

__all__ = ["Url", "parse_url", "url_options", "url_or_address"]

_DEFAULT_PORTS = {"ws": 80, "wss": 443, "http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Url:
    """A checked URL: where to connect, how, and the request target."""

    scheme: Literal["ws", "wss", "http", "https"]
    host: str
    port: int
    target: str
    """The path and query, `/` when the URL has none."""

    @property
    def tls(self) -> bool:
        return self.scheme in ("wss", "https")

    @property
    def websocket(self) -> bool:
        return self.scheme in ("ws", "wss")

    @property
    def transport(self) -> Literal["tcp", "tls"]:
        return "tls" if self.tls else "tcp"

    def __str__(self) -> str:
        authority = host_header_value(self.host, self.port, _DEFAULT_PORTS[self.scheme])
        return f"{self.scheme}://{authority}{self.target}"


def parse_url(url: object) -> Url:
    """Check `url` and split it; `InvalidArgument` says what is wrong and what to do."""
    if not isinstance(url, str):
        raise InvalidArgument(f"url must be a str, got {type(url).__name__}: {url!r}")
    text = url.strip()
    if not text:
        raise InvalidArgument("url is empty; expected ws://, wss://, http:// or https://")
    if "://" not in text:
        raise InvalidArgument(
            f"url {shown_url(text)} has no scheme; write it as ws://host/path, wss://host/path, "
            "http://host/path or https://host/path"
        )
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError as error:
        raise InvalidArgument(f"url {shown_url(text)} is malformed: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidArgument(
            f"url scheme {parts.scheme!r} is not supported; use ws, wss, http or https"
        )
    if "@" in parts.netloc:
        raise InvalidArgument(
            f"url {shown_url(text)} carries credentials (user:password@); they are refused so that "
            "they never reach a log or a repr: send them in a header instead, e.g. "
            "headers=[('authorization', 'Basic ...')]"
        )
    host = parts.hostname
    if not host:
        raise InvalidArgument(f"url {shown_url(text)} has no host")
    try:
        port = parts.port
    except ValueError:
        raise InvalidArgument(f"url {shown_url(text)} has an invalid port (1..65535)") from None
    if port == 0:
        raise InvalidArgument(f"url {shown_url(text)} has an invalid port (1..65535)")
    if parts.fragment and scheme in ("ws", "wss"):
        raise InvalidArgument(
            f"url {shown_url(text)} has a fragment (#...); WebSocket URLs cannot carry one"
        )
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return Url(scheme, _ascii_host(host, text), port or _DEFAULT_PORTS[scheme], target)  # type: ignore[arg-type]


def url_options(url: Url, options: Options | None) -> Options:
    """`options` with the transport the URL's scheme says; a contradiction is refused."""
    if options is None:
        options = Options()
    elif not isinstance(options, Options):
        raise InvalidOptions(f"options must come from connection.options(), got {options!r}")
    if options.transport is not None and options.transport != url.transport:
        raise InvalidOptions(
            f"the url's scheme {url.scheme!r} means transport {url.transport!r}, but the "
            f"options say {options.transport!r}: leave transport unset with a url"
        )
    return replace(options, transport=url.transport)


def url_or_address(
    url: str | None, host: str | None, port: int | None, path: str | None, options: Options
) -> tuple[str, int, str | None, Options]:
    """A fleet key's address, given by `url` or by `host`, `port` (and `path`), checked:
    where to connect, the WebSocket path (None for an HTTP key), and `options` with the
    transport a URL's scheme says."""
    if url is None:
        host, port = check_address(host, port)
        return host, port, path, options
    if host is not None or port is not None or path is not None:
        raise InvalidArgument("give a url, or a host and port (and a path), not both")
    parsed = parse_url(url)
    path = parsed.target if parsed.websocket else None
    return parsed.host, parsed.port, path, url_options(parsed, options)


def _ascii_host(host: str, url: str) -> str:
    """The host as the wire carries it: internationalized names in their IDNA form."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidArgument(f"url {shown_url(url)} has a host that is not a valid name") from None

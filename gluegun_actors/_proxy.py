"""Proxies: the `proxy` option checked into a `Proxy`, the environment read on request,
and the route a connect attempt takes.

A connection through a proxy dials the proxy (its name is resolved here, the server's by
the proxy) and asks it for a tunnel to the server: HTTP CONNECT (`http://`) or SOCKS5
(`socks5://`, also written `socks5h://`). TLS, when the connection uses it, runs inside
the tunnel with the server, so SNI and certificate checks name the server, not the proxy.

Credentials in the proxy URL are kept in the `Proxy` but never shown: its `str` and
`repr` write `***@`, and error messages name the proxy by `host:port` alone.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from gluegun_actors._io.addresses import host_port
from gluegun_actors._protocol.proxy_connect import HttpConnectClient
from gluegun_actors._protocol.socks5 import Socks5Client
from gluegun_actors._protocol.tunnel import TunnelClient
from gluegun_actors._redact import shown_url
from gluegun_actors.errors import InvalidOptions

if TYPE_CHECKING:
    from gluegun_actors._options import Options

__all__ = ["Proxy", "Tunnel", "parse_proxy", "proxy_for", "proxy_from_environment", "route"]

_SCHEMES: Final[dict[str, Literal["http", "socks5"]]] = {
    "http": "http",
    "socks5": "socks5",
    "socks5h": "socks5",
}
_ENVIRONMENT_KEYS: Final = {"tls": ("https", "all"), "tcp": ("http", "all")}


@dataclass(frozen=True, slots=True, repr=False)
class Proxy:
    """A checked proxy: its kind, address and credentials. Build it with `parse_proxy`."""

    scheme: Literal["http", "socks5"]
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def address(self) -> str:
        """`host:port`, an IPv6 literal in brackets: how messages name the proxy."""
        return host_port(self.host, self.port)

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.username is None:
            return None
        return self.username, self.password or ""

    def client(self, host: str, port: int) -> TunnelClient:
        """A fresh handshake asking this proxy for a tunnel to `host:port`."""
        if self.scheme == "http":
            return HttpConnectClient(host, port, proxy=self.address, credentials=self.credentials)
        return Socks5Client(host, port, proxy=self.address, credentials=self.credentials)

    def __str__(self) -> str:
        userinfo = "***@" if self.username is not None else ""
        return f"{self.scheme}://{userinfo}{self.address}"

    def __repr__(self) -> str:
        return f"Proxy('{self}')"


@dataclass(frozen=True, slots=True)
class Tunnel:
    """What one connect attempt asks of the proxy: a tunnel to the server `host:port`."""

    proxy: Proxy
    host: str
    port: int

    def client(self) -> TunnelClient:
        return self.proxy.client(self.host, self.port)

    @property
    def target(self) -> str:
        """`host:port` of the server, for messages."""
        return host_port(self.host, self.port)


def parse_proxy(value: object, *, source: str = "option proxy") -> Proxy:
    """`value` (a `Proxy` or a URL) as a `Proxy`; `InvalidOptions` says what is wrong.

    URLs are `http://[user:password@]host:port` and `socks5://[user:password@]host:port`
    (`socks5h://` is the same: the proxy always resolves the server's name); the port is
    required, user and password are percent-decoded. Messages never quote the credentials.
    """
    if isinstance(value, Proxy):
        return value
    if not isinstance(value, str):
        raise InvalidOptions(
            f"{source} must be a URL such as 'http://host:port' or 'socks5://host:port', "
            f"got {type(value).__name__}"
        )
    text = value.strip()
    shown = shown_url(text)
    if "://" not in text:
        raise InvalidOptions(
            f"{source} {shown} has no scheme: write http://host:port (HTTP CONNECT) or "
            "socks5://host:port"
        )
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidOptions(f"{source} {shown} is malformed (is the port 1..65535?)") from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise InvalidOptions(
            f"{source} {shown}: proxy scheme {parts.scheme!r} is not supported; use http:// "
            "(HTTP CONNECT) or socks5:// (TLS to the proxy itself is not supported)"
        )
    host = parts.hostname
    if not host:
        raise InvalidOptions(f"{source} {shown} has no host")
    if not port:
        raise InvalidOptions(f"{source} {shown} has no port: write {scheme}://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidOptions(f"{source} {shown} must be scheme://host:port, without a path")
    username = None if parts.username is None else urllib.parse.unquote(parts.username)
    password = None if username is None else urllib.parse.unquote(parts.password or "")
    if username is not None and password is not None:
        _check_credentials(scheme, username, password, f"{source} {shown}")
    try:
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidOptions(f"{source} {shown} has a host that is not a valid name") from None
    return Proxy(scheme, ascii_host, port, username, password)


def _check_credentials(scheme: str, username: str, password: str, where: str) -> None:
    if scheme == "http" and ":" in username:
        raise InvalidOptions(f"{where}: a Basic username cannot contain ':'")
    if scheme == "socks5" and not 0 < len(username.encode()) <= 255:
        raise InvalidOptions(f"{where}: a SOCKS5 username takes 1 to 255 bytes")
    if scheme == "socks5" and len(password.encode()) > 255:
        raise InvalidOptions(f"{where}: a SOCKS5 password takes at most 255 bytes")


def proxy_from_environment(host: str, port: int, transport: Literal["tcp", "tls"]) -> Proxy | None:
    """The proxy the environment names for a connection to `host:port`, if any.

    TLS connections (https, wss) take `https_proxy`, TCP ones (http, ws) `http_proxy`,
    both falling back on `all_proxy` (lower case first, as `urllib.request.getproxies`
    reads them); None when `no_proxy` lists the host (`urllib.request`'s matching: exact
    names, domain suffixes, `*`). A value without a scheme is taken as `http://`.

    Raises:
        InvalidOptions: the variable in use holds a URL that is not a proxy URL.
    """
    proxies = urllib.request.getproxies_environment()
    key = next((key for key in _ENVIRONMENT_KEYS[transport] if proxies.get(key)), None)
    if key is None:
        return None
    if _bypassed(host, port, proxies):
        return None
    url = proxies[key].strip()
    if "://" not in url:
        url = f"http://{url}"
    return parse_proxy(url, source=f"the {key}_proxy environment variable")


def _bypassed(host: str, port: int, proxies: dict[str, str]) -> bool:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    # urllib splits a port off at the last ':', which an IPv6 literal would lose.
    name = host if literal is not None and literal.version == 6 else f"{host}:{port}"
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    return bool(bypass(name, proxies))


def proxy_for(options: Options, host: str, port: int) -> Proxy | None:
    """The proxy a connection to `host:port` goes through: the `proxy` option, else with
    `proxy_from_env` the environment's, else none.

    Raises:
        InvalidOptions: `proxy_from_env` is on and the environment's proxy URL is bad.
    """
    if options.proxy is not None:
        return options.proxy
    if not options.proxy_from_env:
        return None
    return proxy_from_environment(host, port, options.transport_for(port))


def route(proxy: Proxy | None, host: str, port: int) -> tuple[str, int, Tunnel | None]:
    """Where a connect attempt to `host:port` dials, and the tunnel it then asks for."""
    if proxy is None:
        return host, port, None
    return proxy.host, proxy.port, Tunnel(proxy, host, port)

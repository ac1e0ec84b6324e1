"""SOCKS5 (RFC 1928) CONNECT with username/password authentication (RFC 1929), sans-IO.

Theory of operation: the client writes its greeting at once (the methods it offers:
"no authentication", plus "username/password" when it has credentials) and then moves
through `State` on each reply, which it frames itself, since a read may hold part of a
reply or more than one::

    CHOOSING --0x00--------------------------------> CONNECTING --reply 0--> OPEN
        |    --0x02--> AUTHENTICATING --status 0--/       |
        +-- 0xFF / bad reply --+-- status != 0 --+--------+-- reply != 0 --> FAILED

The request names the server by its name (ATYP 3), so the name is resolved by the proxy
(as curl's socks5h); IPv4 and IPv6 literals go as addresses (ATYP 1 and 4). A reply
code other than 0 is raised as `ProxyError` with its meaning; refused or missing
credentials as `ProxyAuthenticationError`. What follows the final reply is
`TunnelOpened.trailing_data`.

Why our own: python-socks drives blocking or asyncio sockets, so it would need a thread or
an event loop per connection beside the reactor; socksio is sans-IO but expects each reply
whole in one call (a non-blocking read may split it) and is not maintained. A SOCKS5
client is a few framing rules, tested here like the other protocol cores.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Final

from gluegun_actors._protocol.http1_request import host_header_value
from gluegun_actors._protocol.tunnel import TunnelOpened, proxy_error
from gluegun_actors.errors import LocalProtocolError, ProxyError

__all__ = ["REPLIES", "Socks5Client", "State", "connect_request"]

VERSION: Final = 5
AUTH_VERSION: Final = 1
NO_AUTHENTICATION: Final = 0x00
USERNAME_PASSWORD: Final = 0x02
NO_ACCEPTABLE_METHODS: Final = 0xFF
CONNECT: Final = 0x01
IPV4: Final = 0x01
DOMAIN_NAME: Final = 0x03
IPV6: Final = 0x04
SUCCEEDED: Final = 0x00

REPLIES: Final = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}
"""RFC 1928 section 6: what each reply code other than 0 means."""

_ADDRESS_SIZES: Final = {IPV4: 4, IPV6: 16}


class State(enum.Enum):
    """What the client waits for."""

    CHOOSING = "choosing"  # the method selection
    AUTHENTICATING = "authenticating"  # the username/password status
    CONNECTING = "connecting"  # the reply to CONNECT
    OPEN = "open"
    FAILED = "failed"


def connect_request(host: str, port: int) -> bytes:
    """The CONNECT request for `host:port`: a name as ATYP 3, an IP literal as ATYP 1 or 4.

    Raises:
        LocalProtocolError: a name SOCKS5 cannot carry (over 255 bytes, not IDNA).
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        address = bytes((IPV4 if ip.version == 4 else IPV6,)) + ip.packed
    else:
        try:
            name = host.encode("idna")
        except UnicodeError:
            raise LocalProtocolError(f"host {host!r} is not a valid name for SOCKS5") from None
        if not 0 < len(name) <= 255:
            raise LocalProtocolError(f"host {host!r} is longer than SOCKS5's 255 bytes")
        address = bytes((DOMAIN_NAME, len(name))) + name
    return bytes((VERSION, CONNECT, 0)) + address + port.to_bytes(2, "big")


def _length_prefixed(text: str) -> bytes:
    data = text.encode()
    if len(data) > 255:
        raise LocalProtocolError("SOCKS5 credentials are at most 255 bytes each")
    return bytes((len(data),)) + data


class Socks5Client:
    """Asks a SOCKS5 proxy for a tunnel to `host:port`; see the module docstring.

    `proxy` is the proxy's `host:port`, for error messages; `credentials` a
    `(username, password)` pair or None.

    Raises:
        LocalProtocolError: a host or credentials SOCKS5 cannot carry.
    """

    __slots__ = ("_buffer", "_credentials", "_out", "_proxy", "_request", "_state", "_target")

    def __init__(
        self,
        host: str,
        port: int,
        *,
        proxy: str,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self._target = host_header_value(host, port, default_port=0)
        self._proxy = proxy
        self._request = connect_request(host, port)
        self._credentials: bytes | None = None
        if credentials is not None:
            username, password = credentials
            self._credentials = (
                bytes((AUTH_VERSION,)) + _length_prefixed(username) + _length_prefixed(password)
            )
        methods = (
            (NO_AUTHENTICATION,) if credentials is None else (NO_AUTHENTICATION, USERNAME_PASSWORD)
        )
        self._out = bytes((VERSION, len(methods), *methods))
        self._buffer = bytearray()
        self._state = State.CHOOSING

    @property
    def state(self) -> State:
        return self._state

    def data_to_send(self) -> bytes:
        """What is due: the greeting, the credentials or the request, as the replies ask."""
        out, self._out = self._out, b""
        return out

    def receive_data(self, data: bytes) -> TunnelOpened | None:
        """Take the proxy's bytes (b"": it closed); `TunnelOpened` after the final reply.

        Raises:
            ProxyAuthenticationError: the proxy refused the credentials, or wants some
                that were not given.
            ProxyError: a reply code other than 0, a reply that is not SOCKS5, or an end
                of stream before the tunnel opened.
        """
        if self._state is State.OPEN:
            raise RuntimeError("the tunnel is open: its bytes are not the handshake's")
        if self._state is State.FAILED:
            raise self._error("the SOCKS5 handshake has already failed")
        if not data:
            raise self._fail(self._closed())
        self._buffer += data
        try:
            return self._step()
        except ProxyError:
            self._state = State.FAILED
            raise

    def _step(self) -> TunnelOpened | None:
        buffer = self._buffer
        while True:
            match self._state:
                case State.CHOOSING:
                    if len(buffer) < 2:
                        return None
                    self._check_version(buffer[0], VERSION)
                    method = buffer[1]
                    del buffer[:2]
                    self._chosen(method)
                case State.AUTHENTICATING:
                    if len(buffer) < 2:
                        return None
                    status = buffer[1]  # buffer[0] is the subnegotiation's version (1)
                    del buffer[:2]
                    if status != 0:
                        raise self._error(
                            "the proxy refused the tunnel: SOCKS5 authentication failed "
                            f"(status {status}; check the proxy credentials)",
                            credentials=True,
                        )
                    self._send_request()
                case State.CONNECTING:
                    if len(buffer) < 2:
                        return None
                    self._check_version(buffer[0], VERSION)
                    if buffer[1] != SUCCEEDED:
                        code = buffer[1]
                        meaning = REPLIES.get(code, "unassigned reply code")
                        raise self._error(
                            f"the proxy refused the tunnel: SOCKS5 reply {code}, {meaning}",
                            reply=code,
                        )
                    size = self._reply_size()
                    if size is None or len(buffer) < size:
                        return None
                    trailing = bytes(buffer[size:])
                    buffer.clear()
                    self._state = State.OPEN
                    return TunnelOpened(trailing)
                case State.OPEN | State.FAILED:  # pragma: no cover - receive_data returns first
                    return None

    def _chosen(self, method: int) -> None:
        if method == NO_AUTHENTICATION:
            self._send_request()
        elif method == USERNAME_PASSWORD and self._credentials is not None:
            self._out += self._credentials
            self._state = State.AUTHENTICATING
        elif method == NO_ACCEPTABLE_METHODS and self._credentials is None:
            raise self._error(
                "the proxy refused the tunnel: the SOCKS5 proxy wants credentials (give them "
                "as proxy='socks5://user:password@host:port')",
                credentials=True,
            )
        elif method == NO_ACCEPTABLE_METHODS:
            raise self._error(
                "the proxy refused the tunnel: the SOCKS5 proxy accepts neither "
                "username/password nor no authentication",
                credentials=True,
            )
        else:
            raise self._error(f"the SOCKS5 proxy chose method {method:#04x}, which was not offered")

    def _send_request(self) -> None:
        self._out += self._request
        self._state = State.CONNECTING

    def _reply_size(self) -> int | None:
        """The whole reply's size, once its address type (and a name's length) is in."""
        buffer = self._buffer
        if len(buffer) < 5:
            return None
        kind = buffer[3]
        if kind == DOMAIN_NAME:
            return 4 + 1 + buffer[4] + 2
        if kind in _ADDRESS_SIZES:
            return 4 + _ADDRESS_SIZES[kind] + 2
        raise self._error(f"the SOCKS5 proxy replied with an unknown address type {kind}")

    def _check_version(self, version: int, expected: int) -> None:
        if version != expected:
            hint = " (an HTTP proxy? use proxy='http://host:port')" if version == ord("H") else ""
            raise self._error(
                f"the proxy did not answer as a SOCKS5 proxy (version byte {version:#04x}){hint}"
            )

    def _closed(self) -> ProxyError:
        if self._state is State.AUTHENTICATING:
            # RFC 1929 servers close after a failure status; some close without sending it.
            return self._error(
                "the proxy refused the tunnel: the SOCKS5 proxy closed the connection after "
                "the credentials were sent (check the proxy credentials)",
                credentials=True,
            )
        waiting = {
            State.CHOOSING: "the method selection",
            State.CONNECTING: "the reply to CONNECT",
        }[self._state]
        return self._error(f"the SOCKS5 proxy closed the connection before {waiting}")

    def _fail(self, error: ProxyError) -> ProxyError:
        self._state = State.FAILED
        return error

    def _error(
        self, text: str, *, reply: int | None = None, credentials: bool = False
    ) -> ProxyError:
        return proxy_error(
            text, proxy=self._proxy, target=self._target, reply=reply, credentials=credentials
        )

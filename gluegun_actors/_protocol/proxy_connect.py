"""HTTP CONNECT (RFC 9110 section 9.3.6) as a sans-IO client: one tunnel through an HTTP proxy.

Theory of operation: h11 writes the request (``CONNECT host:port HTTP/1.1``, ``Host``, and
``Proxy-Authorization: Basic ...`` when credentials are given) and parses the proxy's reply
head. h11 knows CONNECT: a 2xx switches the connection to the tunnel (its
SWITCHED_PROTOCOL state), and what followed the head is h11's trailing data, which
`TunnelOpened` hands on. Any other final status is the proxy's refusal, raised as
`ProxyError`, or `ProxyAuthenticationError` for a 407; the refusal's body is not read, since
the attempt ends there. 1xx answers are skipped.

The reply head is bounded (`max_head_size`), as every head this library reads.
"""

from __future__ import annotations

import base64
import http
from typing import Final

import h11

from gluegun_actors._protocol.http1_request import host_header_value
from gluegun_actors._protocol.tunnel import TunnelOpened, proxy_error
from gluegun_actors.errors import ProxyError

__all__ = ["DEFAULT_MAX_HEAD_SIZE", "HttpConnectClient", "basic_credentials"]

DEFAULT_MAX_HEAD_SIZE: Final = 16 * 1024
"""Largest reply head accepted from a proxy, bytes; larger is a `ProxyError`."""

_SHOWN_BYTES: Final = 24
"""How much of a reply that is not HTTP an error message quotes."""


def basic_credentials(username: str, password: str) -> str:
    """The `Proxy-Authorization` value for `username` and `password` (RFC 7617, UTF-8)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class HttpConnectClient:
    """Asks an HTTP proxy for a tunnel to `host:port`; see the module docstring.

    `proxy` is the proxy's `host:port`, for error messages; `credentials` a
    `(username, password)` pair or None.
    """

    __slots__ = ("_credentials", "_first", "_opened", "_out", "_parser", "_proxy", "_target")

    def __init__(
        self,
        host: str,
        port: int,
        *,
        proxy: str,
        credentials: tuple[str, str] | None = None,
        max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
    ) -> None:
        self._target = host_header_value(host, port, default_port=0)  # always with the port
        self._proxy = proxy
        self._credentials = credentials is not None
        # In the usual case: some proxies look these names up case-sensitively.
        headers = [("Host", self._target)]
        if credentials is not None:
            headers.append(("Proxy-Authorization", basic_credentials(*credentials)))
        self._parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_size)
        request = h11.Request(method="CONNECT", target=self._target, headers=headers)
        self._out = self._parser.send(request) + (self._parser.send(h11.EndOfMessage()) or b"")
        self._first = b""  # the reply's first bytes, quoted if it is not HTTP
        self._opened = False

    def data_to_send(self) -> bytes:
        """The CONNECT request the first time, then nothing."""
        out, self._out = self._out, b""
        return out

    def receive_data(self, data: bytes) -> TunnelOpened | None:
        """Take the proxy's bytes (b"": it closed); `TunnelOpened` after a 2xx head.

        Raises:
            ProxyAuthenticationError: the proxy answered 407.
            ProxyError: any other refusal, a reply that is not HTTP, a head larger than
                `max_head_size`, or an end of stream before the reply's head was whole.
        """
        if self._opened:
            raise RuntimeError("the tunnel is open: its bytes are not the handshake's")
        if len(self._first) < _SHOWN_BYTES:
            self._first += data[: _SHOWN_BYTES - len(self._first)]
        self._parser.receive_data(data)
        while True:
            try:
                event = self._parser.next_event()
            except h11.RemoteProtocolError as error:
                too_large = "too long" in str(error)
                raise self._not_http(ended=not data, too_large=too_large) from None
            match event:
                case h11.InformationalResponse():
                    continue
                case h11.Response(status_code=status) if 200 <= status < 300:
                    self._opened = True
                    return TunnelOpened(self._parser.trailing_data[0])
                case h11.Response(status_code=status, reason=reason):
                    raise self._refused(status, reason)
                case h11.ConnectionClosed():
                    raise self._not_http(ended=True)
                case _:
                    return None  # NEED_DATA

    def _refused(self, status: int, reason: bytes) -> ProxyError:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = reason.decode("ascii", "replace") or "(no reason given)"
        text = f"the proxy refused the tunnel: {status} {phrase}"
        if status == http.HTTPStatus.PROXY_AUTHENTICATION_REQUIRED:
            text += (
                " (check the proxy credentials)"
                if self._credentials
                else " (the proxy wants credentials: give them as "
                "proxy='http://user:password@host:port')"
            )
        return proxy_error(
            text,
            proxy=self._proxy,
            target=self._target,
            reply=status,
            credentials=status == http.HTTPStatus.PROXY_AUTHENTICATION_REQUIRED,
        )

    def _not_http(self, *, ended: bool, too_large: bool = False) -> ProxyError:
        if too_large:
            text = "the proxy's reply head is larger than max_head_size"
        elif ended and not self._first:
            text = "the proxy closed the connection without answering the CONNECT request"
        elif ended:
            text = f"the proxy closed the connection in the middle of its reply {self._first!r}"
        else:
            text = f"the proxy did not answer as an HTTP proxy (its reply begins {self._first!r})"
        return proxy_error(text, proxy=self._proxy, target=self._target)

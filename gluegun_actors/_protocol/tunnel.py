"""What a proxy handshake looks like to the code that moves its bytes.

Both handshakes (`proxy_connect.HttpConnectClient`, `socks5.Socks5Client`) are sans-IO
clients with wsproto's contract: `data_to_send()` for the bytes to write,
`receive_data(bytes)` for what the proxy sent (`b""` for its end of stream). The last
call gives `TunnelOpened`; a refusal, or a reply that is not the protocol, raises
`ProxyError` (`ProxyAuthenticationError` for refused or missing credentials).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gluegun_actors.errors import ProxyAuthenticationError, ProxyError

__all__ = ["TunnelClient", "TunnelOpened", "proxy_error"]


@dataclass(frozen=True, slots=True)
class TunnelOpened:
    """The proxy opened the tunnel: from here on, bytes go to and come from the server."""

    trailing_data: bytes = b""
    """Bytes the proxy sent after its reply: the first bytes of the tunnel."""


class TunnelClient(Protocol):
    """One handshake with a proxy, for one connect attempt."""

    def data_to_send(self) -> bytes:
        """The bytes to write to the proxy now (b"" when nothing is due)."""
        ...

    def receive_data(self, data: bytes) -> TunnelOpened | None:
        """Take what the proxy sent (b"": it closed); `TunnelOpened` once the tunnel is open.

        Raises:
            ProxyError: the proxy refused the tunnel, closed, or broke the protocol.
        """
        ...


def proxy_error(
    text: str, *, proxy: str, target: str, reply: int | None = None, credentials: bool = False
) -> ProxyError:
    """A `ProxyError` (`ProxyAuthenticationError` when `credentials` are at fault) whose
    message names the proxy and the tunnel's target, never the credentials."""
    kind = ProxyAuthenticationError if credentials else ProxyError
    return kind(f"{text}; proxy {proxy}, tunnel to {target}", proxy=proxy, reply=reply)

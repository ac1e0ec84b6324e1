"""The TUNNELING phase of a transport: the proxy handshake, between the TCP connect to the
proxy and the TLS handshake with the server (`connecting` runs the phases around it).

Runs on the reactor thread under the transport's lock, non-blocking, bounded by the
connect timeout. The handshake itself is a sans-IO client (`Tunnel.client()`: HTTP CONNECT
or SOCKS5); this module writes what it has to send, reads what the proxy answers and
feeds it in, until the client says the tunnel is open. Then the transport goes on as if
the TCP connect to the server had just ended.

Bytes the proxy sends after its reply, before the client has sent anything through the
tunnel, fail the attempt: HTTP/1.1 and TLS clients speak first, so such bytes cannot come
from the server, and leaving them out of the stream would corrupt it.

`failure` names the proxy in what a proxied connect attempt fails with: "cannot reach the
proxy 127.0.0.1:3128: connection refused".
"""

from __future__ import annotations

import selectors
from typing import TYPE_CHECKING, Final

from gluegun_actors._io.state import Phase
from gluegun_actors._protocol.tunnel import TunnelClient, proxy_error
from gluegun_actors.errors import ProxyError

if TYPE_CHECKING:
    from gluegun_actors._io.transport import Transport

__all__ = ["Handshake", "failure", "interest", "on_ready", "start"]

_READ: Final = selectors.EVENT_READ
_WRITE: Final = selectors.EVENT_WRITE
_READ_SIZE: Final = 4096
"""Bytes asked of one read from the proxy: its replies are a few dozen bytes."""


class Handshake:
    """One attempt's handshake with the proxy: the client and what it has yet to send."""

    __slots__ = ("client", "unsent")

    def __init__(self, client: TunnelClient) -> None:
        self.client = client
        self.unsent = b""


def start(transport: Transport) -> None:
    """The TCP connect to the proxy is done: send the handshake's first bytes."""
    tunnel = transport._tunnel
    assert tunnel is not None
    try:
        handshake = Handshake(tunnel.client())
    except Exception as error:  # a host or credentials the protocol cannot carry
        transport._fail(error)
        return
    transport._handshake = handshake
    handshake.unsent = handshake.client.data_to_send()
    if _send(transport, handshake):
        transport._apply_interest(lazy=True)


def on_ready(transport: Transport, mask: int) -> bool:
    """The socket is ready for `mask`: go on with the handshake; True once it is open."""
    handshake = transport._handshake
    sock = transport._sock
    assert handshake is not None and sock is not None
    if mask & _WRITE and handshake.unsent and not _send(transport, handshake):
        return False
    if mask & _READ:
        try:
            data = sock.recv(_READ_SIZE)
        except BlockingIOError:
            data = None
        except OSError as error:
            transport._fail(error)
            return False
        if data is not None:
            try:
                opened = handshake.client.receive_data(data)
            except Exception as error:
                transport._fail(error)
                return False
            handshake.unsent += handshake.client.data_to_send()
            if opened is not None:
                if opened.trailing_data:
                    transport._fail(_early_bytes(transport, len(opened.trailing_data)))
                    return False
                transport._handshake = None
                return True
            if handshake.unsent and not _send(transport, handshake):
                return False
    transport._apply_interest(lazy=True)
    return False


def interest(transport: Transport) -> int:
    """The selector events the handshake waits for: the proxy's reply, and room to write."""
    handshake = transport._handshake
    return _READ | (_WRITE if handshake is not None and handshake.unsent else 0)


def _send(transport: Transport, handshake: Handshake) -> bool:
    """Send what the kernel takes of the handshake's bytes; False if the attempt failed."""
    sock = transport._sock
    assert sock is not None
    try:
        sent = sock.send(handshake.unsent)
    except BlockingIOError:
        return True
    except OSError as error:
        transport._fail(error)
        return False
    handshake.unsent = handshake.unsent[sent:]
    return True


def _early_bytes(transport: Transport, count: int) -> ProxyError:
    tunnel = transport._tunnel
    assert tunnel is not None
    return proxy_error(
        f"the proxy sent {count} bytes after opening the tunnel, before the client spoke",
        proxy=tunnel.proxy.address,
        target=tunnel.target,
    )


def failure(transport: Transport, error: BaseException) -> BaseException:
    """What a proxied attempt that failed with `error` reports: a `ProxyError` naming the
    proxy for a failure to reach it or to get the tunnel, `error` itself past the tunnel
    (a TLS failure is the server's). The original error is the `__cause__`."""
    tunnel = transport._tunnel
    if tunnel is None or isinstance(error, ProxyError):
        return error
    proxy = tunnel.proxy.address
    match transport._phase:
        case Phase.RESOLVING | Phase.CONNECTING:
            text = f"cannot reach the proxy {proxy}: {_reason(error)}"
        case Phase.TUNNELING:
            text = f"the proxy {proxy} did not open the tunnel to {tunnel.target}: {_reason(error)}"
        case _:
            return error
    wrapped = ProxyError(text, proxy=proxy)
    wrapped.__cause__ = error
    return wrapped


def _reason(error: BaseException) -> str:
    """`error` as the end of a sentence: "connection refused", not "[Errno 111] ..."."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
        return text[:1].lower() + text[1:]
    return str(error) or type(error).__name__

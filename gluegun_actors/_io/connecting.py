"""How a `Transport` connects: resolve, connect to each address in turn, TLS handshake.

These run on the reactor thread (resolution on a resolver thread), under the
transport's lock, in the phases RESOLVING, CONNECTING, TUNNELING (through a proxy:
`tunneling`) and HANDSHAKING, and end in
`on_open` (`Connected`) or the transport's `_fail` (`ConnectFailed`). Connects are
non-blocking. Each phase has its own bound (`ConnectTimeouts`, as Gun's
`domain_lookup_timeout`, `connect_timeout` and `tls_handshake_timeout`), started when
the phase begins; `on_deadline` reports which one ran out (and also ends a
`close_after_flush` that took too long).
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import ssl
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

from gluegun_actors._io import tunneling
from gluegun_actors._io.addresses import AddrInfo, host_port, resolve
from gluegun_actors._io.events import Connected
from gluegun_actors._io.state import CONNECTING_PHASES, Phase, Reading, delivers_after

if TYPE_CHECKING:
    from gluegun_actors._io.transport import Transport

log = logging.getLogger("gluegun_actors.reactor")

__all__ = [
    "ConnectTimeouts",
    "begin",
    "finish_connect",
    "on_deadline",
    "resolve_host",
    "start_deadline",
    "tls_handshake",
]

_READ: Final = selectors.EVENT_READ
_WRITE: Final = selectors.EVENT_WRITE
_CONNECT_PENDING: Final = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY})


@dataclass(frozen=True, slots=True)
class ConnectTimeouts:
    """Seconds each phase of a connect may take (None: as long as the OS allows)."""

    lookup: float | None = None
    """Resolving the name (not used for an IP literal)."""
    connect: float | None = None
    """The TCP connect, over every address the name resolved to."""
    tls: float | None = None
    """The TLS handshake."""

    @classmethod
    def every(cls, seconds: float | None) -> ConnectTimeouts:
        """The same bound for each phase."""
        return cls(seconds, seconds, seconds)

    def of(self, phase: Phase) -> float | None:
        match phase:
            case Phase.RESOLVING:
                return self.lookup
            case Phase.CONNECTING | Phase.TUNNELING:  # the proxy's answer: part of the connect
                return self.connect
            case Phase.HANDSHAKING:
                return self.tls
        return None


_STEPS: Final = {
    Phase.RESOLVING: ("looking up {host}", "domain_lookup_timeout", ""),
    Phase.CONNECTING: ("connecting to {target}", "connect_timeout", ": nothing answered"),
    Phase.TUNNELING: ("waiting for the proxy's answer", "connect_timeout", ""),
    Phase.HANDSHAKING: (
        "the TLS handshake with {target}",
        "tls_handshake_timeout",
        ": does the server speak TLS on this port?",
    ),
}
"""Per phase: what timed out, the option that bounds it, and a hint."""


def start_deadline(transport: Transport, phase: Phase) -> None:
    """Bound `phase`, which is starting, by its timeout (replacing the last phase's)."""
    transport._cancel_deadline()
    seconds = transport._timeouts.of(phase)
    if seconds is not None:
        transport._deadline = transport._reactor._schedule_internal(
            seconds, partial(on_deadline, transport)
        )


def resolve_host(transport: Transport) -> None:
    """Resolver thread: look the host up and hand the addresses to the reactor."""
    if transport._phase is not Phase.RESOLVING:
        return
    try:
        addresses = resolve(transport.host, transport.port)
    except Exception as error:
        transport._reactor._post(partial(resolve_failed, transport, error))
        return
    transport._reactor._post(partial(begin, transport, addresses))


@delivers_after
def resolve_failed(transport: Transport, error: BaseException) -> None:
    if transport._phase is Phase.RESOLVING:
        transport._fail(error)


@delivers_after
def begin(transport: Transport, addresses: list[AddrInfo]) -> None:
    if transport._phase is not Phase.RESOLVING:
        return
    transport._addresses.extend(addresses)
    start_deadline(transport, Phase.CONNECTING)
    try_next_address(transport)


def try_next_address(transport: Transport) -> None:
    """Start a non-blocking connect to the next address; fail when none is left."""
    while transport._addresses:
        family, kind, proto, address = transport._addresses.popleft()
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as error:
            transport._last_error = error
            continue
        transport._sock = sock
        transport._fd = sock.fileno()
        transport._address = address
        transport._set_phase(Phase.CONNECTING)
        try:
            sock.setblocking(False)
            if transport._reactor._tcp_nodelay and family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(address)
        except Exception as error:  # a bad address raises TypeError/OverflowError too
            transport._drop_socket()
            transport._last_error = error
            continue
        if code == 0:
            tcp_connected(transport)
            return
        if code in _CONNECT_PENDING:
            transport._apply_interest(lazy=True)
            return
        transport._drop_socket()
        transport._last_error = OSError(code, os.strerror(code))
    transport._fail(
        transport._last_error or OSError(f"no address found for {transport.host}:{transport.port}")
    )


def finish_connect(transport: Transport) -> None:
    assert transport._sock is not None
    code = transport._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code == 0:
        tcp_connected(transport)
        return
    transport._drop_socket()
    transport._last_error = OSError(code, os.strerror(code))
    try_next_address(transport)


def tcp_connected(transport: Transport) -> None:
    if transport._tunnel is not None and transport._phase is Phase.CONNECTING:
        transport._set_phase(Phase.TUNNELING)  # connected to the proxy: tunnel first
        start_deadline(transport, Phase.TUNNELING)
        tunneling.start(transport)  # its end calls this again, TUNNELING
        return
    if transport._ssl_context is None:
        on_open(transport)
        return
    raw = transport._sock
    assert raw is not None
    # Wrapping moves the descriptor into a new object that closes it on failure:
    # take it out of the selector first.
    transport._unregister()
    try:
        transport._sock = transport._ssl_context.wrap_socket(
            raw,
            server_hostname=transport._server_hostname or transport.host,
            do_handshake_on_connect=False,
        )
    except Exception as error:
        raw.close()
        transport._sock = None
        transport._fd = -1
        transport._fail(error)
        return
    transport._set_phase(Phase.HANDSHAKING)
    start_deadline(transport, Phase.HANDSHAKING)
    tls_handshake(transport)


def tls_handshake(transport: Transport) -> None:
    sock = transport._sock
    assert isinstance(sock, ssl.SSLSocket)
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        transport._tls_want = _READ
        transport._apply_interest(lazy=True)
        return
    except ssl.SSLWantWriteError:
        transport._tls_want = _WRITE
        transport._apply_interest(lazy=True)
        return
    except Exception as error:
        transport._fail(error)
        return
    on_open(transport)


def on_open(transport: Transport) -> None:
    sock = transport._sock
    assert sock is not None
    transport._set_phase(Phase.OPEN)
    transport._cancel_deadline()
    transport._peername = transport._address
    transport._deliver(Connected(transport))
    if transport._out:
        error = transport._flush_out()
        if error is not None:
            transport._break(error)
            return
    if transport._reading is Reading.ARMED and transport._tls_pending():
        transport._request_sync()
    # The read interest goes in now, as if left from a read (dropped if the socket turns
    # readable before the first `resume_reading`, which then needs no selector call).
    transport._apply_interest(lazy=True, read_ahead=True)


@delivers_after
def on_deadline(transport: Transport) -> None:
    """Timer: the connect attempt or the flush took too long."""
    transport._deadline = None
    phase = transport._phase
    if phase in CONNECTING_PHASES:
        seconds = transport._timeouts.of(phase) or 0.0
        transport._fail(TimeoutError(_timed_out(transport, phase, seconds)))
    elif phase is Phase.FLUSHING:
        log.debug("%r: parked writes not sent in time; closing", transport)
        transport._finish(None)


def _timed_out(transport: Transport, phase: Phase, seconds: float) -> str:
    """E.g. "connecting to 10.0.0.1:80 timed out after 3000 ms (connect_timeout): ..."."""
    what, option, hint = _STEPS[phase]
    host = transport.host
    target = host_port(host, transport.port)
    if phase is Phase.HANDSHAKING and transport._tunnel is not None:  # TLS with the server
        target = f"{transport._tunnel.target} through the proxy"
    step = what.format(host=repr(host), target=target)
    return f"{step} timed out after {round(seconds * 1000)} ms ({option}){hint}"

"""The connection actor's session while it speaks HTTP/1.1: the HTTP/1.1 core's events
turned into owner messages, and caller commands turned into requests.

Like Gun's `gun_http.erl` beside `gun.erl`: this module knows HTTP, the actor knows the
connection's life. Its methods run in the actor's turn and act through the actor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gluegun_actors._connection.commands import Request, RequestData, StreamCommand, Upgrade
from gluegun_actors._connection.ws_session import WsSession
from gluegun_actors._options import WsOptions
from gluegun_actors._protocol import http1 as h1
from gluegun_actors._protocol.ws import WsConnection
from gluegun_actors._protocol.ws_handshake import Handshake, handshake_request, validate_handshake
from gluegun_actors._types import Headers, Protocol, StreamRef
from gluegun_actors.errors import BadStateError, GluegunError, UpgradeFailed
from gluegun_actors.events import GunData, GunInform, GunResponse, GunTrailers, GunUpgrade

if TYPE_CHECKING:
    from gluegun_actors._connection.actor import ConnectionActor

__all__ = ["HttpSession"]


class HttpSession:
    """Connected, speaking HTTP/1.1 through `core`."""

    protocol = Protocol.HTTP1
    __slots__ = ("core",)

    def __init__(self, core: h1.Http1Client) -> None:
        self.core = core

    def unfinished(self) -> tuple[StreamRef, ...]:
        return self.core.unfinished

    def data_to_send(self) -> bytes:
        return self.core.data_to_send()

    def command(self, actor: ConnectionActor, command: StreamCommand) -> None:
        """Start or feed a stream; a request HTTP/1.1 refuses fails that stream only.

        Once the core takes no new requests (the server or the caller asked to close), a
        new request waits for the next connection, as in Gun: it is never written to a
        connection that is about to close.
        """
        core, tracer = self.core, actor.tracer
        if not isinstance(command, RequestData) and not core.accepting:
            actor.defer(command)
            return
        try:
            match command:
                case Request(ref, method, target, headers, body, is_fin):
                    actor.streams.setdefault(ref, actor.new_stream(command))
                    tracer.emit("request_start", stream=ref, method=method, target=target)
                    core.request(ref, method, target, headers, body, is_fin=is_fin)
                    tracer.emit("request_headers", stream=ref, headers=headers)
                    if is_fin:
                        tracer.emit("request_end", stream=ref)
                case RequestData(ref, data, is_fin):
                    core.data(ref, data, is_fin)
                    if is_fin:
                        tracer.emit("request_end", stream=ref)
                case Upgrade(ref, target, headers, options):
                    handshake = _handshake(headers, options)
                    record = actor.streams.setdefault(ref, actor.new_stream(command))
                    record.handshake = handshake
                    tracer.emit("request_start", stream=ref, method="GET", target=target)
                    core.request(ref, "GET", target, handshake.headers, None)
                    tracer.emit("request_end", stream=ref)
        except GluegunError as error:
            failed = actor.streams.pop(command.stream, None) or actor.new_stream(command)
            actor.stream_error(failed, error)
            return
        actor.flush_out()

    def keepalive_interval(self, actor: ConnectionActor) -> int | None:
        return actor.options.http_keepalive

    def keepalive(self, actor: ConnectionActor) -> None:
        """Idle for the keepalive interval: an empty line, as Gun sends (see the option)."""
        if self.core.keepalive():
            actor.flush_out()

    def receive(self, actor: ConnectionActor, data: bytes) -> None:
        self.handle(actor, self.core.receive_data(data))

    def shutdown(self, actor: ConnectionActor) -> None:
        """Let the request in flight finish; the core fails the ones behind it."""
        self.handle(actor, self.core.shutdown())

    def handle(self, actor: ConnectionActor, events: list[h1.Event]) -> None:
        """Deliver what the core reported, in order; an upgrade or an end stops here."""
        conn, tracer = actor.conn, actor.tracer
        for event in events:
            match event:
                case h1.Response(stream=ref, is_fin=is_fin, status=status, headers=headers):
                    _response_start(actor, ref)
                    _refused_again(actor, ref, status, headers)
                    tracer.emit("response_headers", stream=ref, status=status, headers=headers)
                    _to_stream(actor, ref, GunResponse(conn, ref, is_fin, status, headers), is_fin)
                case h1.Data(stream=ref, is_fin=is_fin, data=data):
                    _to_stream(actor, ref, GunData(conn, ref, is_fin, data), is_fin, counts=True)
                case h1.Inform(stream=ref, status=status, headers=headers):
                    _response_start(actor, ref)
                    tracer.emit("response_inform", stream=ref, status=status, headers=headers)
                    inform = GunInform(conn, ref, status, headers)
                    _to_stream(actor, ref, inform, False, counts=True)
                case h1.Trailers(stream=ref, headers=headers):
                    tracer.emit("response_trailers", stream=ref, headers=headers)
                    _to_stream(actor, ref, GunTrailers(conn, ref, headers), True)
                case h1.StreamFailed(stream=ref, error=error):
                    stream = actor.streams.pop(ref, None)
                    if stream is not None:
                        actor.stream_error(stream, error)
                case h1.Upgraded(stream=ref, status=status, headers=headers, trailing_data=rest):
                    _upgraded(actor, ref, status, headers, rest)
                    return
                case h1.Closed(reason=reason, killed=killed, unsent=unsent):
                    actor.lost(reason, killed, unsent)
                    return
        actor.flush_out()


def _response_start(actor: ConnectionActor, ref: StreamRef) -> None:
    stream = actor.streams.get(ref)
    if stream is not None and not stream.responding:
        stream.responding = True
        actor.tracer.emit("response_start", stream=ref)


def _refused_again(actor: ConnectionActor, ref: StreamRef, status: int, headers: Headers) -> None:
    """A `reupgrade` refused after a reconnect: its stream ends with an error, not retried
    (its response is not delivered: nobody awaits it)."""
    stream = actor.streams.get(ref)
    if stream is None or stream.reupgrades == 0 or stream.cancelled:
        return
    actor.stream_error(
        stream,
        UpgradeFailed(
            f"the server refused to upgrade {ref!r} again after a reconnect, with status "
            f"{status}; the WebSocket is over and is not upgraded again",
            ref,
            status,
            headers,
            b"",
        ),
    )
    stream.cancelled = True


def _to_stream(
    actor: ConnectionActor, ref: StreamRef, message: Any, is_fin: bool, counts: bool = False
) -> None:
    """Deliver a message of `ref` unless cancelled; spend a credit for a data message (and a
    1xx inform, so that a flood of them is held back by `flow` as data is)."""
    stream = actor.streams.get(ref)
    if stream is None:
        return
    if is_fin:
        del actor.streams[ref]
        actor.tracer.emit("response_end", stream=ref)
    if stream.cancelled:
        return
    if counts and stream.credits is not None and not is_fin:
        stream.credits -= 1
    actor.to_stream(stream, message)


def _upgraded(
    actor: ConnectionActor, ref: StreamRef, status: int, headers: Headers, rest: bytes
) -> None:
    """The server switched protocols for `ref`: check the handshake, become a WebSocket."""
    stream = actor.streams.get(ref)
    if stream is None or stream.ws_options is None or stream.handshake is None:
        actor.lost(BadStateError("the server switched protocols without an upgrade"), (ref,))
        return
    try:
        negotiated = validate_handshake(stream.handshake, status, headers)
    except GluegunError as error:
        actor.stream_error(stream, error)
        actor.streams.pop(ref, None)
        actor.lost(error, (ref,))
        return
    options = stream.ws_options
    core = WsConnection(negotiated, options.max_message_size, rest)
    for other in [s for s in actor.streams.values() if s is not stream]:
        actor.stream_error(other, BadStateError("the connection was upgraded to WebSocket"))
    actor.streams = {ref: stream}
    session = WsSession(core, stream, options)
    actor.set_session(session)
    protocols = (
        ("websocket",) if negotiated.protocol is None else ("websocket", negotiated.protocol)
    )
    actor.tracer.emit("ws_upgrade", stream=ref, headers=headers, protocol=negotiated.protocol)
    if not stream.cancelled:
        actor.to_stream(stream, GunUpgrade(actor.conn, ref, protocols, headers))
    actor.arm_keepalive()
    session.handle(actor, core.initial_events())


def _handshake(headers: Headers, options: WsOptions) -> Handshake:
    """The upgrade request's handshake: the call's headers first, then the options'."""
    return handshake_request(
        subprotocols=options.subprotocols,
        compress=options.compress,
        headers=headers + options.headers,
    )

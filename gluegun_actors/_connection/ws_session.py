"""The connection actor's session once upgraded to WebSocket: the core's events turned
into owner messages, the owner's frames sent, pings on the keepalive timer.

Like Gun's `gun_ws.erl` beside `gun.erl`. Its methods run in the actor's turn and act
through the actor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gluegun_actors._connection.commands import TimerKind, WsSend
from gluegun_actors._connection.stream import Stream
from gluegun_actors._options import WsOptions
from gluegun_actors._protocol.ws import Failed, Finished, WsConnection, WsEvent
from gluegun_actors._types import Protocol, StreamRef
from gluegun_actors.errors import GluegunError
from gluegun_actors.events import GunError, GunWs
from gluegun_actors.message import Binary, Close, Ping, Pong, Text

if TYPE_CHECKING:
    from gluegun_actors._connection.actor import ConnectionActor

__all__ = ["WsSession"]


class WsSession:
    """Connected, upgraded to WebSocket on `stream`, through `core`."""

    protocol = Protocol.WS
    __slots__ = ("core", "options", "stream")

    def __init__(self, core: WsConnection, stream: Stream, options: WsOptions) -> None:
        self.core = core
        self.stream = stream
        self.options = options

    def unfinished(self) -> tuple[StreamRef, ...]:
        return (self.stream.ref,)

    def data_to_send(self) -> bytes:
        return self.core.data_to_send()

    def setting(self, name: str) -> int | None:
        """The upgrade's `keepalive`, `pong_timeout` or `closing_timeout`, if it set one."""
        value: int | None = getattr(self.options, name)
        return value

    def receive(self, actor: ConnectionActor, data: bytes) -> None:
        self.handle(actor, self.core.receive_data(data))

    def handle(self, actor: ConnectionActor, events: list[WsEvent]) -> None:
        """Deliver what one read gave, all at once (one mailbox lock, one wakeup)."""
        stream = self.stream
        conn, ref, tracer = actor.conn, stream.ref, actor.tracer
        tracing = tracer.active
        silence_pings = self.options.silence_pings
        batch: list[object] = []
        for event in events:
            if isinstance(event, Failed):
                if not stream.cancelled:
                    batch.append(GunError(conn, ref, event.error))
                continue
            if isinstance(event, Finished):
                actor.to_stream_all(stream, batch)
                actor.flush_out()
                actor.lost(event.reason, (ref,))
                return
            kind = type(event)
            if tracing:
                tracer.emit("ws_recv_frame_end", stream=ref, frame=kind.__name__)
            if kind is Text or kind is Binary:
                if stream.credits is not None:
                    stream.credits -= 1
            elif kind is not Close:
                if kind is Pong:
                    actor.timers.cancel(TimerKind.PONG)
                if silence_pings:
                    continue
            if not stream.cancelled:
                batch.append(GunWs(conn, ref, event))
        actor.to_stream_all(stream, batch)
        actor.flush_out()

    def send(self, actor: ConnectionActor, command: WsSend) -> None:
        """Send the owner's frames in order; a frame the core refuses ends the batch."""
        send, tracer, ref = self.core.send, actor.tracer, command.stream
        tracing = tracer.active
        for frame in command.frames:
            try:
                send(frame)
            except GluegunError as error:
                actor.stream_error(self.stream, error)
                break
            actor.stats.messages_out += 1
            if tracing:
                tracer.emit("ws_send_frame_end", stream=ref, frame=type(frame).__name__)
            if type(frame) is Close:
                self.stream.upgrade = None  # the owner ended it: not upgraded again
                actor.start_timer(TimerKind.CLOSING, actor.closing_timeout())
        actor.flush_out()

    def shutdown(self, actor: ConnectionActor) -> bool:
        """Start the closing handshake with 1001; False if no close frame can be sent."""
        try:
            self.core.send(Close(1001, "going away"))
        except GluegunError:
            return False
        actor.flush_out()
        return True

    def keepalive_interval(self, actor: ConnectionActor) -> int | None:
        return actor.ws_setting("keepalive")

    def keepalive(self, actor: ConnectionActor) -> None:
        """The peer has been silent for the keepalive interval: ping it, and expect a pong
        within `pong_timeout`."""
        self.core.send(Ping(b""))
        actor.flush_out()
        pong_timeout = actor.ws_setting("pong_timeout")
        if pong_timeout is not None and not actor.timers.running(TimerKind.PONG):
            actor.start_timer(TimerKind.PONG, pong_timeout)

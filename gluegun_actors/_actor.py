"""The connection actor (Gun's `gun.erl`): one Pykka actor per connection.

Theory of operation. The actor is the only code that touches its socket. It is a state
machine over four states::

    NOT_CONNECTED --connect--> CONNECTING --Connected--> CONNECTED --lost--> NOT_CONNECTED
          |                        |                         |
          +------ shutdown / owner death / retries exhausted -+--> CLOSING --> (stopped)

Inputs are `tell`s: caller commands (`Request`, `WsSend`, `Shutdown`...), transport events
from the reactor (`Connected`, `Received`, `Eof`...) and timer ticks. The protocol cores
(`_http1`, `_ws`) turn bytes into events; the actor maps those to owner messages, in
order, writes what the cores queued, and re-arms the socket (active-once) unless flow
control says the owner has had enough.

Ordering: every owner message is delivered synchronously by this thread, so the owner
sees them in the order the actor produced them. Facts that callers check without a round
trip (`Connection.protocol`, `.ws_streams`, `.exit_reason`) are published before the
message that reveals them.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from dataclasses import dataclass, field
from typing import Any

import pykka

from gluegun_actors import _http1 as h1
from gluegun_actors import _reactor as rx
from gluegun_actors import _ws as ws
from gluegun_actors._handle import Connection
from gluegun_actors._options import Options
from gluegun_actors._owner import Owner, as_owner
from gluegun_actors._pool import PooledActor, queued_tells
from gluegun_actors._trace import Tracer
from gluegun_actors._types import Headers, Protocol, StreamRef
from gluegun_actors.errors import (
    BadStateError,
    ClosingTimeout,
    ConnectionDown,
    GluegunError,
    PongTimeout,
    StreamError,
    describe,
)
from gluegun_actors.events import (
    Down,
    GunData,
    GunDown,
    GunError,
    GunInform,
    GunResponse,
    GunTrailers,
    GunUp,
    GunUpgrade,
    GunWs,
)
from gluegun_actors.message import Binary, Close, Frame, Ping, Pong, Text

log = logging.getLogger("gluegun_actors.connection")


# -- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    stream: StreamRef
    method: str
    target: str
    headers: Headers
    body: bytes | None
    is_fin: bool


@dataclass(frozen=True, slots=True)
class RequestData:
    stream: StreamRef
    data: bytes
    is_fin: bool


@dataclass(frozen=True, slots=True)
class WsStreamOptions:
    """What one upgrade asks for; None fields fall back to the connection's options."""

    settings: ws.WsSettings
    silence_pings: bool = True
    keepalive: int | None = None
    pong_timeout: int | None = None
    closing_timeout: int | None = None
    flow: int | None = None


@dataclass(frozen=True, slots=True)
class Upgrade:
    stream: StreamRef
    target: str
    options: WsStreamOptions


@dataclass(frozen=True, slots=True)
class WsSend:
    stream: StreamRef
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class Cancel:
    stream: StreamRef


@dataclass(frozen=True, slots=True)
class UpdateFlow:
    stream: StreamRef
    credits: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


@dataclass(frozen=True, slots=True)
class CloseNow:
    pass


@dataclass(frozen=True, slots=True)
class SetOwner:
    target: Any


@dataclass(frozen=True, slots=True)
class Barrier:
    """Ask: answered once everything told before it is done; cancels `stream` if given."""

    stream: StreamRef | None


@dataclass(frozen=True, slots=True)
class InfoRequest:
    pass


@dataclass(frozen=True, slots=True)
class OwnerDied:
    pass


class TimerKind(enum.Enum):
    RETRY = "retry"
    KEEPALIVE = "keepalive"
    PONG = "pong"
    CLOSING = "closing"


@dataclass(frozen=True, slots=True)
class TimerFired:
    kind: TimerKind
    generation: int


# -- state --------------------------------------------------------------------------------


class State(enum.Enum):
    NOT_CONNECTED = "not_connected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"
    STOPPED = "stopped"


@dataclass(slots=True)
class _Stream:
    ref: StreamRef
    credits: int | None
    cancelled: bool = False
    responding: bool = False
    ws_options: WsStreamOptions | None = None
    handshake: ws.Handshake | None = None


_CLOSED_BY_CALLER = "closed"


@dataclass(slots=True)
class _Timers:
    handles: dict[TimerKind, rx.TimerHandle] = field(default_factory=dict)
    generation: int = 0


class ConnectionActor(PooledActor):
    """Owns one socket; speaks HTTP/1.1 and WebSocket; reports to the owner.

    Runs on the shared worker pool (`_pool`): thousands of connections cost a few threads.
    Its handlers never block: sockets are non-blocking and owned by the reactor.
    """

    def __init__(self, conn: Connection, options: Options, reactor: rx.Reactor) -> None:
        super().__init__()
        self.conn = conn
        self.options = options
        self.reactor = reactor
        self.owner: Owner = conn.owner
        self.owner_monitor: object | None = None
        self.tracer = Tracer(conn.id, options.event_handler)
        self.state = State.NOT_CONNECTED
        self.transport: rx.Transport | None = None
        self.http: h1.Http1Client | None = None
        self.ws: ws.WsConnection | None = None
        self.ws_stream: _Stream | None = None
        self.protocol: Protocol | None = None
        self.streams: dict[StreamRef, _Stream] = {}
        self.queued: list[Request | RequestData | Upgrade] = []
        self.retries_left = options.retry
        self.attempt = 0
        self.reading_paused = False
        self.timers = _Timers()
        self.exit_reason: object = None
        self.closing_reason: object = "normal"
        self.owner_dead = False

    # -- lifecycle ------------------------------------------------------------------------

    def on_start(self) -> None:
        self.owner_monitor = self.owner.monitor(self._owner_died_callback)
        self.tracer.emit("init", host=self.conn.host, port=self.conn.port)
        self._connect()

    def on_stop(self) -> None:
        self._release()
        if self.exit_reason is None:  # stopped from outside, e.g. ActorRegistry.stop_all()
            self.exit_reason = _CLOSED_BY_CALLER
            self.conn.exit_reason = _CLOSED_BY_CALLER
        self.tracer.emit("terminate", reason=self.exit_reason)
        self.conn.finished.set()

    def on_failure(self, *args: Any) -> None:  # pragma: no cover - on_receive catches all
        self._release()
        self.conn.exit_reason = self.exit_reason or "crashed"
        self.conn.finished.set()

    def _release(self) -> None:
        self._cancel_timers()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self.owner_monitor is not None:
            self.owner.demonitor(self.owner_monitor)
            self.owner_monitor = None
        if self.reactor is not None:
            rx.release_reactor(self.reactor)
            self.reactor = None  # type: ignore[assignment]

    def _owner_died_callback(self) -> None:
        # A thread's mailbox dies while the thread is being torn down: the shutdown turn
        # (which may stop and join the reactor) runs on a worker, not there.
        with contextlib.suppress(pykka.ActorDeadError), queued_tells():
            self.actor_ref.tell(OwnerDied())

    def _terminate(self, reason: object, *, linger: bool = True) -> None:
        """Stop for good; `Down(conn, reason)` is the owner's last message of this connection.

        `linger` lets what is already written (a close frame) reach the peer first.
        """
        if self.state is State.STOPPED:
            return
        self.state = State.STOPPED
        self.exit_reason = reason
        self.conn.exit_reason = reason
        self._cancel_timers()
        if self.transport is not None:
            if linger:
                self.transport.close_after_flush(1.0)
            else:
                self.transport.close()
            self.transport = None
        for stream in list(self.streams.values()):
            self._error(
                stream, ConnectionDown(f"the connection stopped ({describe(reason)})", reason)
            )
        self.streams.clear()
        self.queued.clear()
        if not self.owner_dead:
            self.owner.deliver(Down(self.conn, reason))
        self.stop()

    # -- dispatch -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        try:
            return self._dispatch(message)
        except Exception as error:
            log.exception("%r crashed on %r", self.conn, type(message).__name__)
            self._terminate(error)
            return None

    def _dispatch(self, message: Any) -> Any:
        if self.state is State.STOPPED:
            if isinstance(message, InfoRequest | Barrier):
                return self._info() if isinstance(message, InfoRequest) else True
            return None
        match message:
            case rx.Received() | rx.Eof() | rx.Broken() | rx.Connected() | rx.ConnectFailed():
                if message.transport is self.transport:
                    self._on_transport(message)
            case Request() | RequestData() | Upgrade():
                self._on_command(message)
            case WsSend():
                self._on_ws_send(message)
            case TimerFired(kind=kind, generation=generation):
                if generation == self.timers.generation and kind in self.timers.handles:
                    del self.timers.handles[kind]
                    self._on_timer(kind)
            case Cancel(stream=ref):
                self._cancel(ref)
            case UpdateFlow(stream=ref, credits=credits):
                self._update_flow(ref, credits)
            case Barrier(stream=ref):
                if ref is not None:
                    self._cancel(ref)
                return True
            case InfoRequest():
                return self._info()
            case SetOwner(target=target):
                self._set_owner(target)
                return True
            case Shutdown():
                self._shutdown("normal")
            case OwnerDied():
                self.owner_dead = True
                self._shutdown("owner_down")
            case CloseNow():
                self.owner_dead = True  # the caller asked: nothing more is delivered
                self._terminate(_CLOSED_BY_CALLER, linger=False)
            case _:
                log.warning("%r ignored an unknown message %r", self.conn, message)
        return None

    # -- connecting -----------------------------------------------------------------------

    def _connect(self) -> None:
        self.state = State.CONNECTING
        self.attempt += 1
        self.tracer.emit("connect_start", attempt=self.attempt, transport=self.options.transport)
        opts = self.options
        context = None
        if opts.transport == "tls":
            import ssl

            context = opts.tls_context or ssl.create_default_context()
        timeout = None if opts.connect_timeout is None else opts.connect_timeout / 1000.0
        self.transport = self.reactor.connect(
            self.conn.host,
            self.conn.port,
            callback=self._transport_callback(),
            timeout=timeout,
            ssl_context=context,
            server_hostname=opts.tls_server_name or self.conn.host,
        )

    def _transport_callback(self) -> Any:
        tell = self.actor_ref.tell

        def callback(event: rx.TransportEvent) -> None:
            try:
                tell(event)
            except pykka.ActorDeadError:
                event.transport.close()

        return callback

    def _on_transport(self, event: rx.TransportEvent) -> None:
        match event:
            case rx.Received(data=data):
                self._on_data(data)
            case rx.Eof():
                self._on_data(b"")
            case rx.Broken(error=error):
                self._lost(error)
            case rx.Connected():
                self._on_connected()
            case rx.ConnectFailed(error=error):
                self.tracer.emit("connect_end", attempt=self.attempt, error=error)
                self.transport = None
                self._retry_or_stop(error)

    def _on_connected(self) -> None:
        assert self.transport is not None
        if self.tracer.active:  # asking for the local address is a system call
            self.tracer.emit("connect_end", attempt=self.attempt, socket=self.transport.sockname)
        self.state = State.CONNECTED
        self.retries_left = self.options.retry
        self.attempt = 0
        default_port = 443 if self.options.transport == "tls" else 80
        self.http = h1.Http1Client(
            self.conn.host,
            self.conn.port,
            default_port=default_port,
            max_header_block_size=self.options.max_header_block_size,
        )
        self._set_protocol(Protocol.HTTP1)
        self._deliver(GunUp(self.conn, Protocol.HTTP1))
        queued, self.queued = self.queued, []
        for command in queued:
            self._on_command(command)
        self._resume_reading()

    def _retry_or_stop(self, reason: object) -> None:
        if self.retries_left <= 0:
            self._terminate(reason)
            return
        self.retries_left, delay = self.options.retry_delay(self.attempt, self.retries_left)
        if delay <= 0:
            self._connect()
        else:
            self.state = State.NOT_CONNECTED
            self._start_timer(TimerKind.RETRY, delay)

    def _lost(self, reason: object, killed: tuple[StreamRef, ...] | None = None) -> None:
        """The connection broke: stream errors, GunDown, then reconnect by policy."""
        if self.state is State.CLOSING:
            self._terminate(self.closing_reason)
            return
        protocol = self.protocol or Protocol.HTTP1
        if killed is None:
            killed = self._unfinished()
        message = f"the connection was lost ({describe(reason)}) before the stream finished"
        for ref in killed:
            stream = self.streams.pop(ref, None)
            if stream is not None and stream.ws_options is None:
                self._error(stream, StreamError(message, ref, reason))
        self.tracer.emit("disconnect", reason=reason, killed_streams=killed)
        self._drop_connection()
        self._deliver(GunDown(self.conn, protocol, reason, killed))
        self.retries_left = self.options.retry
        self.attempt = 0
        self._retry_or_stop(reason)

    def _unfinished(self) -> tuple[StreamRef, ...]:
        if self.ws_stream is not None:
            return (self.ws_stream.ref,)
        if self.http is not None:
            return self.http.unfinished
        return ()

    def _drop_connection(self) -> None:
        self._cancel_timers()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.http = None
        self.ws = None
        self.ws_stream = None
        self.streams.clear()
        self.reading_paused = False
        self._set_protocol(None)
        self.state = State.NOT_CONNECTED

    def _set_protocol(self, protocol: Protocol | None) -> None:
        if protocol is not self.protocol:
            self.tracer.emit("protocol_changed", protocol=protocol)
        self.protocol = protocol
        self.conn.protocol = protocol
        self.conn.ws_streams = (
            frozenset((self.ws_stream.ref,)) if self.ws_stream is not None else frozenset()
        )

    # -- commands -------------------------------------------------------------------------

    def _on_command(self, command: Request | RequestData | Upgrade) -> None:
        match self.state:
            case State.NOT_CONNECTED | State.CONNECTING:
                if not isinstance(command, RequestData):
                    self.streams[command.stream] = self._new_stream(command)
                self.queued.append(command)
                return
            case State.CLOSING if not (isinstance(command, RequestData) and self.http is not None):
                # A graceful close still lets the active request finish sending its body.
                stream = self.streams.pop(command.stream, None) or self._new_stream(command)
                self._error(stream, StreamError("the connection is shutting down", command.stream))
                return
        if self.ws_stream is not None:
            stream = self.streams.get(command.stream) or self._new_stream(command)
            self._error(
                stream,
                BadStateError(
                    "the connection was upgraded to WebSocket; "
                    "HTTP requests need another connection"
                ),
            )
            return
        assert self.http is not None
        try:
            match command:
                case Request(ref, method, target, headers, body, is_fin):
                    self.streams.setdefault(ref, self._new_stream(command))
                    self.tracer.emit("request_start", stream=ref, method=method, target=target)
                    self.http.request(ref, method, target, headers, body, is_fin=is_fin)
                    self.tracer.emit("request_headers", stream=ref, headers=headers)
                    if is_fin:
                        self.tracer.emit("request_end", stream=ref)
                case RequestData(ref, data, is_fin):
                    self.http.data(ref, data, is_fin)
                    if is_fin:
                        self.tracer.emit("request_end", stream=ref)
                case Upgrade(ref, target, options):
                    handshake = ws.handshake_request(options.settings)
                    record = self.streams.setdefault(ref, self._new_stream(command))
                    record.handshake = handshake
                    self.tracer.emit("request_start", stream=ref, method="GET", target=target)
                    self.http.request(ref, "GET", target, handshake.headers, None)
                    self.tracer.emit("request_end", stream=ref)
        except GluegunError as error:
            failed = self.streams.pop(command.stream, None) or self._new_stream(command)
            self._error(failed, error)
            return
        self._flush_out()

    def _new_stream(self, command: Request | RequestData | Upgrade) -> _Stream:
        if isinstance(command, Upgrade):
            flow = command.options.flow if command.options.flow is not None else self.options.flow
            return _Stream(command.stream, flow, ws_options=command.options)
        return _Stream(command.stream, self.options.flow)

    def _on_ws_send(self, command: WsSend) -> None:
        stream = self.ws_stream
        if stream is None or stream.ref != command.stream or self.ws is None:
            self._deliver(
                GunError(
                    self.conn,
                    command.stream,
                    BadStateError(
                        f"{command.stream!r} is not an upgraded WebSocket stream of this "
                        "connection (never upgraded, or the upgrade was lost with a reconnect)"
                    ),
                )
            )
            return
        send, tracer = self.ws.send, self.tracer
        tracing = tracer.active
        for frame in command.frames:
            try:
                send(frame)
            except GluegunError as error:
                self._deliver(GunError(self.conn, stream.ref, error))
                break
            if tracing:
                tracer.emit("ws_send_frame_end", stream=stream.ref, frame=type(frame).__name__)
            if type(frame) is Close:
                self._start_timer(TimerKind.CLOSING, self._closing_timeout())
        self._flush_out()

    def _cancel(self, ref: StreamRef) -> None:
        stream = self.streams.get(ref)
        if stream is not None and not stream.cancelled:
            stream.cancelled = True
            self.tracer.emit("cancel", stream=ref)
            self._maybe_resume()

    def _update_flow(self, ref: StreamRef, credits: int) -> None:
        stream = self.streams.get(ref)
        if stream is None or stream.credits is None:
            return
        stream.credits += credits
        self._maybe_resume()

    def _set_owner(self, target: Any) -> None:
        if self.owner_monitor is not None:
            self.owner.demonitor(self.owner_monitor)
        self.owner = as_owner(target, self.reactor, self.options.owner_check_interval)
        self.conn.owner = self.owner
        self.owner_monitor = self.owner.monitor(self._owner_died_callback)

    def _shutdown(self, reason: object) -> None:
        """Graceful: finish what is in flight, fail the rest, then stop (no GunDown)."""
        if self.state is State.CLOSING:
            return
        self.closing_reason = reason
        match self.state:
            case State.NOT_CONNECTED | State.CONNECTING:
                self._terminate(reason)
                return
        self.state = State.CLOSING
        self._start_timer(TimerKind.CLOSING, self._closing_timeout())
        if self.ws is not None and self.ws_stream is not None:
            try:
                self.ws.send(Close(1001, "going away"))
            except GluegunError:
                self._terminate(reason)
                return
            self._flush_out()
            return
        assert self.http is not None
        self._handle_http_events(self.http.shutdown())

    def _closing_timeout(self) -> int:
        stream = self.ws_stream
        if (
            stream is not None
            and stream.ws_options is not None
            and stream.ws_options.closing_timeout is not None
        ):
            return stream.ws_options.closing_timeout
        return self.options.closing_timeout

    # -- incoming -------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self.reading_paused = True
        if self.ws is not None:
            self._handle_ws_events(self.ws.receive_data(data))
        elif self.http is not None:
            self._handle_http_events(self.http.receive_data(data))
        if self.transport is not None and data:
            self._maybe_resume()

    def _handle_http_events(self, events: list[h1.Event]) -> None:
        for event in events:
            match event:
                case h1.Response(stream=ref, is_fin=is_fin, status=status, headers=headers):
                    self._response_start(ref)
                    self.tracer.emit("response_headers", stream=ref, status=status, headers=headers)
                    self._to_stream(
                        ref, GunResponse(self.conn, ref, is_fin, status, headers), is_fin
                    )
                case h1.Data(stream=ref, is_fin=is_fin, data=data):
                    self._to_stream(ref, GunData(self.conn, ref, is_fin, data), is_fin, counts=True)
                case h1.Inform(stream=ref, status=status, headers=headers):
                    self._response_start(ref)
                    self.tracer.emit("response_inform", stream=ref, status=status, headers=headers)
                    self._to_stream(ref, GunInform(self.conn, ref, status, headers), False)
                case h1.Trailers(stream=ref, headers=headers):
                    self.tracer.emit("response_trailers", stream=ref, headers=headers)
                    self._to_stream(ref, GunTrailers(self.conn, ref, headers), True)
                case h1.StreamFailed(stream=ref, error=error):
                    stream = self.streams.pop(ref, None)
                    if stream is not None:
                        self._error(stream, error)
                case h1.Upgraded(stream=ref, status=status, headers=headers, trailing_data=rest):
                    self._on_upgraded(ref, status, headers, rest)
                    return
                case h1.Closed(reason=reason, killed=killed):
                    self._lost(reason, killed)
                    return
        self._flush_out()

    def _response_start(self, ref: StreamRef) -> None:
        stream = self.streams.get(ref)
        if stream is not None and not stream.responding:
            stream.responding = True
            self.tracer.emit("response_start", stream=ref)

    def _to_stream(self, ref: StreamRef, message: Any, is_fin: bool, counts: bool = False) -> None:
        stream = self.streams.get(ref)
        if stream is None:
            return
        if is_fin:
            del self.streams[ref]
            self.tracer.emit("response_end", stream=ref)
        if stream.cancelled:
            return
        if counts and stream.credits is not None and not is_fin:
            stream.credits -= 1
        self._deliver(message)

    def _on_upgraded(self, ref: StreamRef, status: int, headers: Headers, rest: bytes) -> None:
        stream = self.streams.get(ref)
        if stream is None or stream.ws_options is None or stream.handshake is None:
            self._lost(BadStateError("the server switched protocols without an upgrade"), (ref,))
            return
        try:
            negotiated = ws.validate_handshake(
                stream.handshake, stream.ws_options.settings, status, headers
            )
        except GluegunError as error:
            self._error(stream, error)
            self.streams.pop(ref, None)
            self._lost(error, (ref,))
            return
        self.http = None
        self.ws_stream = stream
        self.ws = ws.WsConnection(negotiated, stream.ws_options.settings, rest)
        for other in [s for s in self.streams.values() if s is not stream]:
            self._error(other, BadStateError("the connection was upgraded to WebSocket"))
        self.streams = {ref: stream}
        self._set_protocol(Protocol.WS)
        protocols = (
            ("websocket",) if negotiated.protocol is None else ("websocket", negotiated.protocol)
        )
        self.tracer.emit("ws_upgrade", stream=ref, headers=headers, protocol=negotiated.protocol)
        if not stream.cancelled:
            self._deliver(GunUpgrade(self.conn, ref, protocols, headers))
        self._arm_keepalive()
        self._handle_ws_events(self.ws.initial_events())

    def _handle_ws_events(self, events: list[ws.WsEvent]) -> None:
        """Deliver what one read gave, all at once (one mailbox lock, one wakeup)."""
        stream = self.ws_stream
        assert stream is not None and stream.ws_options is not None
        conn, ref, tracer = self.conn, stream.ref, self.tracer
        tracing = tracer.active
        silence_pings = stream.ws_options.silence_pings
        batch: list[object] = []
        for event in events:
            if isinstance(event, ws.Failed):
                if not stream.cancelled:
                    batch.append(GunError(conn, ref, event.error))
                continue
            if isinstance(event, ws.Finished):
                self._deliver_all(batch)
                self._flush_out()
                self._lost(event.reason, (ref,))
                return
            kind = type(event)
            if tracing:
                tracer.emit("ws_recv_frame_end", stream=ref, frame=kind.__name__)
            if kind is Text or kind is Binary:
                if stream.credits is not None:
                    stream.credits -= 1
            elif kind is not Close:
                if kind is Pong:
                    self._cancel_timer(TimerKind.PONG)
                if silence_pings:
                    continue
            if not stream.cancelled:
                batch.append(GunWs(conn, ref, event))
        self._deliver_all(batch)
        self._flush_out()

    # -- timers ---------------------------------------------------------------------------

    def _arm_keepalive(self) -> None:
        interval = self._ws_setting("keepalive")
        if interval is not None and self.ws is not None:
            self._start_timer(TimerKind.KEEPALIVE, interval)

    def _ws_setting(self, name: str) -> int | None:
        stream = self.ws_stream
        value = (
            getattr(stream.ws_options, name)
            if stream is not None and stream.ws_options is not None
            else None
        )
        return value if value is not None else getattr(self.options, name)  # type: ignore[no-any-return]

    def _on_timer(self, kind: TimerKind) -> None:
        match kind:
            case TimerKind.RETRY:
                if self.state is State.NOT_CONNECTED:
                    self._connect()
            case TimerKind.KEEPALIVE:
                if self.ws is not None and self.state is State.CONNECTED:
                    self.ws.send(Ping(b""))
                    self._flush_out()
                    pong_timeout = self._ws_setting("pong_timeout")
                    if pong_timeout is not None and TimerKind.PONG not in self.timers.handles:
                        self._start_timer(TimerKind.PONG, pong_timeout)
                    self._arm_keepalive()
            case TimerKind.PONG:
                timeout = self._ws_setting("pong_timeout")
                self._lost(PongTimeout(f"the peer did not answer a ping within {timeout} ms"))
            case TimerKind.CLOSING:
                if self.state is State.CLOSING:
                    self._terminate(self.closing_reason)
                else:
                    self._lost(
                        ClosingTimeout(
                            "the peer did not complete the close within "
                            f"{self._closing_timeout()} ms"
                        )
                    )

    def _start_timer(self, kind: TimerKind, delay_ms: int) -> None:
        self._cancel_timer(kind)
        message = TimerFired(kind, self.timers.generation)
        tell = self.actor_ref.tell

        def fire() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                tell(message)

        self.timers.handles[kind] = self.reactor.call_later(delay_ms / 1000.0, fire)

    def _cancel_timer(self, kind: TimerKind) -> None:
        handle = self.timers.handles.pop(kind, None)
        if handle is not None:
            handle.cancel()

    def _cancel_timers(self) -> None:
        for handle in self.timers.handles.values():
            handle.cancel()
        self.timers.handles.clear()
        self.timers.generation += 1

    # -- output ---------------------------------------------------------------------------

    def _flush_out(self) -> None:
        core: h1.Http1Client | ws.WsConnection | None = self.ws or self.http
        if core is None or self.transport is None:
            return
        data = core.data_to_send()
        if data:
            self.transport.write(data)

    def _deliver(self, message: object) -> None:
        if self.owner_dead:
            return
        if not self.owner.deliver(message):
            self.owner_dead = True
            self._shutdown("owner_down")

    def _deliver_all(self, messages: list[object]) -> None:
        if self.owner_dead or not messages:
            return
        if not self.owner.deliver_all(messages):
            self.owner_dead = True
            self._shutdown("owner_down")

    def _error(self, stream: _Stream, error: BaseException) -> None:
        if not stream.cancelled:
            self._deliver(GunError(self.conn, stream.ref, error))

    def _maybe_resume(self) -> None:
        if not self.reading_paused or self.transport is None:
            return
        for stream in self.streams.values():
            if stream.credits is not None and stream.credits <= 0 and not stream.cancelled:
                return
        self.reading_paused = False
        self.transport.resume_reading()

    def _resume_reading(self) -> None:
        self.reading_paused = True
        self._maybe_resume()

    # -- info -----------------------------------------------------------------------------

    def _info(self) -> dict[str, Any]:
        transport = self.transport
        return {
            "state": self.state.value,
            "protocol": self.protocol,
            "origin_host": self.conn.host,
            "origin_port": self.conn.port,
            "transport": self.options.transport,
            "owner": self.owner.target,
            "sock_ip_port": transport.sockname if transport else None,
            "peer_ip_port": transport.peername if transport else None,
            "streams": tuple(self.streams),
            "queued_commands": len(self.queued),
            "retries_left": self.retries_left,
        }

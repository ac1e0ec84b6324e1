"""The connection actor (Gun's `gun.erl`): one Pykka actor per connection.

Theory of operation. The actor is the only code that touches its socket. Its life is
`State`::

    NOT_CONNECTED --connect--> CONNECTING --Connected--> CONNECTED --lost--> NOT_CONNECTED
          |                        |                         |
          +------ shutdown / owner death / retries exhausted -+--> CLOSING --> STOPPED

and what it speaks while connected is its session, one class per protocol:
`HttpSession` (`http_session.py`, the HTTP/1.1 core) or `WsSession` (`ws_session.py`,
the WebSocket core and its one stream); None while not connected. As Gun's `gun.erl`
beside `gun_http.erl` and `gun_ws.erl`, the actor keeps the connection's life and the
sessions know their protocol.

Inputs are `tell`s (`commands`): caller commands, transport events from the reactor
and timer ticks. The protocol cores turn bytes into events; the sessions map those to
owner messages, in order, write what the cores queued, and the actor re-arms the socket
(active-once) unless flow control says the owner has had enough.

Threads. One turn runs at a time, on whichever thread the pool gives it (a worker, the
caller's thread that told it, or the reactor thread that read its socket), so the
fields below need no lock: they belong to the running turn. Only the `Connection`
handle is read by other threads; the actor publishes there (`set_session`, `_terminate`,
and `_connect_failed`: the `Outage` a timed-out wait explains itself with) before it
delivers the message that reveals a change, so a caller can refuse an impossible command
without a round trip.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import ssl
import time
import weakref
from functools import partial
from typing import Any, cast

import pykka

from gluegun_actors._connection.commands import (
    Barrier,
    Cancel,
    CloseGracefully,
    CloseNow,
    Drained,
    InfoRequest,
    OwnerDied,
    Request,
    RequestData,
    SetOwner,
    StreamCommand,
    StreamInfoRequest,
    TimerFired,
    TimerKind,
    UpdateFlow,
    Upgrade,
    WsSend,
)
from gluegun_actors._connection.destination import Destination, destination
from gluegun_actors._connection.handle import Connection
from gluegun_actors._connection.http_session import HttpSession
from gluegun_actors._connection.info import ConnectionInfo, StreamInfo, StreamState
from gluegun_actors._connection.outage import Outage, permanent
from gluegun_actors._connection.stream import Stream
from gluegun_actors._connection.timers import ActorTimers
from gluegun_actors._connection.trace import Tracer
from gluegun_actors._connection.ws_session import WsSession
from gluegun_actors._io import (
    Broken,
    Connected,
    ConnectFailed,
    ConnectTimeouts,
    Eof,
    Reactor,
    Received,
    Transport,
    TransportEvent,
    release_reactor,
)
from gluegun_actors._options import Options
from gluegun_actors._protocol import http1 as h1
from gluegun_actors._protocol.ws import NORMAL
from gluegun_actors._proxy import proxy_for, route
from gluegun_actors._runtime.pool import PooledActor, tell_holding, tell_queued
from gluegun_actors._types import Protocol, StreamRef
from gluegun_actors.errors import (
    BadStateError,
    ClosingTimeout,
    PongTimeout,
    ProtocolError,
    StreamError,
    describe,
)
from gluegun_actors.events import (
    Down,
    GunDown,
    GunError,
    GunUp,
    Shutdown,
)

log = logging.getLogger("gluegun_actors.connection")

_now = time.monotonic

__all__ = ["ConnectionActor", "State"]

_CLOSED_BY_CALLER = "shutdown"  # Gun's close goes through its supervisor: `shutdown`
_OWNER_DOWN = Shutdown("owner_down")
_LINGER_S = 1.0
_BACKLOG_POLL_MS = 20  # how often a backlogged Pykka-actor owner's inbox is looked at again
"""How long a stopping connection's socket may go on sending what was written (a close frame)."""


class State(enum.Enum):
    NOT_CONNECTED = "not_connected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"
    STOPPED = "stopped"


_Session = HttpSession | WsSession | None


class ConnectionActor(PooledActor):
    """Owns one socket; speaks HTTP/1.1 and WebSocket; reports to the owner.

    Runs on the shared worker pool (`_runtime.pool`): thousands of connections cost a
    few threads. Its handlers never block: sockets are non-blocking and owned by the
    reactor.
    """

    def __init__(self, conn: Connection, options: Options, reactor: Reactor) -> None:
        super().__init__()
        self.conn = conn
        self.options = options
        self.reactor: Reactor | None = reactor  # None once released
        self.owner: Destination = conn.owner
        self.owner_monitor: object | None = None
        self.tracer = Tracer(conn.id, options.event_handler, options.sensitive_headers)
        self.stats = conn.stats
        self._state = State.NOT_CONNECTED
        self.session: _Session = None
        self.transport: Transport | None = None
        self.streams: dict[StreamRef, Stream] = {}
        self.queued: list[StreamCommand] = []  # commands made while not connected
        self.retries_left = options.retry
        self.attempt = 0
        self.reading_paused = False
        # Waiting for a destination over its high-water mark to be drained (`Drained`).
        self.backlogged = False
        self._on_drained = partial(_tell_drained, self.actor_ref)
        self.last_received = 0.0  # time.monotonic() of the last read, for keepalive
        self.timers = ActorTimers(self.actor_ref)
        self.exit_reason: object = None
        self.closing_reason: object = "normal"
        self.owner_dead = False
        # Chosen once, in the opening thread (a bad proxy URL in the environment raises
        # from `open`); every attempt dials it and redoes the tunnel.
        self.proxy = proxy_for(options, conn.host, conn.port)

    @property
    def state(self) -> State:
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        """Every change of state is published in the handle's statistics."""
        self._state = state
        self.stats.enter(state.value)

    # -- lifecycle ------------------------------------------------------------------------

    def on_start(self) -> None:
        self._watch_owner()
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
        self.timers.cancel_all()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self.owner_monitor is not None:
            self.owner.demonitor(self.owner_monitor)
            self.owner_monitor = None
        if self.reactor is not None:
            release_reactor(self.reactor)
            self.reactor = None

    def _owner_died_callback(self) -> None:
        # A thread's mailbox dies while the thread is being torn down: the shutdown turn
        # (which may stop and join the reactor) runs on a worker, not there.
        with contextlib.suppress(pykka.ActorDeadError):
            tell_queued(self.actor_ref, OwnerDied())

    def _terminate(self, reason: object, *, linger: bool = True) -> None:
        """Stop for good; `Down(conn, reason)` is the owner's last message of this connection.

        `linger` lets what is already written (a close frame) reach the peer first.
        """
        if self.state is State.STOPPED:
            return
        self.state = State.STOPPED
        self.exit_reason = reason
        self.conn.exit_reason = reason
        self.conn.protocol = None  # (after exit_reason: a caller that checks learns it stopped)
        self.conn.ws_streams = frozenset()
        self.timers.cancel_all()
        if self.transport is not None:
            if linger:
                self.transport.close_after_flush(_LINGER_S)
            else:
                self.transport.close()
            self.transport = None
        elsewhere = self._stream_destinations()
        for stream in list(self.streams.values()):
            self.stream_error(stream, self.conn.terminated(reason, "the stream ended with it"))
        self.streams.clear()
        self.queued.clear()
        down = Down(self.conn, reason)
        if not self.owner_dead:
            self.owner.deliver(down)
        for other in elsewhere:
            other.deliver(down)  # a reply_to that had a live stream learns it too
        self.stop()

    def _going_away(self) -> bool:
        """On `close()`: an upgraded WebSocket gets a close frame (1001) so that the peer
        sees a clean close, not an abrupt one; its answer is not waited for (the socket
        lingers at most `_LINGER_S` to send it). True if a frame was written."""
        session = self.session
        return (
            isinstance(session, WsSession)
            and self.state is State.CONNECTED
            and session.shutdown(self)
        )

    def _stream_destinations(self) -> list[Destination]:
        """The live streams' destinations other than the owner, each once."""
        owner = self.owner.target
        seen: dict[int, Destination] = {}
        for stream in self.streams.values():
            target = stream.destination.target
            if target != owner and not stream.cancelled:
                seen.setdefault(id(target), stream.destination)
        return list(seen.values())

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
            match message:
                case InfoRequest():
                    return self._info()
                case Barrier():
                    return True
            return None
        match message:
            case Received() | Eof() | Broken() | Connected() | ConnectFailed():
                if message.transport is self.transport:
                    self._on_transport(message)
            case Request() | RequestData() | Upgrade():
                self._on_command(message)
            case WsSend():
                self._on_ws_send(message)
            case TimerFired():
                if self.timers.take(message):
                    self._on_timer(message.kind)
            case Cancel(stream=ref):
                if self._known(ref):
                    self._cancel(ref)
            case UpdateFlow(stream=ref, credits=credits):
                if self._known(ref):
                    self._update_flow(ref, credits)
            case Barrier(stream=ref):
                if ref is not None:
                    self._cancel(ref)
                return True
            case InfoRequest():
                return self._info()
            case StreamInfoRequest(stream=ref):
                return self._stream_info(ref)
            case SetOwner(target=target):
                self._set_owner(target)
                return True
            case Drained():
                self.backlogged = False
                self._maybe_resume()
            case CloseGracefully():
                self._shutdown("normal")
            case OwnerDied():
                self.owner_dead = True
                self._shutdown(_OWNER_DOWN)
            case CloseNow():
                self.owner_dead = True  # the caller asked: nothing more is delivered
                self._terminate(_CLOSED_BY_CALLER, linger=self._going_away())
            case _:
                log.warning("%r ignored an unknown message %r", self.conn, message)
        return None

    # -- connecting -----------------------------------------------------------------------

    def _connect(self) -> None:
        assert self.reactor is not None
        self.state = State.CONNECTING
        self.attempt += 1
        opts = self.options
        transport = opts.transport_for(self.conn.port)
        self.tracer.emit("connect_start", attempt=self.attempt, transport=transport)
        context = None
        if transport == "tls":
            context = opts.tls_context or ssl.create_default_context()
        host, port, tunnel = route(self.proxy, self.conn.host, self.conn.port)
        self.transport = self.reactor.connect(
            host,
            port,
            callback=self._transport_callback(self.reactor),
            timeout=ConnectTimeouts(
                lookup=_seconds(opts.domain_lookup_timeout),
                connect=_seconds(opts.connect_timeout),
                tls=_seconds(opts.tls_handshake_timeout),
            ),
            ssl_context=context,
            server_hostname=opts.tls_server_name or self.conn.host,
            tunnel=tunnel,
        )

    def _transport_callback(self, reactor: Reactor) -> Any:
        """What the reactor calls (on its thread) with this connection's transport events:
        a tell whose turn, if it runs right there, holds its wakeups with the reactor."""
        ref, held = self.actor_ref, reactor.held_wakeups

        on_reactor_thread = reactor._on_reactor_thread

        def callback(event: TransportEvent) -> None:
            try:
                if on_reactor_thread():
                    tell_holding(ref, event, held)
                else:  # a caller thread reading a borrowed socket (`_io.lease`)
                    ref.tell(event)
            except pykka.ActorDeadError:
                event.transport.close()

        return callback

    def _on_transport(self, event: TransportEvent) -> None:
        match event:
            case Received(data=data):
                self._on_data(data)
            case Eof():
                self._on_data(b"")
            case Broken(error=error):
                self.lost(error)
            case Connected():
                self._on_connected()
            case ConnectFailed(error=error):
                self.tracer.emit("connect_end", attempt=self.attempt, error=error)
                self.transport = None
                self.stats.last_error = error
                if permanent(error) and not self.options.retry_permanent:
                    self.retries_left = 0  # the next attempt fails the same: stop at once
                self._connect_failed(error)

    def _on_connected(self) -> None:
        assert self.transport is not None
        if self.tracer.active:  # asking for the local address is a system call
            self.tracer.emit("connect_end", attempt=self.attempt, socket=self.transport.sockname)
        self.state = State.CONNECTED
        self.stats.connected()
        if self.conn.outage is not None:
            self._recovered()
        self.retries_left = self.options.retry
        self.attempt = 0
        default_port = 443 if self.options.transport_for(self.conn.port) == "tls" else 80
        core = h1.Http1Client(
            self.conn.host,
            self.conn.port,
            default_port=default_port,
            max_header_block_size=self.options.max_header_block_size,
        )
        self.set_session(HttpSession(core))
        self.deliver(GunUp(self.conn, Protocol.HTTP1))
        queued, self.queued = self.queued, []
        for command in queued:
            self._on_command(command)
        self.arm_keepalive()
        self._resume_reading()

    def _retry_or_stop(self, reason: object) -> None:
        self._retry_after(self._next_delay(), reason)

    def _next_delay(self) -> int | None:
        """The delay (ms) before the next attempt, spending a retry; None when none is left."""
        if self.retries_left <= 0:
            return None
        self.retries_left, delay = self.options.retry_delay(self.attempt, self.retries_left)
        return delay

    def _retry_after(self, delay: int | None, reason: object) -> None:
        if delay is None:
            self._terminate(reason)
        elif delay <= 0:
            self._connect()
        else:
            self.state = State.NOT_CONNECTED
            self.start_timer(TimerKind.RETRY, delay)

    def _connect_failed(self, error: BaseException) -> None:
        """An attempt failed: publish why on the handle (before any message can reveal
        it), warn once per outage, then retry or stop by the policy."""
        conn = self.conn
        before = conn.outage
        delay = self._next_delay()
        outage = Outage(
            conn.host,
            conn.port,
            error,
            failures=1 if before is None else before.failures + 1,
            retries_left=self.retries_left,
            next_attempt_at=None if delay is None else _now() + delay / 1000,
        )
        conn.last_error = error
        conn.outage = outage
        if before is None:  # once per outage; the later failures at DEBUG
            again = "re" if self.stats.connected_once else ""
            log.warning(
                "%r cannot %sconnect to %s: %s (%s)",
                conn,
                again,
                outage.target,
                outage.why(),
                outage.plan(),
            )
        elif delay is None:
            log.info("%r gave up: %s", conn, outage)
        else:
            log.debug("%r: %s", conn, outage)
        self._retry_after(delay, error)

    def _recovered(self) -> None:
        outage = self.conn.outage
        assert outage is not None
        self.conn.outage = None
        log.info(
            "%r connected after %d failed attempt%s (last: %s)",
            self.conn,
            outage.failures,
            "" if outage.failures == 1 else "s",
            outage.why(),
        )

    def lost(
        self,
        reason: object,
        killed: tuple[StreamRef, ...] | None = None,
        unsent: tuple[StreamRef, ...] = (),
    ) -> None:
        """The connection broke: stream errors, GunDown, then reconnect by policy.

        `unsent` are killed streams whose request never reached the wire.
        """
        if self.state is State.CLOSING:
            session = self.session
            if isinstance(session, WsSession) and reason == NORMAL:
                self.streams.pop(session.stream.ref, None)  # its closing handshake completed
            self._terminate(self.closing_reason)
            return
        protocol = self._protocol() or Protocol.HTTP1
        if killed is None:
            killed = self._unfinished()
        owner = self.owner.target
        for ref in killed:
            stream = self.streams.pop(ref, None)
            if stream is None:
                continue
            if _resilient(stream):
                self._reupgrade_later(stream)
                continue
            # An HTTP stream gets its error; a WebSocket stream is told by the GunDown
            # below, unless its messages go elsewhere: then its reply_to is told too.
            if stream.ws_options is None or stream.destination.target != owner:
                self.stream_error(stream, _lost_error(ref, reason, ref in unsent))
        self.stats.last_error = reason
        self.tracer.emit("disconnect", reason=reason, killed_streams=killed)
        self._drop_connection()
        if not killed and isinstance(reason, ProtocolError):
            # The peer broke the protocol while no stream was open: Gun's connection-wide
            # gun_error, so the owner learns why before the GunDown.
            self.deliver(GunError(self.conn, None, reason))
        self.deliver(GunDown(self.conn, protocol, reason, killed))
        self.retries_left = self.options.retry
        self.attempt = 0
        self._retry_or_stop(reason)

    def _reupgrade_later(self, stream: Stream) -> None:
        """A `reupgrade` WebSocket survives the loss: its upgrade is redone after the
        next `GunUp`, on the same stream (fresh credits, a fresh handshake)."""
        assert stream.upgrade is not None
        options = stream.upgrade.options
        stream.credits = options.flow if options.flow is not None else self.options.flow
        stream.handshake = None
        stream.responding = False
        stream.reupgrades += 1
        self.streams[stream.ref] = stream
        self.queued.append(stream.upgrade)

    def defer(self, command: StreamCommand) -> None:
        """A request this connection can no longer take: it waits for the next `GunUp`
        (after the reconnect the close will bring), or fails now when there will be none."""
        if self.options.retry > 0:
            self.streams.setdefault(command.stream, self.new_stream(command))
            self.queued.append(command)
            return
        self.stream_error(
            self.new_stream(command),
            StreamError(
                "the connection is closing (the server or a request asked for it) and retry "
                "is 0, so no later connection will take this request; it was not sent",
                command.stream,
                reason="closing",
            ),
        )

    def _unfinished(self) -> tuple[StreamRef, ...]:
        return () if self.session is None else self.session.unfinished()

    def _drop_connection(self) -> None:
        self.timers.cancel_all()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        # What survives is what waits for the next connection (deferred requests).
        waiting = {command.stream for command in self.queued}
        self.streams = {ref: s for ref, s in self.streams.items() if ref in waiting}
        self.reading_paused = False
        self.set_session(None)
        self.state = State.NOT_CONNECTED

    def _protocol(self) -> Protocol | None:
        return None if self.session is None else self.session.protocol

    def set_session(self, session: _Session) -> None:
        """Change what the connection speaks, and publish it on the handle."""
        before = self._protocol()
        self.session = session
        protocol = self._protocol()
        if protocol is not before:
            self.tracer.emit("protocol_changed", protocol=protocol)
        conn = self.conn
        conn.protocol = protocol
        conn.ws_streams = (
            frozenset((session.stream.ref,)) if isinstance(session, WsSession) else frozenset()
        )

    # -- commands -------------------------------------------------------------------------

    def _on_command(self, command: StreamCommand) -> None:
        match self.state:
            case State.NOT_CONNECTED | State.CONNECTING:
                if not isinstance(command, RequestData):
                    self.streams[command.stream] = self.new_stream(command)
                self.queued.append(command)
                return
            case State.CLOSING if not (
                isinstance(command, RequestData) and isinstance(self.session, HttpSession)
            ):
                # A graceful close still lets the active request finish sending its body.
                stream = self.streams.pop(command.stream, None) or self.new_stream(command)
                self.stream_error(
                    stream, StreamError("the connection is shutting down", command.stream)
                )
                return
        session = self.session
        if not isinstance(session, HttpSession):
            stream = self.streams.get(command.stream) or self.new_stream(command)
            self.stream_error(
                stream,
                BadStateError(
                    "the connection was upgraded to WebSocket; "
                    "HTTP requests need another connection"
                ),
            )
            return
        session.command(self, command)
        if isinstance(command, Request | Upgrade):
            self.stats.messages_out += 1

    def new_stream(self, command: StreamCommand | WsSend) -> Stream:
        target = self.destination_of(command.stream)
        if isinstance(command, Upgrade):
            flow = command.options.flow if command.options.flow is not None else self.options.flow
            return Stream(command.stream, flow, target, ws_options=command.options, upgrade=command)
        return Stream(command.stream, self.options.flow, target)

    def destination_of(self, ref: StreamRef) -> Destination:
        """Where `ref`'s messages go: its `reply_to`, or the owner when it names none."""
        reply_to = ref.reply_to
        if reply_to is None or reply_to == self.owner.target:  # (ActorRefs compare by urn)
            return self.owner
        return destination(reply_to)

    def _on_ws_send(self, command: WsSend) -> None:
        session = self.session
        if not isinstance(session, WsSession) or session.stream.ref != command.stream:
            self.stream_error(
                self.new_stream(command),
                BadStateError(
                    f"{command.stream!r} is not an upgraded WebSocket stream of this "
                    "connection (never upgraded, or the upgrade was lost with a reconnect)"
                ),
            )
            return
        session.send(self, command)

    def _known(self, ref: StreamRef) -> bool:
        """Whether `ref` is a stream of this connection; if not, its reply_to is told
        with a `GunError` (`BadStateError`), as Gun tells a stream it cannot find."""
        if ref in self.streams:
            return True
        self.stream_error(
            Stream(ref, None, self.destination_of(ref)),
            BadStateError(
                f"{ref!r} cannot be found on this connection (it finished, failed or was "
                "never started here)"
            ),
        )
        return False

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
        self.owner = destination(target)
        self.conn.owner = self.owner
        self._watch_owner()

    def _watch_owner(self) -> None:
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
        self.start_timer(TimerKind.CLOSING, self.closing_timeout())
        session = self.session
        if isinstance(session, WsSession):
            if not session.shutdown(self):
                self._terminate(reason)
        elif session is not None:
            session.shutdown(self)

    def closing_timeout(self) -> int:
        timeout = self.ws_setting("closing_timeout")
        assert timeout is not None  # the connection's is always set
        return timeout

    # -- incoming -------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        self.last_received = _now()
        self.reading_paused = True
        if self.session is not None:
            self.session.receive(self, data)
        if self.transport is not None and data:
            self._maybe_resume()

    # -- timers ---------------------------------------------------------------------------

    def start_timer(self, kind: TimerKind, delay_ms: int) -> None:
        assert self.reactor is not None
        self.timers.start(self.reactor, kind, delay_ms)

    def arm_keepalive(self) -> None:
        """Start the keepalive timer of the current session, if it has one: it fires after
        that much silence from the peer."""
        session = self.session
        interval = None if session is None else session.keepalive_interval(self)
        if interval is not None:
            self.last_received = _now()
            self.start_timer(TimerKind.KEEPALIVE, interval)

    def ws_setting(self, name: str) -> int | None:
        """A WebSocket timing: the upgrade's option if set, else the connection's."""
        session = self.session
        value = session.setting(name) if isinstance(session, WsSession) else None
        if value is None:
            value = getattr(self.options, name)
        return cast(int | None, value)

    def _on_timer(self, kind: TimerKind) -> None:
        match kind:
            case TimerKind.BACKLOG:
                self.backlogged = False
                self._maybe_resume()
            case TimerKind.RETRY:
                if self.state is State.NOT_CONNECTED:
                    self._connect()
            case TimerKind.KEEPALIVE:
                session = self.session
                interval = None if session is None else session.keepalive_interval(self)
                if session is None or interval is None or self.state is not State.CONNECTED:
                    return
                silent = round((_now() - self.last_received) * 1000)
                if silent < interval:  # heard from since: wait out the rest of the silence
                    self.start_timer(TimerKind.KEEPALIVE, interval - silent)
                    return
                session.keepalive(self)
                self.start_timer(TimerKind.KEEPALIVE, interval)
            case TimerKind.PONG:
                timeout = self.ws_setting("pong_timeout")
                self.lost(PongTimeout(f"the peer did not answer a ping within {timeout} ms"))
            case TimerKind.CLOSING:
                if self.state is State.CLOSING:
                    self._terminate(self.closing_reason)
                else:
                    self.lost(
                        ClosingTimeout(
                            "the peer did not complete the close within "
                            f"{self.closing_timeout()} ms"
                        )
                    )

    # -- output ---------------------------------------------------------------------------

    def flush_out(self) -> None:
        session = self.session
        if session is None or self.transport is None:
            return
        data = session.core.data_to_send()
        if data:
            self.stats.bytes_out += len(data)
            self.transport.write(data)

    def deliver(self, message: object) -> None:
        """Deliver one of the connection's own messages to the owner."""
        if self.owner_dead:
            return
        if not self.owner.deliver(message):
            self._owner_gone()

    def to_stream(self, stream: Stream, message: object) -> None:
        """Deliver a message of `stream` where its messages go (its `reply_to`)."""
        self.to_stream_all(stream, [message])

    def to_stream_all(self, stream: Stream, messages: list[object]) -> None:
        """Deliver what one read gave `stream`, at once (one mailbox lock, one wakeup)."""
        if stream.cancelled or not messages:
            return
        self.stats.messages_in += len(messages)
        target = stream.destination
        mailbox, transport = target.mailbox, self.transport
        if mailbox is not None and transport is not None:
            mailbox._fed_by(weakref.ref(transport))  # its receivers may read it (`_io.lease`)
        if target is self.owner or target.target == self.owner.target:
            if not self.owner_dead and not self.owner.deliver_all(messages, self.held_wakeups):
                self._owner_gone()
        elif not target.deliver_all(messages, self.held_wakeups):
            stream.cancelled = True  # its reply_to is gone: nobody to deliver to

    def stream_error(self, stream: Stream, error: BaseException) -> None:
        self.to_stream(stream, GunError(self.conn, stream.ref, error))

    def _owner_gone(self) -> None:
        self.owner_dead = True
        self._shutdown(_OWNER_DOWN)

    def _maybe_resume(self) -> None:
        """Read on unless a stream is out of credits or a destination is backlogged: a
        slow owner holds the peer back through TCP instead of growing a queue."""
        if not self.reading_paused or self.transport is None or self.backlogged:
            return
        owner = self.owner
        for stream in self.streams.values():
            if stream.credits is not None and stream.credits <= 0 and not stream.cancelled:
                return
            if stream.destination is not owner and self._backlogged(stream.destination):
                return
        if self._backlogged(owner):
            return
        self.reading_paused = False
        self.transport.resume_reading()

    def _backlogged(self, target: Destination) -> bool:
        if not target.backlogged(self._on_drained):
            return False
        self.backlogged = True
        if target.polled:
            self.start_timer(TimerKind.BACKLOG, _BACKLOG_POLL_MS)
        return True

    def _resume_reading(self) -> None:
        self.reading_paused = True
        self._maybe_resume()

    # -- info -----------------------------------------------------------------------------

    def _stream_info(self, ref: StreamRef) -> StreamInfo | None:
        stream = self.streams.get(ref)
        if stream is None:
            return None
        if any(command.stream == ref for command in self.queued):
            state: StreamState = "waiting"
        elif stream.cancelled:
            state = "stopping"
        else:
            state = "running"
        session = self.session
        upgraded = isinstance(session, WsSession) and session.stream is stream
        return StreamInfo(
            ref=ref,
            reply_to=stream.destination.target,
            state=state,
            protocol=Protocol.WS if upgraded else Protocol.HTTP1,
        )

    def _info(self) -> ConnectionInfo:
        transport = self.transport
        sock = transport.sockname if transport else None
        peer = transport.peername if transport else None
        return ConnectionInfo(
            state_name=self.state.value,
            owner=self.owner.target,
            transport=self.options.transport_for(self.conn.port),
            protocol=self._protocol(),
            origin_host=self.conn.host,
            origin_port=self.conn.port,
            sock_ip=sock[0] if sock else None,
            sock_port=sock[1] if sock else None,
            peer_ip=peer[0] if peer else None,
            peer_port=peer[1] if peer else None,
            streams=tuple(self.streams),
            queued_commands=len(self.queued),
            retries_left=self.retries_left,
            last_error=self.conn.last_error,
        )


def _tell_drained(ref: pykka.ActorRef[Any]) -> None:
    """A mailbox was drained (called on the receiving thread): the actor reads on."""
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(Drained())


def _resilient(stream: Stream) -> bool:
    return stream.upgrade is not None and stream.upgrade.options.reupgrade


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _lost_error(ref: StreamRef, reason: object, unsent: bool) -> StreamError:
    """The error of a stream a lost connection ended: whether its request left matters,
    since only one that never reached the wire is safe to send again."""
    if unsent:
        text = (
            f"the connection closed ({describe(reason)}) before this request was sent; "
            "it was not sent, so it is safe to send it again"
        )
    else:
        text = (
            f"the connection was lost ({describe(reason)}) after this request was sent and "
            "before its response ended; it is not sent again (it may or may not have been "
            "processed)"
        )
    return StreamError(text, ref, reason)

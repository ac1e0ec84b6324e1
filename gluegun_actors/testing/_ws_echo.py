"""The embedded server's WebSocket side: what each path does, and the session after the 101.

Messages are echoed fragment by fragment, so nothing is reassembled and memory stays
bounded whatever the message size.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage

from gluegun_actors.testing._payloads import MAX_CHUNKS, BadRequest, int_param, pattern_bytes
from gluegun_actors.testing._server import Ending, _Channel, _Stop, logger

if TYPE_CHECKING:
    from gluegun_actors.testing._embedded import EmbeddedServer

__all__ = ["WebSocketSession", "WsKind", "WsPlan"]


class WsKind(enum.Enum):
    """What the server does on a WebSocket path."""

    ECHO = "echo"
    CLOSE = "close"
    PUSH = "push"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class WsPlan:
    kind: WsKind
    status: int = 0
    close_code: int = 1000
    close_reason: str = ""
    count: int = 0
    size: int = 0

    @classmethod
    def from_target(cls, target: str, max_generated_size: int) -> WsPlan:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        match parts.path:
            case "/ws/close":
                code = int_param(query, "code", 1000, 4999)
                return cls(WsKind.CLOSE, close_code=code, close_reason=query.get("reason", ""))
            case "/ws/push":
                count = int_param(query, "n", 1, MAX_CHUNKS)
                size = int_param(query, "size", 16, max_generated_size)
                if count * size > max_generated_size:
                    raise BadRequest(400, "n * size is over the server's max_generated_size")
                return cls(WsKind.PUSH, count=count, size=size)
            case "/ws/reject":
                status = int_param(query, "status", 403, 599)
                if status < 200:
                    raise BadRequest(400, "status must be a final status")
                return cls(WsKind.REJECT, status=status)
            case _:
                return cls(WsKind.ECHO)


class WebSocketSession:
    """One client connection after the 101: echo, push or close, as the plan says."""

    def __init__(
        self,
        server: EmbeddedServer,
        channel: _Channel,
        connection: WsConnection,
        plan: WsPlan,
    ) -> None:
        self._server = server
        self._channel = channel
        self._ws = connection
        self._plan = plan
        self._closing_deadline: float | None = None
        self._done = False

    def _send(self, event: Event) -> None:
        self._channel.send(self._ws.send(event), self._server.idle_timeout)
        if self._ws.state is ConnectionState.LOCAL_CLOSING and self._closing_deadline is None:
            self._closing_deadline = time.monotonic() + self._server.closing_timeout

    def run(self, trailing: bytes) -> None:
        try:
            self._start()
            if trailing:
                self._ws.receive_data(trailing)
            self._loop()
        except _Stop:
            if self._channel.ending is Ending.GRACEFUL and self._ws.state is ConnectionState.OPEN:
                going_away = CloseConnection(code=1001, reason="server stopping")
                self._channel.try_send(self._ws.send(going_away))
            raise
        except TimeoutError:
            logger.debug("websocket closed after a timeout (state %s)", self._ws.state.name)
        self._channel.close_gracefully(self._server.linger)

    def _start(self) -> None:
        match self._plan.kind:
            case WsKind.CLOSE:
                reason = self._plan.close_reason or None
                self._send(CloseConnection(code=self._plan.close_code, reason=reason))
            case WsKind.PUSH:
                text = pattern_bytes(self._plan.size).decode("ascii")
                for _ in range(self._plan.count):
                    self._send(TextMessage(data=text))
            case _:
                pass

    def _loop(self) -> None:
        while True:
            for event in self._ws.events():
                self._handle(event)
            if self._done or self._ws.state is ConnectionState.CLOSED:
                return
            if self._closing_deadline is None:
                timeout = self._server.idle_timeout
            else:
                timeout = max(0.0, self._closing_deadline - time.monotonic())
            data = self._channel.recv(timeout)
            if not data:
                return  # the peer closed TCP without a close handshake
            self._ws.receive_data(data)

    def _echoing(self, state: ConnectionState) -> bool:
        return self._plan.kind is WsKind.ECHO and state is ConnectionState.OPEN

    def _handle(self, event: Event) -> None:
        state = self._ws.state
        match event:
            case TextMessage(data=text, message_finished=finished):
                if self._echoing(state):
                    self._send(TextMessage(data=text, message_finished=finished))
            case BytesMessage(data=data, message_finished=finished):
                if self._echoing(state):
                    self._send(BytesMessage(data=data, message_finished=finished))
            case Ping():
                if state is ConnectionState.OPEN:
                    self._send(event.response())
            case CloseConnection():
                if state is ConnectionState.REMOTE_CLOSING:
                    self._send(event.response())
                elif state is ConnectionState.OPEN:  # wsproto could not parse the traffic
                    logger.debug("invalid websocket traffic: %s %s", event.code, event.reason)
                    self._send(CloseConnection(code=event.code, reason=event.reason))
                self._done = True
            case _:
                pass

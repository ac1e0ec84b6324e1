"""ScriptedServer: a raw TCP server that plays exact bytes, for fault tests.

Theory of operation: a script is a list of steps, played in order by the thread of one
accepted connection; the k-th connection plays the k-th script and the last script
repeats for later connections. `Expect` reads until a marker (or a byte count) has
arrived, each within the step timeout, so no thread waits forever; `Send` writes,
`Sleep` waits; `Close`, `Reset` and `Hold` end a script. A script that ends without
one of them closes with FIN. Every byte a connection receives is recorded in
`received`, in the order of connections.

Durations in steps are milliseconds (`Sleep(ms=...)`); durations given to Python calls
are seconds.
"""

from __future__ import annotations

import http
import re
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from wsproto.utilities import generate_accept_token

from gluegun_actors.testing._server import (
    DEFAULT_MAX_CONNECTIONS,
    ThreadedTcpServer,
    _Channel,
    logger,
)

DEFAULT_STEP_TIMEOUT: Final = 10.0
"""Seconds one `Expect` (or one `Send` to a peer that does not read) may take."""

_WS_KEY: Final = re.compile(rb"(?im)^sec-websocket-key:[ \t]*([^\r\n]+?)[ \t]*\r?$")


@dataclass(frozen=True, slots=True)
class Expect:
    """Read until `until` has been seen, or until `n` more bytes have arrived.

    Bytes are consumed up to the end of the marker (or the n bytes), so two
    `Expect()` in a row wait for two request heads.
    """

    until: bytes = b"\r\n\r\n"
    n: int | None = None

    def __post_init__(self) -> None:
        if self.n is None and not self.until:
            raise ValueError("Expect needs a non-empty `until` marker or a byte count `n`")
        if self.n is not None and self.n < 0:
            raise ValueError(f"Expect(n=...) cannot be negative, got {self.n}")


@dataclass(frozen=True, slots=True)
class Send:
    """Write these exact bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait `ms` milliseconds (the server's `stop()` cuts it short)."""

    ms: int

    def __post_init__(self) -> None:
        if self.ms < 0:
            raise ValueError(f"Sleep(ms=...) cannot be negative, got {self.ms}")


@dataclass(frozen=True, slots=True)
class Close:
    """Close with FIN (then read until the peer's FIN, within the step timeout)."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Close with RST (SO_LINGER on, 0 s)."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the connection open, reading and recording, until the server stops.

    It ends earlier if the peer closes.
    """


@dataclass(frozen=True, slots=True)
class WsAccept:
    """Send a 101 that accepts the WebSocket upgrade received so far.

    The accept token is computed from the last `sec-websocket-key` this connection
    received, which a fixed `Send` cannot know in advance. With `split_at` the response
    goes out in two writes, cut after that many bytes, 20 ms apart, so the client reads
    it in pieces.
    """

    subprotocol: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    split_at: int | None = None


_SPLIT_PAUSE: Final = 0.02
"""Seconds between the two writes of a split `WsAccept`."""

Step: TypeAlias = Expect | Send | Sleep | Close | Reset | Hold | WsAccept
_STEP_TYPES: Final = (Expect, Send, Sleep, Close, Reset, Hold, WsAccept)
_TERMINAL_STEPS: Final = (Close, Reset, Hold)


class ScriptedServer(ThreadedTcpServer):
    """A TCP server on 127.0.0.1 whose k-th connection plays `scripts[k]`.

    The last script repeats for every later connection. See the module docstring.

    `step_timeout` is seconds. `ValueError` for no script, or a script with a step
    after the one that ends it (`Close`, `Reset`, `Hold`).

    Example:
        ```python
        # The first connection is reset after its request; the second is answered.
        script_1 = [Expect(), Reset()]
        script_2 = [Expect(), Send(ScriptedServer.http_response(200, body=b"ok")), Hold()]
        with ScriptedServer([script_1, script_2]) as server:
            conn = connection.open("127.0.0.1", server.port, connection.options(retry=1))
            with pytest.raises(StreamError):  # sent, then lost: never sent again
                http.await_body(conn, http.get(conn, "/"), 5000)
            assert http.await_body(conn, http.get(conn, "/"), 5000) == b"ok"
        ```
    """

    _kind = "scripted"

    def __init__(
        self,
        scripts: Sequence[Sequence[Step]],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(host, port, max_connections=max_connections)
        if not scripts:
            raise ValueError("ScriptedServer needs at least one script")
        self._scripts = [_checked_script(k, script) for k, script in enumerate(scripts)]
        self.step_timeout = step_timeout
        self._received: dict[int, bytearray] = {}
        self._received_lock = threading.Lock()

    @property
    def received(self) -> list[bytes]:
        """The bytes each connection received, in the order connections were accepted."""
        count = self.connections_accepted
        with self._received_lock:
            return [bytes(self._received.get(k, b"")) for k in range(count)]

    @staticmethod
    def http_response(
        status: int = 200,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        reason: str | None = None,
    ) -> bytes:
        """An HTTP/1.1 response as bytes; adds content-length unless framing is given.

        No content-length is added for 1xx, 204 and 304, nor when `headers` already
        has `content-length` or `transfer-encoding`.
        """
        if reason is None:
            try:
                reason = http.HTTPStatus(status).phrase
            except ValueError:
                reason = ""
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers]
        names = {name.lower() for name, _ in headers}
        framed = bool(names & {"content-length", "transfer-encoding"})
        if status >= 200 and status not in (204, 304) and not framed:
            lines.append(f"content-length: {len(body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("latin-1") + body

    @staticmethod
    def ws_frame(
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bytes | None = None,
    ) -> bytes:
        """One raw WebSocket frame (server frames are unmasked; pass `mask` for 4 bytes).

        Nothing is checked, so tests can build invalid frames on purpose.
        """
        first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0x0F)
        mask_bit = 0x80 if mask is not None else 0
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", first, mask_bit | length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", first, mask_bit | 126, length)
        else:
            head = struct.pack("!BBQ", first, mask_bit | 127, length)
        if mask is None:
            return head + payload
        if len(mask) != 4:
            raise ValueError("a WebSocket mask is 4 bytes")
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        return head + mask + masked

    def _record(self, index: int, data: bytes) -> None:
        with self._received_lock:
            self._received.setdefault(index, bytearray()).extend(data)

    def _serve_client(self, channel: _Channel, index: int) -> None:
        with self._received_lock:
            self._received.setdefault(index, bytearray())
        script = self._scripts[min(index, len(self._scripts) - 1)]
        _Player(self, channel, index).play(script)


def _checked_script(number: int, script: Sequence[Step]) -> tuple[Step, ...]:
    steps = tuple(script)
    for position, step in enumerate(steps):
        if not isinstance(step, _STEP_TYPES):
            raise TypeError(f"script {number}, step {position}: not a step: {step!r}")
        if isinstance(step, _TERMINAL_STEPS) and position != len(steps) - 1:
            name = type(step).__name__
            raise ValueError(f"script {number}: {name}() ends a script, so it must be last")
    return steps


class _Player:
    """Plays one script on one connection."""

    def __init__(self, server: ScriptedServer, channel: _Channel, index: int) -> None:
        self._server = server
        self._channel = channel
        self._index = index
        self._pending = bytearray()

    def _on_data(self, data: bytes) -> None:
        self._server._record(self._index, data)

    def play(self, script: Sequence[Step]) -> None:
        timeout = self._server.step_timeout
        for step in script:
            match step:
                case Expect():
                    if not self._expect(step):
                        break
                case Send(data=data):
                    self._channel.send(data, timeout)
                case Sleep(ms=ms):
                    self._channel.sleep(ms / 1000)
                case WsAccept():
                    if not self._ws_accept(step):
                        break
                case Close():
                    break
                case Reset():
                    self._channel.reset()
                    return
                case Hold():
                    self._hold()
                    break
        self._channel.close_gracefully(timeout, self._on_data)

    def _expect(self, step: Expect) -> bool:
        """Consume what `step` asks for; False if the peer closed or the step timed out."""
        deadline = time.monotonic() + self._server.step_timeout
        while True:
            if step.n is not None:
                if len(self._pending) >= step.n:
                    del self._pending[: step.n]
                    return True
            else:
                found = self._pending.find(step.until)
                if found >= 0:
                    del self._pending[: found + len(step.until)]
                    return True
            try:
                data = self._channel.recv(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                logger.info("connection %d: %r timed out; closing", self._index, step)
                return False
            if not data:
                logger.debug("connection %d: peer closed during %r", self._index, step)
                return False
            self._on_data(data)
            self._pending += data

    def _ws_accept(self, step: WsAccept) -> bool:
        with self._server._received_lock:
            seen = bytes(self._server._received.get(self._index, b""))
        keys = _WS_KEY.findall(seen)
        if not keys:
            logger.warning("connection %d: WsAccept without a sec-websocket-key", self._index)
            return False
        headers = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", generate_accept_token(keys[-1]).decode("ascii")),
        ]
        if step.subprotocol is not None:
            headers.append(("sec-websocket-protocol", step.subprotocol))
        headers += step.headers
        response = ScriptedServer.http_response(101, headers)
        if step.split_at is not None:
            self._channel.send(response[: step.split_at], self._server.step_timeout)
            self._channel.sleep(_SPLIT_PAUSE)
            response = response[step.split_at :]
        self._channel.send(response, self._server.step_timeout)
        return True

    def _hold(self) -> None:
        while True:
            data = self._channel.recv(None)
            if not data:
                return
            self._on_data(data)

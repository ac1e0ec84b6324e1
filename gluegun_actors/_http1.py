"""Sans-IO HTTP/1.1 client core: commands and bytes in, Gun-style events and bytes out.

Theory of operation
-------------------
One `Http1Client` serves one TCP connection. The connection actor calls `request()`,
`data()` and `shutdown()` for user commands, writes `data_to_send()` to the socket after
every call, and feeds what the socket reads to `receive_data()` (`b""` is end of file).
Nothing here touches a socket, a thread or a clock.

Sending. Each request is checked against HTTP/1.1's grammar (method, target, header names
and values, one host, content-length, transfer-encoding: the rules h11 applies to a
request, in one pass that also serializes it), so a bad request raises
`LocalProtocolError` from `request()` before a byte is queued. Requests are
written in order, one after another on the wire (pipelining); a request is *held* (kept
in memory, not written) while an earlier request still streams its body, and while an
upgrade request (an `upgrade` header, or CONNECT) waits for its answer. Held requests are
written as soon as the request in front of them allows it. Each request moves through
the `_SendState` table; the connection as a whole through `_Phase`.

Receiving. h11 handles one request/response cycle at a time and cannot pipeline, but its
response parser is exactly what is needed: framing by content-length, chunked (which
wins), read-until-close, no body for HEAD/204/304, 1xx informs, trailers, 101 switching.
So one h11 client `Connection` is used as a parser only: before it parses the response of
the oldest unanswered request, it is shown a stand-in request with that request's method
(and its `upgrade` header), which never reaches the wire; when the response ends the
parser starts its next cycle, keeping the bytes it has not parsed yet. One case skips the
parser: a plain 101 head that arrives whole in one read for an upgrade request, as nearly
every WebSocket handshake does, is checked by the same grammar here (anything else about
it is left to h11, so both ways accept and emit the same).

Events are made per `receive_data` batch with one event of look-ahead: a response head
followed at once by the end of the message becomes `Response(is_fin=True)`; body pieces
are gathered and emitted as one `Data`, with `is_fin=True` when the end was in the same
batch (else a final `Data(is_fin=True, b"")` comes later). Trailers end a stream without a
final `Data`.

Ending. `Closed` is the last event of a core: `Closed("normal", killed)` after a response
that closes the connection (or after `shutdown()` drained), `Closed("closed", killed)`
when the peer hung up, `Closed(RemoteProtocolError, killed)` when the peer broke the
protocol; `killed` lists the streams this ended, in request order. After `Upgraded` the
core is finished and the bytes belong to the next protocol.
"""

from __future__ import annotations

import enum
import functools
import re
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

import h11

from gluegun_actors._types import Headers, StreamRef
from gluegun_actors.errors import (
    BadStateError,
    GluegunError,
    InvalidOptions,
    LocalProtocolError,
    MessageTooBig,
    RemoteProtocolError,
    StreamError,
)

DEFAULT_MAX_HEADER_BLOCK_SIZE: Final = 100_000
"""Largest response header block (status line, headers, or trailers) accepted, in bytes."""

_UNEXPECTED_PREVIEW: Final = 40
"""How many bytes of unexpected server data an error message quotes."""

# ---------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class Inform:
    """A 1xx informational response other than 101 (Gun's `gun_inform`)."""

    stream: StreamRef
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Response:
    """A final response head; `is_fin` means no body follows (Gun's `gun_response`)."""

    stream: StreamRef
    is_fin: bool
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Data:
    """Response body bytes; `is_fin` marks the last piece (Gun's `gun_data`)."""

    stream: StreamRef
    is_fin: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class Trailers:
    """Trailer fields of a chunked response; they end the stream (Gun's `gun_trailers`)."""

    stream: StreamRef
    headers: Headers


@dataclass(frozen=True, slots=True)
class Upgraded:
    """The server switched protocols for `stream` (101, or 2xx to CONNECT).

    `trailing_data` are the bytes after the response head: they belong to the new
    protocol. The core is finished afterwards.
    """

    stream: StreamRef
    status: int
    headers: Headers
    trailing_data: bytes


@dataclass(frozen=True, slots=True)
class StreamFailed:
    """One stream ended with `error`; the connection itself is not ended by this event."""

    stream: StreamRef
    error: GluegunError


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection must close now; `killed` are the streams this ended, in order.

    `reason` is `"normal"` (an orderly end), `"closed"` (the peer hung up) or the
    `RemoteProtocolError` that broke the connection.
    """

    reason: object
    killed: tuple[StreamRef, ...]


Event: TypeAlias = Inform | Response | Data | Trailers | Upgraded | StreamFailed | Closed

# ---------------------------------------------------------------------------
# States


class _Phase(enum.Enum):
    """The connection as a whole."""

    OPEN = "open"  # requests accepted
    CLOSING = "closing"  # no new requests; Closed("normal") once nothing is unfinished
    UPGRADED = "upgraded"  # a 101 (or CONNECT 2xx) arrived; the core is finished
    CLOSED = "closed"  # Closed was emitted; input is ignored


class _SendState(enum.Enum):
    """The request side of one exchange."""

    HELD_STREAMING = "held, body still coming"
    HELD_COMPLETE = "held, request complete"
    STREAMING = "written, body still coming"
    SENT = "written completely"


_RELEASE: Final = {
    _SendState.HELD_STREAMING: _SendState.STREAMING,
    _SendState.HELD_COMPLETE: _SendState.SENT,
}
"""What a held request becomes when it is written."""

_FINISH_BODY: Final = {
    _SendState.HELD_STREAMING: _SendState.HELD_COMPLETE,
    _SendState.STREAMING: _SendState.SENT,
}
"""What a streaming request becomes when its body ends."""

_WRITTEN: Final = frozenset({_SendState.STREAMING, _SendState.SENT})


class _RecvState(enum.Enum):
    """The response side of one exchange."""

    WAITING = "no final response yet"
    BODY = "final response head received"
    DONE = "response complete, or the stream ended otherwise"


class _Framing(enum.Enum):
    """How a request body is delimited on the wire."""

    NONE = "no body"
    LENGTH = "content-length"
    CHUNKED = "chunked"


class _Exchange:
    """One request and its response, as the core tracks them."""

    __slots__ = (
        "framing",
        "keep_alive",
        "method",
        "pending",
        "recv",
        "remaining",
        "send",
        "stream",
        "upgrade_header",
    )

    def __init__(self, stream: StreamRef, method: bytes, upgrade_header: bool) -> None:
        self.stream = stream
        self.method = method
        self.upgrade_header = upgrade_header
        self.send = _SendState.HELD_COMPLETE
        self.recv = _RecvState.WAITING
        self.framing = _Framing.NONE
        self.remaining = 0  # body bytes still owed under content-length framing
        self.pending: list[bytes] = []  # bytes of a held request, written on release
        self.keep_alive = True  # the response lets the connection carry on

    @property
    def switches(self) -> bool:
        """True for a request whose answer may switch protocols: hold what follows it."""
        return self.upgrade_header or self.method == b"CONNECT"

    def encode_body(self, data: bytes, is_fin: bool) -> list[bytes]:
        """Wire pieces for `data`; raises (changing nothing) when the framing forbids it."""
        size = len(data)
        if self.framing is _Framing.CHUNKED:
            out = [b"%x\r\n" % size, data, b"\r\n"] if size else []
            if is_fin:
                out.append(b"0\r\n\r\n")
            return out
        if self.framing is _Framing.LENGTH:
            if size > self.remaining:
                raise LocalProtocolError(
                    f"{self.stream!r}: {size} body bytes exceed the declared content-length "
                    f"({self.remaining} bytes still expected); nothing was sent"
                )
            if is_fin and size != self.remaining:
                raise LocalProtocolError(
                    f"{self.stream!r}: the body ends {self.remaining - size} bytes short of "
                    "its declared content-length; nothing was sent"
                )
            self.remaining -= size
            return [data] if size else []
        if size:
            raise LocalProtocolError(f"{self.stream!r} has no request body; nothing was sent")
        return []


# ---------------------------------------------------------------------------
# Helpers

_RawHeaders: TypeAlias = Sequence[tuple[bytes, bytes]]

_HOST_FORBIDDEN = re.compile(r"[\x00-\x20\x7f/?#@]")

# RFC 9110 5.1/5.5 and RFC 9112 3.2: the grammar a request line and its fields must follow.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
_DIGITS = re.compile(rb"[0-9]{1,20}")
_STATUS_101 = re.compile(rb"HTTP/1\.1 101(?: ((?:[ \t]|[^\x00\s])*))?")
_FIELD_LINE = re.compile(
    rb"(" + _TOKEN.pattern + rb"):[ \t]*(" + _FIELD_VALUE.pattern + rb")[ \t]*"
)


class _Invalid(Exception):
    """What makes a request one HTTP/1.1 forbids (the caller adds "nothing was sent")."""


def _request_head(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], host: bytes
) -> tuple[list[bytes], int | None, bool, bool, bool]:
    """Check a request against the grammar and serialize its head, without the blank line.

    Repeated `content-length` fields that agree collapse into one, `transfer-encoding` can
    only be `chunked`, and at most one `host` may be given (`host` goes first when none
    is). Returns the head's lines, the declared length, and whether it is chunked, offers
    an upgrade or asks to close.
    """
    if _TOKEN.fullmatch(method) is None:
        raise _Invalid(f"illegal method characters {method!r}")
    if _TARGET.fullmatch(target) is None:
        raise _Invalid(f"illegal target characters {target!r}")
    lines = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    content_length: bytes | None = None
    hosts = 0
    chunked = upgrade = closes = False
    for name, value in headers:
        if _TOKEN.fullmatch(name) is None:
            raise _Invalid(f"illegal header name {name!r}")
        if _FIELD_VALUE.fullmatch(value) is None:
            raise _Invalid(f"illegal header value {value!r}")
        key = name.lower()
        if key == b"content-length":
            lengths = {length.strip() for length in value.split(b",")}
            if len(lengths) != 1:
                raise _Invalid("conflicting content-length values")
            value = lengths.pop()
            if _DIGITS.fullmatch(value) is None:
                raise _Invalid(f"bad content-length {value!r}")
            if content_length is not None:
                if content_length != value:
                    raise _Invalid("conflicting content-length values")
                continue
            content_length = value
        elif key == b"transfer-encoding":
            if chunked:
                raise _Invalid("more than one transfer-encoding field")
            value = value.lower()
            if value != b"chunked":
                raise _Invalid(f"transfer-encoding {value!r}: only chunked is supported")
            chunked = True
        elif key == b"host":
            hosts += 1
            if hosts > 1:
                raise _Invalid("more than one host field")
        elif key == b"upgrade":
            upgrade = True
        elif key == b"connection":
            closes = closes or b"close" in (t.strip().lower() for t in value.split(b","))
        lines.append(b"%s: %s\r\n" % (name, value))
    if not hosts:
        lines.insert(1, b"host: %s\r\n" % host)
    length = None if content_length is None else int(content_length)
    return lines, length, chunked, upgrade, closes


def host_header_value(host: str, port: int, default_port: int) -> str:
    """The Host header for `host:port`: port left out when default, IPv6 bracketed."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port == default_port else f"{host}:{port}"


def _str_headers(headers: _RawHeaders) -> Headers:
    """Header pairs from h11 (lower-case names) as latin-1 str pairs."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def _comma_tokens(headers: _RawHeaders, name: bytes) -> set[bytes]:
    """Lower-cased comma-separated tokens of every `name` header."""
    tokens: set[bytes] = set()
    for key, value in headers:
        if key == name:
            tokens.update(token.strip().lower() for token in value.split(b","))
    return tokens


def _response_keeps_alive(event: h11.Response) -> bool:
    """Whether the connection can carry another response after this one (RFC 9112 9.3)."""
    tokens = _comma_tokens(event.headers, b"connection")
    if b"close" in tokens:
        return False
    return event.http_version != b"1.0" or b"keep-alive" in tokens


def _head_size(reason: bytes, headers: _RawHeaders) -> int:
    """Size of a parsed header block as it was on the wire (to within whitespace)."""
    size = 17 + len(reason)  # "HTTP/1.1 200 " + reason + CRLF, and the closing CRLF
    for name, value in headers:
        size += len(name) + len(value) + 4
    return size


@functools.lru_cache(maxsize=32)
def _stand_in(method: bytes, upgrade: bool) -> h11.Request:
    """A request that frames the answer as `method` (and an upgrade offer) would; immutable,
    so every connection shares one per kind."""
    headers = [(b"host", b"stand-in")]
    if upgrade:
        headers += [(b"connection", b"upgrade"), (b"upgrade", b"stand-in")]
    return h11.Request(method=method, target=b"/", headers=headers)


def _join(pieces: list[bytes]) -> bytes:
    """One immutable bytes object from `pieces` (h11 hands out bytearrays), copying once."""
    if len(pieces) == 1:
        piece = pieces[0]
        return piece if type(piece) is bytes else bytes(piece)
    return b"".join(pieces)


# ---------------------------------------------------------------------------
# The core


class Http1Client:
    """The HTTP/1.1 client side of one connection (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        default_port: int = 80,
        max_header_block_size: int = DEFAULT_MAX_HEADER_BLOCK_SIZE,
    ) -> None:
        if max_header_block_size < 1:
            raise InvalidOptions(
                f"max_header_block_size must be positive, got {max_header_block_size}"
            )
        value = host_header_value(host, port, default_port)
        if not value or _HOST_FORBIDDEN.search(value):
            raise LocalProtocolError(f"{host!r} cannot be used in a Host header")
        try:
            self._host = value.encode("ascii")
        except UnicodeEncodeError:
            self._host = value.encode("idna")
        self._max_head = max_header_block_size
        self._phase = _Phase.OPEN
        self._unfinished: OrderedDict[StreamRef, _Exchange] = OrderedDict()
        self._held: deque[_Exchange] = deque()
        self._sending: dict[StreamRef, _Exchange] = {}  # bodies still coming from the caller
        self._last_written: _Exchange | None = None
        self._current: _Exchange | None = None  # the exchange the parser is reading
        self._upgraded_stream: StreamRef | None = None
        self._outbox: list[bytes] = []
        self._parser = self._new_parser(b"")

    # -- properties ---------------------------------------------------------

    @property
    def unfinished(self) -> tuple[StreamRef, ...]:
        """Accepted requests whose response is not complete, in request order."""
        return tuple(self._unfinished)

    @property
    def is_closed(self) -> bool:
        """True once `Closed` was emitted: no more input is taken."""
        return self._phase is _Phase.CLOSED

    @property
    def upgraded(self) -> bool:
        """True once `Upgraded` was emitted."""
        return self._upgraded_stream is not None

    # -- commands -----------------------------------------------------------

    def request(
        self,
        stream: StreamRef,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | None = None,
        *,
        is_fin: bool = True,
    ) -> None:
        """Queue a request; with `is_fin=False` its body follows in `data()` calls.

        Raises `BadStateError` when the connection takes no more requests and
        `LocalProtocolError` for a request HTTP/1.1 forbids; either way nothing is queued.
        """
        self._check_accepting(stream)
        exchange, closes = self._prepare(stream, method, target, headers, body, is_fin)
        self._unfinished[stream] = exchange
        self._held.append(exchange)
        if not is_fin:
            self._sending[stream] = exchange
        if closes:
            self._phase = _Phase.CLOSING
        self._pump()

    def data(self, stream: StreamRef, data: bytes, is_fin: bool) -> None:
        """Queue more of the request body of `stream`; `is_fin` ends it."""
        if self._phase is _Phase.CLOSED or self._phase is _Phase.UPGRADED:
            raise BadStateError(
                f"cannot send a body for {stream!r}: the connection is {self._phase.value}"
            )
        exchange = self._sending.get(stream)
        if exchange is None:
            raise BadStateError(
                f"{stream!r} is not streaming a request body (it was never started with "
                "is_fin=False, it already ended, or it failed)"
            )
        if type(data) is not bytes:
            data = bytes(data)
        pieces = exchange.encode_body(data, is_fin)
        if exchange.send is _SendState.STREAMING:
            self._outbox.extend(pieces)
        else:
            exchange.pending.extend(pieces)
        if is_fin:
            exchange.send = _FINISH_BODY[exchange.send]
            del self._sending[stream]
            self._pump()

    def shutdown(self) -> list[Event]:
        """Close gracefully: let the in-flight response finish, fail the streams behind it."""
        if self._phase is _Phase.CLOSED:
            return []
        if self._phase is _Phase.UPGRADED:
            raise BadStateError("the connection was upgraded: the HTTP/1.1 core no longer runs it")
        events: list[Event] = []
        exchanges = list(self._unfinished.values())
        in_flight = exchanges[0] if exchanges and exchanges[0].send in _WRITTEN else None
        for exchange in exchanges:
            if exchange is not in_flight:
                self._fail(
                    events,
                    exchange,
                    StreamError(
                        "the connection is shutting down; this request will not be answered",
                        exchange.stream,
                        reason="shutdown",
                    ),
                )
        self._held.clear()
        if in_flight is None:
            self._close(events, "normal")
        else:
            self._phase = _Phase.CLOSING
        return events

    def data_to_send(self) -> bytes:
        """The bytes queued for the socket since the last call (drains the outbox)."""
        outbox = self._outbox
        if not outbox:
            return b""
        out = _join(outbox)
        self._outbox = []
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse bytes from the socket (`b""` = the peer closed) into events.

        After `Closed` input is ignored; after `Upgraded` it raises `BadStateError`,
        because those bytes belong to the new protocol and would be lost here.
        """
        if self._phase is _Phase.CLOSED:
            return []
        if self._phase is _Phase.UPGRADED:
            raise BadStateError(
                "the connection was upgraded: hand its bytes to the new protocol, not HTTP/1.1"
            )
        events: list[Event] = []
        if data.startswith(b"HTTP/1.1 101") and self._switch_at_once(events, data):
            return events
        self._parser.receive_data(data)
        self._parse(events, eof=not data)
        self._pump()
        return events

    # -- sending ------------------------------------------------------------

    def _check_accepting(self, stream: StreamRef) -> None:
        match self._phase:
            case _Phase.OPEN:
                pass
            case _Phase.CLOSING:
                raise BadStateError(
                    "the connection is closing (shutdown, a connection: close request or "
                    "response) and takes no more requests; open a new connection"
                )
            case _Phase.UPGRADED:
                raise BadStateError("the connection was upgraded and takes no more HTTP requests")
            case _Phase.CLOSED:
                raise BadStateError("the connection is closed; open a new connection")
        if stream in self._unfinished or stream in self._sending:
            raise BadStateError(f"{stream!r} is already in use on this connection")

    def _prepare(
        self,
        stream: StreamRef,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | None,
        is_fin: bool,
    ) -> tuple[_Exchange, bool]:
        """Validate and serialize a request; returns it and whether it asks to close."""
        try:
            raw_method = method.encode("ascii")
            raw_target = target.encode("ascii")
        except UnicodeEncodeError:
            raise LocalProtocolError(
                f"the method and target must be ASCII (percent-encode the target): "
                f"{method!r} {target!r}; nothing was sent"
            ) from None
        try:
            raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        except UnicodeEncodeError:
            raise LocalProtocolError(
                f"header names and values must be latin-1 text: {headers!r}; nothing was sent"
            ) from None
        try:
            head, content_length, chunked, upgrade, closes = _request_head(
                raw_method, raw_target, raw, self._host
            )
        except _Invalid as exc:
            raise LocalProtocolError(
                f"invalid request {method} {target}: {exc}; nothing was sent"
            ) from None
        if chunked and content_length is not None:
            raise LocalProtocolError(
                "a request cannot carry both content-length and transfer-encoding; nothing was sent"
            )
        if body is not None and type(body) is not bytes:
            body = bytes(body)

        exchange = _Exchange(stream, raw_method, upgrade)
        if chunked:
            exchange.framing = _Framing.CHUNKED
        elif content_length is not None:
            exchange.framing = _Framing.LENGTH
            exchange.remaining = content_length
        elif not is_fin:
            exchange.framing = _Framing.CHUNKED
            head.append(b"transfer-encoding: chunked\r\n")
        elif body is not None:
            exchange.framing = _Framing.LENGTH
            exchange.remaining = len(body)
            head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"\r\n")
        exchange.pending = [b"".join(head)]
        exchange.pending.extend(exchange.encode_body(body or b"", is_fin))
        exchange.send = _SendState.HELD_COMPLETE if is_fin else _SendState.HELD_STREAMING
        return exchange, closes

    def _pump(self) -> None:
        """Write held requests, in order, as far as the request in front of them allows."""
        if self._phase is not _Phase.OPEN and self._phase is not _Phase.CLOSING:
            return
        held = self._held
        while held:
            last = self._last_written
            if last is not None and (
                last.send is _SendState.STREAMING
                or (last.switches and last.recv is _RecvState.WAITING)
            ):
                return
            exchange = held.popleft()
            self._outbox.extend(exchange.pending)
            exchange.pending = []
            exchange.send = _RELEASE[exchange.send]
            self._last_written = exchange

    # -- receiving ----------------------------------------------------------

    def _new_parser(self, leftover: bytes) -> h11.Connection:
        parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._max_head)
        if leftover:
            parser.receive_data(leftover)
        return parser

    def _prime(self, exchange: _Exchange) -> None:
        """Show the parser a stand-in for `exchange`'s request, so it frames the answer right."""
        self._parser.send(_stand_in(exchange.method, exchange.upgrade_header))
        self._parser.send(h11.EndOfMessage())
        self._current = exchange

    def _first_written(self) -> _Exchange | None:
        """The oldest unanswered request, if it is on the wire (only it can be answered)."""
        if not self._unfinished:
            return None
        exchange = next(iter(self._unfinished.values()))
        return exchange if exchange.send in _WRITTEN else None

    def _parse(self, events: list[Event], eof: bool) -> None:
        """Turn what the parser holds into events, across as many responses as it holds."""
        pieces: list[bytes] = []  # body bytes of `exchange` not emitted yet
        head: h11.Response | None = None  # response head not emitted yet (look-ahead)
        exchange = self._current
        while True:
            if exchange is None:
                exchange = self._first_written()
                if exchange is None:
                    self._idle_input(events, eof)
                    return
                self._prime(exchange)
            try:
                event = self._parser.next_event()
            except h11.RemoteProtocolError as exc:
                self._flush(events, exchange, head, pieces)
                self._close(events, "closed" if eof else self._remote_error(exc, exchange))
                return
            if isinstance(event, h11.Data):
                pieces.append(event.data)
            elif event is h11.NEED_DATA:
                self._flush(events, exchange, head, pieces)
                return
            elif isinstance(event, h11.EndOfMessage):
                trailers = event.headers
                stream = exchange.stream
                if trailers and _head_size(b"", trailers) > self._max_head:
                    self._flush(events, exchange, head, pieces)
                    self._close(events, self._too_big("trailer block", exchange))
                    return
                if head is not None and not pieces and not trailers:
                    events.append(
                        Response(stream, True, head.status_code, _str_headers(head.headers))
                    )
                else:
                    self._flush(events, exchange, head, [])
                    if trailers:
                        if pieces:
                            events.append(Data(stream, False, _join(pieces)))
                        events.append(Trailers(stream, _str_headers(trailers)))
                    else:
                        events.append(Data(stream, True, _join(pieces) if pieces else b""))
                head = None
                pieces = []
                if not self._complete(events, exchange, eof):
                    return
                exchange = None
            elif isinstance(event, h11.Response):
                if _head_size(event.reason, event.headers) > self._max_head:
                    self._close(events, self._too_big("header block", exchange))
                    return
                exchange.recv = _RecvState.BODY
                exchange.keep_alive = _response_keeps_alive(event)
                if self._parser.their_state is h11.SWITCHED_PROTOCOL:
                    trailing = self._parser.trailing_data[0]
                    self._upgrade(events, exchange, event.status_code, event.headers, trailing)
                    return
                head = event
            elif isinstance(event, h11.InformationalResponse):
                if _head_size(event.reason, event.headers) > self._max_head:
                    self._close(events, self._too_big("header block", exchange))
                    return
                if event.status_code == 101:
                    self._upgrade(
                        events, exchange, 101, event.headers, self._parser.trailing_data[0]
                    )
                    return
                events.append(
                    Inform(exchange.stream, event.status_code, _str_headers(event.headers))
                )
            else:  # ConnectionClosed or PAUSED: the response cannot go on
                self._flush(events, exchange, head, pieces)
                self._close(events, "closed")
                return

    def _switch_at_once(self, events: list[Event], data: bytes) -> bool:
        """The common WebSocket case without the parser: a whole, plain 101 head in one read.

        Taken only when the parser holds nothing and the oldest request on the wire offered
        an upgrade; a head it is not sure of (split, folded, bare line feeds, a field outside
        the grammar, content-length or transfer-encoding, near the size limit) is left to
        h11, so what is accepted, and the events, are the same either way.
        """
        if self._current is not None or self._parser.trailing_data[0]:
            return False
        exchange = self._first_written()
        if exchange is None or not exchange.upgrade_header:
            return False
        end = data.find(b"\r\n\r\n", 0, self._max_head)
        if end < 0:
            return False
        status_line, *lines = data[:end].split(b"\r\n")
        status = _STATUS_101.fullmatch(status_line)
        if status is None:
            return False
        headers = []
        for line in lines:
            field = _FIELD_LINE.fullmatch(line)
            if field is None:
                return False
            name = field[1].lower()
            if name == b"content-length" or name == b"transfer-encoding":
                return False
            headers.append((name, field[2]))
        if _head_size(status[1] or b"", headers) > self._max_head:
            return False
        self._upgrade(events, exchange, 101, headers, data[end + 4 :])
        return True

    def _flush(
        self,
        events: list[Event],
        exchange: _Exchange,
        head: h11.Response | None,
        pieces: list[bytes],
    ) -> None:
        """Emit a held-back head and body pieces of `exchange`, none of them final."""
        if head is not None:
            events.append(
                Response(exchange.stream, False, head.status_code, _str_headers(head.headers))
            )
        if pieces:
            events.append(Data(exchange.stream, False, _join(pieces)))

    def _idle_input(self, events: list[Event], eof: bool) -> None:
        """Input while no request on the wire awaits an answer."""
        if eof:
            self._close(events, "closed")
            return
        leftover = self._parser.trailing_data[0]
        if leftover:
            preview = leftover[:_UNEXPECTED_PREVIEW]
            self._close(
                events,
                RemoteProtocolError(
                    f"unexpected data from the server while no request awaited an answer: "
                    f"{preview!r}{'...' if len(leftover) > len(preview) else ''}"
                ),
            )

    def _complete(self, events: list[Event], exchange: _Exchange, eof: bool) -> bool:
        """Finish `exchange`'s response; returns whether the connection carries on."""
        self._unfinished.popitem(last=False)
        exchange.recv = _RecvState.DONE
        self._current = None
        if eof or not exchange.keep_alive:
            self._close(events, "normal")
            return False
        if self._phase is _Phase.CLOSING and not self._unfinished:
            self._close(events, "normal")
            return False
        parser = self._parser
        if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
            parser.start_next_cycle()
        else:  # an HTTP/1.0 keep-alive response: h11 will not reuse the parser
            self._parser = self._new_parser(parser.trailing_data[0])
        return True

    def _upgrade(
        self,
        events: list[Event],
        exchange: _Exchange,
        status: int,
        headers: _RawHeaders,
        trailing: bytes,
    ) -> None:
        """The server switched protocols: hand over, and fail the requests never sent."""
        self._unfinished.popitem(last=False)
        exchange.recv = _RecvState.DONE
        self._current = None
        self._upgraded_stream = exchange.stream
        events.append(Upgraded(exchange.stream, status, _str_headers(headers), trailing))
        for held in list(self._unfinished.values()):
            self._fail(
                events,
                held,
                BadStateError(
                    f"the connection was upgraded by {exchange.stream!r} before this request "
                    "was sent; send it on another connection"
                ),
            )
        self._held.clear()
        self._sending.clear()
        if self._phase is _Phase.CLOSING:
            self._close(events, "normal")
        else:
            self._phase = _Phase.UPGRADED

    # -- ending -------------------------------------------------------------

    def _fail(self, events: list[Event], exchange: _Exchange, error: GluegunError) -> None:
        del self._unfinished[exchange.stream]
        self._sending.pop(exchange.stream, None)
        exchange.recv = _RecvState.DONE
        events.append(StreamFailed(exchange.stream, error))

    def _close(self, events: list[Event], reason: object) -> None:
        """Emit `Closed`, killing every unfinished stream, and stop."""
        events.append(Closed(reason, tuple(self._unfinished)))
        self._phase = _Phase.CLOSED
        self._unfinished.clear()
        self._held.clear()
        self._sending.clear()
        self._outbox.clear()
        self._current = None

    def _remote_error(self, exc: h11.RemoteProtocolError, exchange: _Exchange) -> GluegunError:
        if exc.error_status_hint == 431:
            what = (
                "header block" if exchange.recv is _RecvState.WAITING else "chunk line or trailer"
            )
            return self._too_big(what, exchange)
        return RemoteProtocolError(
            f"the server sent a malformed HTTP/1.1 response to {exchange.stream!r} "
            f"({exchange.method.decode('ascii')}): {exc}"
        )

    def _too_big(self, what: str, exchange: _Exchange) -> MessageTooBig:
        return MessageTooBig(
            f"the server's response {what} for {exchange.stream!r} is larger than "
            f"max_header_block_size ({self._max_head} bytes)"
        )

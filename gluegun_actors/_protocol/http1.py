"""Sans-IO HTTP/1.1 client core: commands and bytes in, Gun-style events and bytes out.

Theory of operation
-------------------
One `Http1Client` serves one TCP connection. The connection actor calls `request()`,
`data()` and `shutdown()` for user commands, writes `data_to_send()` to the socket after
every call, and feeds what the socket reads to `receive_data()` (`b""` is end of file).
Nothing here touches a socket, a thread or a clock.

Sending. Each request is checked against HTTP/1.1's grammar and serialized in one pass
(`http1_request`), so a bad request raises
`LocalProtocolError` from `request()` before a byte is queued. Requests are
written in order, one after another on the wire (pipelining); a request is *held* (kept
in memory, not written) while an earlier request still streams its body, and while an
upgrade request (an `upgrade` header, or CONNECT) waits for its answer. Held requests are
written as soon as the request in front of them allows it. Each request moves through
the `SendState` table (`http1_exchange`); the connection as a whole through `_Phase`.

Receiving. h11 handles one request/response cycle at a time and cannot pipeline, but its
response parser is exactly what is needed: framing by content-length, chunked (which
wins), read-until-close, no body for HEAD/204/304, 1xx informs, trailers, 101 switching.
So one h11 client `Connection` is used as a parser only: before it parses the response of
the oldest unanswered request, it is shown a stand-in request with that request's method
(and its `upgrade` header), which never reaches the wire; when the response ends the
parser starts its next cycle, keeping the bytes it has not parsed yet. One case skips the
parser: a plain 101 head that arrives whole in one read for an upgrade request, as nearly
every WebSocket handshake does, is checked by the same grammar
(`http1_response.whole_101`; anything else about it is left to h11, so both ways accept
and emit the same).

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
from collections import OrderedDict, deque
from typing import Final

import h11

from gluegun_actors._protocol.http1_events import (
    Closed,
    Data,
    Event,
    Inform,
    Response,
    StreamFailed,
    Trailers,
    Upgraded,
)
from gluegun_actors._protocol.http1_exchange import (
    FINISH_BODY,
    RELEASE,
    WRITTEN,
    Exchange,
    RecvState,
    SendState,
)
from gluegun_actors._protocol.http1_request import (
    HOST_FORBIDDEN,
    host_header_value,
    prepare_request,
)
from gluegun_actors._protocol.http1_response import (
    RawHeaders,
    head_size,
    join_pieces,
    response_keeps_alive,
    stand_in,
    str_headers,
    whole_101,
)
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

__all__ = [
    "DEFAULT_MAX_HEADER_BLOCK_SIZE",
    "MAX_INFORMS",
    "Closed",
    "Data",
    "Event",
    "Http1Client",
    "Inform",
    "Response",
    "StreamFailed",
    "Trailers",
    "Upgraded",
]

DEFAULT_MAX_HEADER_BLOCK_SIZE: Final = 100_000
"""Largest response header block (status line, headers, or trailers) accepted, in bytes."""
MAX_INFORMS: Final = 32
"""Most informational (1xx) responses accepted before a final one; more is a flood."""

_UNEXPECTED_PREVIEW: Final = 40
"""How many bytes of unexpected server data an error message quotes."""


class _Phase(enum.Enum):
    """The connection as a whole."""

    OPEN = "open"  # requests accepted
    CLOSING = "closing"  # no new requests; Closed("normal") once nothing is unfinished
    ENDING = "ending"  # the server said it closes after the response in flight: no new
    # requests and nothing more written; Closed("normal") when that response ends
    UPGRADED = "upgraded"  # a 101 (or CONNECT 2xx) arrived; the core is finished
    CLOSED = "closed"  # Closed was emitted; input is ignored


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
        if not value or HOST_FORBIDDEN.search(value):
            raise LocalProtocolError(f"{host!r} cannot be used in a Host header")
        try:
            self._host = value.encode("ascii")
        except UnicodeEncodeError:
            self._host = value.encode("idna")
        self._max_head = max_header_block_size
        self._phase = _Phase.OPEN
        self._unfinished: OrderedDict[StreamRef, Exchange] = OrderedDict()
        self._held: deque[Exchange] = deque()
        self._sending: dict[StreamRef, Exchange] = {}  # bodies still coming from the caller
        self._last_written: Exchange | None = None
        self._current: Exchange | None = None  # the exchange the parser is reading
        self._upgraded_stream: StreamRef | None = None
        self._outbox: list[bytes] = []
        self._parser = self._new_parser(b"")

    # -- properties ---------------------------------------------------------

    @property
    def unfinished(self) -> tuple[StreamRef, ...]:
        """Accepted requests whose response is not complete, in request order."""
        return tuple(self._unfinished)

    @property
    def accepting(self) -> bool:
        """True while `request()` takes new requests: not closing, upgraded or closed.

        A caller holding a request when it turns False sends it on another connection.
        """
        return self._phase is _Phase.OPEN

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
        exchange, closes = prepare_request(
            stream, method, target, headers, body, is_fin, self._host
        )
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
        if exchange.send is SendState.STREAMING:
            self._outbox.extend(pieces)
        else:
            exchange.pending.extend(pieces)
        if is_fin:
            exchange.send = FINISH_BODY[exchange.send]
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
        in_flight = exchanges[0] if exchanges and exchanges[0].send in WRITTEN else None
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

    def keepalive(self) -> bool:
        """Queue an empty line if the connection is idle (nothing in flight, nothing held):
        Gun's HTTP keepalive. Returns whether it did."""
        if self._phase is not _Phase.OPEN or self._unfinished or self._held:
            return False
        self._outbox.append(b"\r\n")
        return True

    def data_to_send(self) -> bytes:
        """The bytes queued for the socket since the last call (drains the outbox)."""
        outbox = self._outbox
        if not outbox:
            return b""
        out = join_pieces(outbox)
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
            case _Phase.CLOSING | _Phase.ENDING:
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

    def _pump(self) -> None:
        """Write held requests, in order, as far as the request in front of them allows."""
        if self._phase is not _Phase.OPEN and self._phase is not _Phase.CLOSING:
            return
        held = self._held
        while held:
            last = self._last_written
            if last is not None and (
                last.send is SendState.STREAMING
                or (last.switches and last.recv is RecvState.WAITING)
            ):
                return
            exchange = held.popleft()
            self._outbox.extend(exchange.pending)
            exchange.pending = []
            exchange.send = RELEASE[exchange.send]
            self._last_written = exchange

    # -- receiving ----------------------------------------------------------

    def _new_parser(self, leftover: bytes) -> h11.Connection:
        parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._max_head)
        if leftover:
            parser.receive_data(leftover)
        return parser

    def _prime(self, exchange: Exchange) -> None:
        """Show the parser a stand-in for `exchange`'s request, so it frames the answer right."""
        self._parser.send(stand_in(exchange.method, exchange.upgrade_header))
        self._parser.send(h11.EndOfMessage())
        self._current = exchange

    def _first_written(self) -> Exchange | None:
        """The oldest unanswered request, if it is on the wire (only it can be answered)."""
        if not self._unfinished:
            return None
        exchange = next(iter(self._unfinished.values()))
        return exchange if exchange.send in WRITTEN else None

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
                if trailers and head_size(b"", trailers) > self._max_head:
                    self._flush(events, exchange, head, pieces)
                    self._close(events, self._too_big("trailer block", exchange))
                    return
                if head is not None and not pieces and not trailers:
                    events.append(
                        Response(stream, True, head.status_code, str_headers(head.headers))
                    )
                else:
                    self._flush(events, exchange, head, [])
                    if trailers:
                        if pieces:
                            events.append(Data(stream, False, join_pieces(pieces)))
                        events.append(Trailers(stream, str_headers(trailers)))
                    else:
                        events.append(Data(stream, True, join_pieces(pieces) if pieces else b""))
                head = None
                pieces = []
                if not self._complete(events, exchange, eof):
                    return
                exchange = None
            elif isinstance(event, h11.Response):
                if head_size(event.reason, event.headers) > self._max_head:
                    self._close(events, self._too_big("header block", exchange))
                    return
                exchange.recv = RecvState.BODY
                exchange.keep_alive = response_keeps_alive(event)
                if not exchange.keep_alive and self._phase is not _Phase.CLOSED:
                    self._phase = _Phase.ENDING  # take nothing more, write nothing more
                if self._parser.their_state is h11.SWITCHED_PROTOCOL:
                    trailing = self._parser.trailing_data[0]
                    self._upgrade(events, exchange, event.status_code, event.headers, trailing)
                    return
                head = event
            elif isinstance(event, h11.InformationalResponse):
                if head_size(event.reason, event.headers) > self._max_head:
                    self._close(events, self._too_big("header block", exchange))
                    return
                if event.status_code == 101:
                    self._upgrade(
                        events, exchange, 101, event.headers, self._parser.trailing_data[0]
                    )
                    return
                exchange.informs += 1
                if exchange.informs > MAX_INFORMS:
                    error = RemoteProtocolError(
                        f"the server sent more than {MAX_INFORMS} informational (1xx) "
                        f"responses before the final one for {exchange.stream!r}"
                    )
                    self._close(events, error)
                    return
                events.append(
                    Inform(exchange.stream, event.status_code, str_headers(event.headers))
                )
            else:  # ConnectionClosed or PAUSED: the response cannot go on
                self._flush(events, exchange, head, pieces)
                self._close(events, "closed")
                return

    def _switch_at_once(self, events: list[Event], data: bytes) -> bool:
        """The common WebSocket case without the parser: a whole, plain 101 head in one read.

        Taken only when the parser holds nothing and the oldest request on the wire offered
        an upgrade; `whole_101` leaves every head it is not sure of to h11.
        """
        if self._current is not None or self._parser.trailing_data[0]:
            return False
        exchange = self._first_written()
        if exchange is None or not exchange.upgrade_header:
            return False
        head = whole_101(data, self._max_head)
        if head is None:
            return False
        headers, trailing = head
        self._upgrade(events, exchange, 101, headers, trailing)
        return True

    def _flush(
        self,
        events: list[Event],
        exchange: Exchange,
        head: h11.Response | None,
        pieces: list[bytes],
    ) -> None:
        """Emit a held-back head and body pieces of `exchange`, none of them final."""
        if head is not None:
            events.append(
                Response(exchange.stream, False, head.status_code, str_headers(head.headers))
            )
        if pieces:
            events.append(Data(exchange.stream, False, join_pieces(pieces)))

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

    def _complete(self, events: list[Event], exchange: Exchange, eof: bool) -> bool:
        """Finish `exchange`'s response; returns whether the connection carries on."""
        self._unfinished.popitem(last=False)
        exchange.recv = RecvState.DONE
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
        exchange: Exchange,
        status: int,
        headers: RawHeaders,
        trailing: bytes,
    ) -> None:
        """The server switched protocols: hand over, and fail the requests never sent."""
        self._unfinished.popitem(last=False)
        exchange.recv = RecvState.DONE
        self._current = None
        self._upgraded_stream = exchange.stream
        events.append(Upgraded(exchange.stream, status, str_headers(headers), trailing))
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

    def _fail(self, events: list[Event], exchange: Exchange, error: GluegunError) -> None:
        del self._unfinished[exchange.stream]
        self._sending.pop(exchange.stream, None)
        exchange.recv = RecvState.DONE
        events.append(StreamFailed(exchange.stream, error))

    def _close(self, events: list[Event], reason: object) -> None:
        """Emit `Closed`, killing every unfinished stream, and stop."""
        unsent = tuple(ref for ref, ex in self._unfinished.items() if ex.send not in WRITTEN)
        events.append(Closed(reason, tuple(self._unfinished), unsent))
        self._phase = _Phase.CLOSED
        self._unfinished.clear()
        self._held.clear()
        self._sending.clear()
        self._outbox.clear()
        self._current = None

    def _remote_error(self, exc: h11.RemoteProtocolError, exchange: Exchange) -> GluegunError:
        if exc.error_status_hint == 431:
            what = "header block" if exchange.recv is RecvState.WAITING else "chunk line or trailer"
            return self._too_big(what, exchange)
        return RemoteProtocolError(
            f"the server sent a malformed HTTP/1.1 response to {exchange.stream!r} "
            f"({exchange.method.decode('ascii')}): {exc}"
        )

    def _too_big(self, what: str, exchange: Exchange) -> MessageTooBig:
        return MessageTooBig(
            f"the server's response {what} for {exchange.stream!r} is larger than "
            f"max_header_block_size ({self._max_head} bytes)"
        )

"""HTTP/1.1 requests over a connection (Gun's `gun:get`, `gun:post`, `gun:await`...).

Starting a request returns its `StreamRef` at once (no round trip); the response arrives
as `GunInform` / `GunResponse` / `GunData` / `GunTrailers` messages in the owner's mailbox,
which `await_response`, `await_body` and `await_next` read selectively. Requests made while
the connection is down wait for the next `GunUp`. Invalid input raises here, before
anything is sent.
"""

from __future__ import annotations

from typing import Any

import pykka

from gluegun_actors._await import MessageFuture, future, wait
from gluegun_actors._awaited import BodyAndTrailersWait, BodyWait, NextWait, ResponseWait
from gluegun_actors._checks import check_connection, check_headers, check_reply_to, check_stream
from gluegun_actors._connection import commands
from gluegun_actors._connection.handle import Connection
from gluegun_actors._protocol.http1_request import check_request
from gluegun_actors._timeouts import Timeout
from gluegun_actors._types import Headers, Protocol, StreamRef
from gluegun_actors.errors import BadStateError, InvalidArgument
from gluegun_actors.events import GunResponse
from gluegun_actors.mailbox import Mailbox

__all__ = [
    "await_body",
    "await_body_and_trailers",
    "await_body_future",
    "await_next",
    "await_next_future",
    "await_response",
    "await_response_future",
    "cancel",
    "data",
    "delete",
    "get",
    "head",
    "headers",
    "options",
    "patch",
    "post",
    "put",
    "request",
]

HeadersIn = Headers | list[tuple[str | bytes, str | bytes]] | tuple[Any, ...] | dict[str, str]
Body = bytes | bytearray | memoryview | str


ReplyTo = Mailbox | pykka.ActorRef[Any] | None
"""Where a stream's messages go: a `Mailbox`, a Pykka `ActorRef`, or None for the caller
(the calling Pykka actor, else the calling thread's `mailbox.current()`), as in Gun."""


def get(
    conn: Connection, path: str, headers: HeadersIn = (), *, reply_to: ReplyTo = None
) -> StreamRef:
    """GET `path`; returns the stream at once (Gun's `gun:get`).

    `headers` is a list of `(name, value)` pairs (str or bytes) or a dict. The response
    goes to `reply_to` (default: the caller). Errors as `request`.

    Example:
        ```python
        stream = http.get(conn, "/status", [("accept", "application/json")])
        response = http.await_response(conn, stream, 5000)
        body = http.await_body(conn, stream, 5000) if not response.is_fin else b""
        ```
    """
    return request(conn, "GET", path, headers, reply_to=reply_to)


def head(
    conn: Connection, path: str, headers: HeadersIn = (), *, reply_to: ReplyTo = None
) -> StreamRef:
    """HEAD `path`: the response has no body (`GunResponse.is_fin` is True).

    Errors as `request`.

    Example:
        ```python
        response = http.await_response(conn, http.head(conn, "/file"), 5000)
        size = dict(response.headers).get("content-length")
        ```
    """
    return request(conn, "HEAD", path, headers, reply_to=reply_to)


def delete(
    conn: Connection, path: str, headers: HeadersIn = (), *, reply_to: ReplyTo = None
) -> StreamRef:
    """DELETE `path` (Gun's `gun:delete`). Errors as `request`.

    Example:
        ```python
        status = http.await_response(conn, http.delete(conn, "/items/7"), 5000).status
        ```
    """
    return request(conn, "DELETE", path, headers, reply_to=reply_to)


def options(
    conn: Connection, path: str, headers: HeadersIn = (), *, reply_to: ReplyTo = None
) -> StreamRef:
    """OPTIONS `path` (`"*"` asks about the server as a whole). Errors as `request`.

    Example:
        ```python
        response = http.await_response(conn, http.options(conn, "*"), 5000)
        ```
    """
    return request(conn, "OPTIONS", path, headers, reply_to=reply_to)


def post(
    conn: Connection, path: str, headers: HeadersIn, body: Body, *, reply_to: ReplyTo = None
) -> StreamRef:
    """POST `body` (bytes, or str sent as UTF-8) to `path`, with its content-length.

    Gun's `gun:post`. Errors as `request`; a body of another type is `InvalidArgument`.

    Example:
        ```python
        stream = http.post(conn, "/echo", [("content-type", "application/json")], b'{"a": 1}')
        reply = http.await_body(conn, stream, 5000)
        ```
    """
    return request(conn, "POST", path, headers, body, reply_to=reply_to)


def put(
    conn: Connection, path: str, headers: HeadersIn, body: Body, *, reply_to: ReplyTo = None
) -> StreamRef:
    """PUT `body` (bytes, or str sent as UTF-8) to `path`. Errors as `request`.

    Example:
        ```python
        stream = http.put(conn, "/items/7", [("content-type", "text/plain")], "seven")
        ```
    """
    return request(conn, "PUT", path, headers, body, reply_to=reply_to)


def patch(
    conn: Connection, path: str, headers: HeadersIn, body: Body, *, reply_to: ReplyTo = None
) -> StreamRef:
    """PATCH `path` with `body` (bytes, or str sent as UTF-8). Errors as `request`.

    Example:
        ```python
        stream = http.patch(conn, "/items/7", [], b'{"name": "eight"}')
        ```
    """
    return request(conn, "PATCH", path, headers, body, reply_to=reply_to)


def request(
    conn: Connection,
    method: str,
    path: str,
    headers: HeadersIn = (),
    body: Body | None = None,
    *,
    reply_to: ReplyTo = None,
) -> StreamRef:
    """Send a request with a whole body (or none); returns the stream at once.

    The response comes as `GunInform` / `GunResponse` / `GunData` / `GunTrailers` to
    `reply_to`. A request made while the connection is down waits for the next `GunUp`.
    Gun's `gun:request`. Every check is made in the caller, before anything is sent.

    Raises:
        InvalidArgument: a method that is not an upper-case str, an empty path, headers
            that are not `(name, value)` pairs, a body that is not bytes or str.
        LocalProtocolError: a request HTTP/1.1 forbids (a header name that is not a
            token, CR/LF/NUL in a value, a space in the path).
        BadStateError: the connection was upgraded to WebSocket.
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        stream = http.request(conn, "PROPFIND", "/dav/", [("depth", "1")], None)
        response = http.await_response(conn, stream, 5000)
        ```
    """
    data = None if body is None else _bytes(body)
    return _start(conn, method, path, headers, data, True, reply_to)


def headers(
    conn: Connection, method: str, path: str, headers: HeadersIn, *, reply_to: ReplyTo = None
) -> StreamRef:
    """Start a request whose body follows with `data` (chunked unless content-length is set).

    Gun's `gun:headers`. Later requests on the connection wait until this body's last
    piece is sent. Errors as `request`.

    Example:
        ```python
        stream = http.headers(conn, "POST", "/upload", [("content-type", "text/csv")])
        http.data(conn, stream, False, b"a,b\\n")
        http.data(conn, stream, True, b"1,2\\n")
        ```
    """
    return _start(conn, method, path, headers, None, False, reply_to)


def data(conn: Connection, stream: StreamRef, is_fin: bool, data: Body) -> None:
    """Send a piece of a streamed request body; `is_fin=True` on the last one.

    Gun's `gun:data` (`is_fin` is a bool here, Gun's `fin` / `nofin`).

    Raises:
        InvalidArgument: `is_fin` is not a bool, `data` is not bytes or str.
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        for chunk in chunks:
            http.data(conn, stream, False, chunk)
        http.data(conn, stream, True, b"")
        ```
    """
    check_connection(conn)
    check_stream(stream)
    if not isinstance(is_fin, bool):
        raise InvalidArgument(f"is_fin must be a bool, got {is_fin!r}")
    conn.tell(commands.RequestData(stream, _bytes(data), is_fin))


def cancel(conn: Connection, stream: StreamRef) -> None:
    """Stop delivering the stream's messages (the response is still read off the wire).

    A stream the connection does not know is reported as a `GunError` with a
    `BadStateError`, as Gun reports it (`gun:cancel`). Messages already delivered stay:
    `connection.flush(stream, conn)` cancels and removes them.

    Raises:
        ConnectionTerminated: the connection has stopped.

    Example:
        ```python
        stream = http.get(conn, "/huge")
        http.cancel(conn, stream)
        ```
    """
    check_connection(conn)
    conn.tell(commands.Cancel(check_stream(stream)))


def _start(
    conn: Connection,
    method: str,
    path: str,
    headers: HeadersIn,
    body: bytes | None,
    fin: bool,
    reply_to: ReplyTo,
) -> StreamRef:
    check_connection(conn)
    if not isinstance(method, str) or not method or not method.isascii() or not method.isupper():
        raise InvalidArgument(f"method must be an upper-case str such as 'GET', got {method!r}")
    if not isinstance(path, str) or not path:
        raise InvalidArgument(f"path must be a non-empty str such as '/', got {path!r}")
    checked = check_headers(headers)
    check_request(method, path, checked)
    target = check_reply_to(reply_to)
    if conn.protocol is Protocol.WS:
        raise BadStateError(
            f"{conn!r} was upgraded to WebSocket; HTTP requests need another connection"
        )
    stream = StreamRef(reply_to=target)
    conn.tell(commands.Request(stream, method, path, checked, body, fin))
    return stream


def _bytes(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    raise InvalidArgument(f"a body must be bytes or str, got {type(body).__name__}")


# -- awaiting -----------------------------------------------------------------------------


def await_response(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> GunResponse:
    """Wait for the stream's `GunResponse` (1xx informs are taken and skipped).

    Returns the message itself: `.status`, `.headers` (names lower-cased), and `.is_fin`
    (True: there is no body). Reads the stream's `reply_to` mailbox, waiting up to
    `timeout` milliseconds; the body messages stay for `await_body`.

    Raises:
        AwaitTimeout: no response in time; nothing was taken from the mailbox.
        StreamError: the stream failed (its `GunError`), e.g. the request was refused.
        ConnectionDown: the connection was lost before the response came.
        ConnectionTerminated: the connection stopped.
        BadStateError: the stream was upgraded (use `websocket.await_upgrade`), or its
            messages go to a Pykka actor.

    Example:
        ```python
        response = http.await_response(conn, http.get(conn, "/"), 5000)
        if response.status == 200 and not response.is_fin:
            body = http.await_body(conn, response.stream, 5000)
        ```
    """
    return wait(ResponseWait(check_connection(conn), check_stream(stream)), timeout, "response")


def await_response_future(conn: Connection, stream: StreamRef) -> MessageFuture[GunResponse]:
    """`await_response` as a Pykka future; `get(timeout=)` takes seconds as a float.

    Example:
        ```python
        futures = [http.await_response_future(conn, s) for s in streams]
        responses = pykka.get_all(futures, timeout=5.0)
        ```
    """
    return future(ResponseWait(check_connection(conn), check_stream(stream)))


def await_body(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> bytes:
    """Wait for the rest of the stream's body and return it whole (Gun's `gun:await_body`).

    Takes the response head too if it is still queued, and the trailers if any (use
    `await_body_and_trailers` to get them). As in Gun, `timeout` applies to each message:
    a slow body that never pauses longer than that is waited for to its end. On timeout
    every message taken is given back. `timeout` is in milliseconds.

    Raises:
        AwaitTimeout: a gap longer than `timeout` between two pieces; nothing is lost.
        StreamError: the stream failed midway (its `GunError`).
        ConnectionDown: the connection was lost before the body ended.
        ConnectionTerminated: the connection stopped.
        BadStateError: the stream's messages go to a Pykka actor.

    Example:
        ```python
        stream = http.get(conn, "/report.csv")
        body = http.await_body(conn, stream, 10_000)  # the head is taken too
        ```
    """
    waiting = BodyWait(check_connection(conn), check_stream(stream))
    return wait(waiting, timeout, "complete body", per_message=True)


def await_body_and_trailers(
    conn: Connection, stream: StreamRef, timeout: Timeout = 5000
) -> tuple[bytes, Headers]:
    """`await_body`, also returning the response's trailers (an empty tuple when none):
    Gun's `{ok, Body, Trailers}`.

    Errors and `timeout` (ms, per message) as `await_body`.

    Example:
        ```python
        stream = http.get(conn, "/grpc-like", [("te", "trailers")])
        body, trailers = http.await_body_and_trailers(conn, stream, 5000)
        ```
    """
    waiting = BodyAndTrailersWait(check_connection(conn), check_stream(stream))
    return wait(waiting, timeout, "complete body", per_message=True)


def await_body_future(conn: Connection, stream: StreamRef) -> MessageFuture[bytes]:
    """`await_body` as a future (its `get(timeout)` bounds the whole body).

    `get(timeout=)` takes seconds as a float, `Milliseconds` or `Infinity`; `cancel()`
    gives back every piece it had taken.

    Example:
        ```python
        bodies = pykka.get_all([http.await_body_future(conn, s) for s in streams], 10.0)
        ```
    """
    return future(BodyWait(check_connection(conn), check_stream(stream)))


def await_next(conn: Connection, stream: StreamRef, timeout: Timeout = 5000) -> Any:
    """The next message of the stream, whatever it is (Gun's `gun:await`); errors raise.

    Returns a `GunInform`, `GunResponse`, `GunData`, `GunTrailers`, `GunUpgrade` or
    `GunWs`, waiting up to `timeout` milliseconds.

    Raises:
        AwaitTimeout: nothing for the stream in time.
        StreamError: the stream failed (its `GunError`).
        ConnectionDown: the connection was lost with the stream unfinished.
        ConnectionTerminated: the connection stopped.

    Example:
        ```python
        match http.await_next(conn, stream, 5000):
            case GunResponse(status=status, is_fin=False): ...  # a body follows
            case GunData(data=chunk, is_fin=last): ...
        ```
    """
    return wait(NextWait(check_connection(conn), check_stream(stream)), timeout, "message")


def await_next_future(conn: Connection, stream: StreamRef) -> MessageFuture[Any]:
    """`await_next` as a Pykka future; `get(timeout=)` takes seconds as a float.

    Example:
        ```python
        message = http.await_next_future(conn, stream).get(timeout=5.0)
        ```
    """
    return future(NextWait(check_connection(conn), check_stream(stream)))

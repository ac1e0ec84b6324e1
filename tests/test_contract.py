"""Small parts of the contract: options checked where built, immutable headers in
messages, a typed `info()`, futures that do not take seconds for milliseconds."""

from __future__ import annotations

import dataclasses

import pykka
import pytest

from gluegun_actors import connection, http, mailbox, websocket
from gluegun_actors.errors import InvalidOptions, InvalidTimeout
from gluegun_actors.events import GunResponse

T = 5000


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"retry": -1}, "retry"),
        ({"retry": True}, "retry"),
        ({"retry_backoff": 0.5}, "retry_backoff"),
        ({"retry_jitter": 1.0}, "retry_jitter"),
        ({"closing_timeout": 1.5}, "closing_timeout"),
        ({"closing_timeout": None}, "closing_timeout"),
        ({"transport": "udp"}, "transport"),
        ({"tls_server_name": ""}, "tls_server_name"),
        ({"max_header_block_size": 0}, "max_header_block_size"),
        ({"event_handler": "print"}, "event_handler"),
    ],
)
def test_connection_options_are_checked_however_they_are_built(
    fields: dict[str, object], complaint: str
) -> None:
    with pytest.raises(InvalidOptions, match=complaint):
        connection.options(**fields)
    with pytest.raises(InvalidOptions, match=complaint):
        connection.Options(**fields)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptions, match=complaint):
        dataclasses.replace(connection.Options(), **fields)


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"compress": "yes"}, "compress"),
        ({"silence_pings": 1}, "silence_pings"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"flow": -1}, "flow"),
        ({"keepalive": 2.5}, "keepalive"),
        ({"subprotocols": "chat"}, "subprotocols"),
        ({"subprotocols": ["chat v2"]}, "token"),
        ({"subprotocols": ["a", "a"]}, "more than once"),
        ({"headers": [("x-token", "a\r\nb")]}, "CR, LF or NUL"),
        ({"headers": [("sec-websocket-key", "k")]}, "part of the WebSocket handshake"),
        ({"headers": "x-token: a"}, "pairs"),
        ({"connection": {"retry": 1}}, "connection.options"),
    ],
)
def test_websocket_options_are_checked_however_they_are_built(
    fields: dict[str, object], complaint: str
) -> None:
    with pytest.raises(InvalidOptions, match=complaint):
        websocket.options(**fields)
    with pytest.raises(InvalidOptions, match=complaint):
        websocket.Options(**fields)  # type: ignore[arg-type]


def test_options_store_durations_as_milliseconds() -> None:
    options = connection.options(retry_timeout=connection.Milliseconds(250), keepalive=None)
    assert (options.retry_timeout, options.keepalive) == (250, None)
    ws_options = websocket.options(closing_timeout=connection.Infinity, timeout=100)
    assert (ws_options.closing_timeout, ws_options.timeout) == (None, 100)
    assert websocket.options(headers={"x-a": "1"}).headers == (("x-a", "1"),)


# -- messages, info --------------------------------------------------------------------


def test_headers_in_owner_messages_are_immutable(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        stream = http.get(conn, "/")
        response = http.await_response(conn, stream, T)
        assert isinstance(response, GunResponse)
        assert isinstance(response.headers, tuple)
        assert all(isinstance(pair, tuple) for pair in response.headers)
        with pytest.raises(AttributeError):
            response.headers.append(("x", "y"))  # type: ignore[attr-defined]
        assert hash(response.headers)  # a tuple of str pairs: hashable, shareable
    finally:
        connection.close(conn)


def test_info_is_a_frozen_snapshot_with_gun_field_names(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        connection.await_up(conn, T)
        info = connection.info(conn)
        assert dataclasses.is_dataclass(info)
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.state_name = "closing"  # type: ignore[misc]
        assert {"state_name", "sock_ip", "sock_port", "origin_host", "origin_port"} <= {
            field.name for field in dataclasses.fields(info)
        }
    finally:
        connection.close(conn)


# -- futures ---------------------------------------------------------------------------


def test_a_future_refuses_a_bare_int_timeout_and_keeps_the_wait(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        future = connection.await_up_future(conn)
        with pytest.raises(InvalidTimeout, match="ambiguous"):
            future.get(timeout=5)
        assert future.get(timeout=connection.Milliseconds(T)) is connection.Protocol.HTTP1
    finally:
        connection.close(conn)


def test_a_future_takes_seconds_as_a_float_as_pykka_does(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port)
    try:
        (protocol,) = pykka.get_all([connection.await_up_future(conn)], timeout=5.0)
        assert protocol is connection.Protocol.HTTP1
        stream = http.get(conn, "/")
        body = http.await_body_future(conn, stream)
        assert body.get(timeout=connection.Infinity) == b"hello from gluegun_actors"
    finally:
        connection.close(conn)


def test_a_mailbox_future_refuses_a_bare_int_but_takes_zero() -> None:
    box = mailbox.Mailbox()
    box.put("hello")
    future = box.receive_future(str)
    with pytest.raises(InvalidTimeout, match="ambiguous"):
        future.get(timeout=1)
    assert future.get(timeout=0) == "hello"
    with pytest.raises(InvalidTimeout):
        box.receive_future().get(timeout="soon")  # type: ignore[arg-type]

"""HTTP/1.1 over a connection actor, against the embedded server and uvicorn (Gun's http suite)."""

from __future__ import annotations

import pytest

from gluegun_actors import connection, http, mailbox
from gluegun_actors.errors import BadStateError, InvalidArgument, LocalProtocolError
from gluegun_actors.events import GunData, GunInform, GunResponse, GunTrailers

T = 5000


@pytest.fixture(params=["embedded", "uvicorn"])
def peer_port(request: pytest.FixtureRequest) -> int:
    if request.param == "embedded":
        return int(request.getfixturevalue("embedded_server").port)
    return int(request.getfixturevalue("uvicorn_port"))


@pytest.fixture
def conn(peer_port: int):
    conn = connection.open("127.0.0.1", peer_port, connection.options(retry=0))
    assert connection.await_up(conn, T) is connection.Protocol.HTTP1
    yield conn
    connection.close(conn)


def test_get_returns_response_then_body(conn) -> None:
    stream = http.get(conn, "/")
    response = http.await_response(conn, stream, T)
    assert isinstance(response, GunResponse)
    assert response.status == 200
    assert response.is_fin is False
    assert http.await_body(conn, stream, T) == b"hello from gluegun_actors"


def test_response_header_names_are_lower_case(conn) -> None:
    stream = http.get(conn, "/")
    response = http.await_response(conn, stream, T)
    names = [name for name, _ in response.headers]
    assert names and all(name == name.lower() for name in names)
    http.await_body(conn, stream, T)


def test_post_body_is_echoed(conn) -> None:
    stream = http.post(conn, "/echo", [("content-type", "application/octet-stream")], b"x" * 5000)
    assert http.await_response(conn, stream, T).status == 200
    assert http.await_body(conn, stream, T) == b"x" * 5000


def test_put_and_patch_accept_str_bodies(conn) -> None:
    for send in (http.put, http.patch):
        stream = send(conn, "/echo", [], "héllo")
        assert http.await_body(conn, stream, T) == "héllo".encode()


def test_streamed_upload_is_sent_chunked(conn) -> None:
    stream = http.headers(conn, "POST", "/echo", [("content-type", "text/plain")])
    for piece in (b"one ", b"two ", b"three"):
        http.data(conn, stream, False, piece)
    http.data(conn, stream, True, b"")
    assert http.await_response(conn, stream, T).status == 200
    assert http.await_body(conn, stream, T) == b"one two three"


def test_streamed_upload_with_content_length(conn) -> None:
    stream = http.headers(conn, "POST", "/echo", [("content-length", "6")])
    http.data(conn, stream, False, b"abc")
    http.data(conn, stream, True, b"def")
    assert http.await_body(conn, stream, T) == b"abcdef"


def test_chunked_response_arrives_as_data_messages(conn) -> None:
    stream = http.get(conn, "/chunked?n=3")
    response = http.await_next(conn, stream, T)
    assert isinstance(response, GunResponse) and not response.is_fin
    body = b""
    for _ in range(10):
        message = http.await_next(conn, stream, T)
        assert isinstance(message, GunData)
        body += message.data
        if message.is_fin:
            break
    assert body == b"chunk0chunk1chunk2"


def test_pipelined_requests_come_back_in_order(conn) -> None:
    streams = [http.get(conn, f"/delay?ms={ms}") for ms in (60, 0, 30)]
    streams.append(http.post(conn, "/echo", [], b"last"))
    assert [http.await_response(conn, s, T).status for s in streams] == [200] * 4
    assert http.await_body(conn, streams[3], T) == b"last"
    for stream in streams[:3]:
        http.await_body(conn, stream, T)


def test_await_in_reverse_order_keeps_other_messages(conn) -> None:
    first = http.get(conn, "/")
    second = http.post(conn, "/echo", [], b"2")
    assert http.await_body(conn, second, T) == b"2"
    assert http.await_body(conn, first, T) == b"hello from gluegun_actors"


def test_head_has_no_body(conn) -> None:
    stream = http.head(conn, "/")
    response = http.await_response(conn, stream, T)
    assert response.status == 200 and response.is_fin is True
    follow = http.get(conn, "/")
    assert http.await_body(conn, follow, T) == b"hello from gluegun_actors"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_end_at_the_response(conn, status: int) -> None:
    stream = http.get(conn, f"/status/{status}")
    response = http.await_response(conn, stream, T)
    assert (response.status, response.is_fin) == (status, True)


def test_not_found_is_a_response_not_an_error(conn) -> None:
    stream = http.get(conn, "/status/404")
    assert http.await_response(conn, stream, T).status == 404
    assert http.await_body(conn, stream, T) == b"not found"


def test_request_headers_reach_the_server(conn) -> None:
    stream = http.get(conn, "/headers", [("x-token", "abc"), (b"x-raw", b"bytes")])
    import json

    seen = json.loads(http.await_body(conn, stream, T))
    assert seen["x-token"] == "abc"
    assert seen["x-raw"] == "bytes"
    assert seen["host"] == f"127.0.0.1:{conn.port}"


def test_trailers_end_the_stream(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(retry=0))
    try:
        stream = http.get(conn, "/trailers", [("te", "trailers")])
        messages = []
        for _ in range(20):
            message = http.await_next(conn, stream, T)
            messages.append(message)
            if isinstance(message, GunTrailers):
                break
        assert isinstance(messages[0], GunResponse)
        assert isinstance(messages[-1], GunTrailers)
        assert all(not m.is_fin for m in messages[1:-1])
        body = b"".join(m.data for m in messages[1:-1])
        assert ("x-checksum", str(len(body))) in messages[-1].headers
    finally:
        connection.close(conn)


def test_await_body_collects_across_trailers(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(retry=0))
    try:
        stream = http.get(conn, "/trailers", [("te", "trailers")])
        assert http.await_body(conn, stream, T).startswith(b"chunk")
        left = [m for m in mailbox.current().messages() if getattr(m, "stream", None) == stream]
        assert left == []
    finally:
        connection.close(conn)


def test_informational_response_comes_first_and_await_response_skips_it(embedded_server) -> None:
    conn = connection.open("127.0.0.1", embedded_server.port, connection.options(retry=0))
    try:
        stream = http.get(conn, "/inform")
        inform = http.await_next(conn, stream, T)
        assert isinstance(inform, GunInform) and inform.status == 103
        again = http.get(conn, "/inform")
        assert http.await_response(conn, again, T).status == 200
        assert http.await_body(conn, again, T) == b"informed"
        assert http.await_response(conn, stream, T).status == 200
    finally:
        connection.close(conn)


def test_header_value_with_newline_raises_before_sending(conn) -> None:
    with pytest.raises(LocalProtocolError):
        http.get(conn, "/", [("x-evil", "a\r\nx-injected: 1")])
    stream = http.get(conn, "/headers")
    assert b"x-injected" not in http.await_body(conn, stream, T)


def test_wrong_argument_types_raise_typed_errors(conn) -> None:
    with pytest.raises(InvalidArgument):
        http.get("not a connection", "/")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        http.post(conn, "/echo", [], 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        http.get(conn, "/", "x-bad-headers")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        http.await_response(conn, http.get(conn, "/"), 1.5)  # type: ignore[arg-type]


def test_data_on_unknown_stream_is_reported(conn) -> None:
    stream = http.get(conn, "/")
    http.await_body(conn, stream, T)
    http.data(conn, stream, True, b"late")
    with pytest.raises(BadStateError):
        http.await_next(conn, stream, T)

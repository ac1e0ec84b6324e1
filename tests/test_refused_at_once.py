"""Requests HTTP/1.1 forbids are refused in the caller, at once, and nothing is sent.

Each refusal used to return a stream and fail later with a `GunError`; now the call
itself raises `LocalProtocolError`, and the connection serves the next request as if
the bad one had never been tried. Error messages never quote a header's value.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gluegun_actors import connection, http, websocket
from gluegun_actors.errors import LocalProtocolError
from gluegun_actors.testing import EmbeddedServer


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer() as embedded:
        yield embedded


@pytest.fixture
def conn(server: EmbeddedServer) -> Iterator[connection.Connection]:
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=0))
    connection.await_up(conn, 5000)
    yield conn
    connection.close(conn)


def _still_serves(conn: connection.Connection) -> None:
    stream = http.get(conn, "/")
    assert http.await_response(conn, stream, 5000).status == 200
    assert http.await_body(conn, stream, 5000)
    assert connection.flush(conn) == 0, "a refused request left messages behind"


@pytest.mark.parametrize(
    ("method", "path", "headers", "says"),
    [
        ("GET", "/a\tb", [], "percent-encode"),
        ("GET", "/a\x7fb", [], "percent-encode"),
        ("GET", "/caf\u00e9", [], "ASCII"),
        ("GET", "/a b", [], "percent-encode"),
        ("GE\tT", "/", [], "method"),
        ("GET", "/", [("host", "a"), ("host", "b")], "more than one host"),
        (
            "POST",
            "/",
            [("content-length", "3"), ("transfer-encoding", "chunked")],
            "content-length and transfer-encoding",
        ),
        ("POST", "/", [("transfer-encoding", "gzip")], "only chunked"),
        ("POST", "/", [("content-length", "3"), ("content-length", "4")], "conflicting"),
    ],
)
def test_a_forbidden_request_raises_in_the_caller(
    conn: connection.Connection, method: str, path: str, headers: list[tuple[str, str]], says: str
) -> None:
    with pytest.raises(LocalProtocolError, match=says):
        http.request(conn, method, path, headers, b"abc")
    _still_serves(conn)


@pytest.mark.parametrize("path", ["/ws\r\nx: y", "/ws\tx", "/w\u00e9"])
def test_a_forbidden_upgrade_path_raises_in_the_caller(
    conn: connection.Connection, path: str
) -> None:
    with pytest.raises(LocalProtocolError):
        websocket.upgrade(conn, path)
    _still_serves(conn)


def test_a_bad_header_value_is_named_not_quoted(conn: connection.Connection) -> None:
    token = "Bearer s3cr3t-token\n"  # read from a file, trailing newline and all
    with pytest.raises(LocalProtocolError, match="'authorization'") as raised:
        http.get(conn, "/", [("authorization", token)])
    assert "s3cr3t" not in str(raised.value)
    with pytest.raises(LocalProtocolError) as raised:
        http.get(conn, "/", [("x-api-key", " s3cr3t")])
    assert "s3cr3t" not in str(raised.value)
    with pytest.raises(LocalProtocolError, match="latin-1") as raised:
        http.get(conn, "/", [("x-name", "\u2603 s3cr3t"), ("cookie", "id=1")])
    assert "s3cr3t" not in str(raised.value)
    assert "id=1" not in str(raised.value)
    _still_serves(conn)

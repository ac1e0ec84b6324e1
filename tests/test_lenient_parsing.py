"""What the response parser accepts that the grammar does not, decided and pinned.

A client forwards nothing, so leniency here cannot smuggle a request past anyone; it
only decides what the owner sees. Kept, as h11 keeps them (RFC 9112 2.2 lets a recipient
take a bare LF as a line end; RFC 9110 5.5 lets it retain other control characters):
a bare LF ends a header line, and control bytes other than CR, LF and NUL stay in a
value. Refused: NUL or a bare CR inside a value (RFC 9110 5.5 says reject or replace).
"""

from __future__ import annotations

import pytest

from gluegun_actors import connection, http
from gluegun_actors.errors import RemoteProtocolError, StreamError
from gluegun_actors.testing import Expect, Hold, Send


def _response(scripted_server, head: bytes) -> object:
    server = scripted_server([[Expect(), Send(head + b"\r\n"), Hold()]])
    conn = connection.open("127.0.0.1", server.port, connection.options(retry=0))
    try:
        connection.await_up(conn, 5000)
        stream = http.get(conn, "/")
        return http.await_response(conn, stream, 5000)
    finally:
        connection.close(conn)


def test_a_bare_lf_ends_a_header_line(scripted_server) -> None:
    response = _response(
        scripted_server, b"HTTP/1.1 200 OK\r\nx-a: 1\nx-b: 2\r\ncontent-length: 0\r\n"
    )
    assert ("x-a", "1") in response.headers  # type: ignore[attr-defined]
    assert ("x-b", "2") in response.headers  # type: ignore[attr-defined]


def test_control_bytes_other_than_cr_lf_nul_stay_in_a_value(scripted_server) -> None:
    response = _response(
        scripted_server, b"HTTP/1.1 200 OK\r\nx-a: a\x01b\x7fc\r\ncontent-length: 0\r\n"
    )
    assert ("x-a", "a\x01b\x7fc") in response.headers  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [b"a\x00b", b"a\rb"])
def test_nul_or_a_bare_cr_in_a_value_fails_the_response(scripted_server, value: bytes) -> None:
    with pytest.raises(StreamError) as raised:
        _response(
            scripted_server, b"HTTP/1.1 200 OK\r\nx-a: " + value + b"\r\ncontent-length: 0\r\n"
        )
    assert isinstance(raised.value.reason, RemoteProtocolError)
    assert "illegal header line" in str(raised.value)

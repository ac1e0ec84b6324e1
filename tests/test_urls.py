"""Entry points by URL: `connection.open_url`, `websocket.connect(url=)`, `with_socket(url=)`."""

from __future__ import annotations

import pytest

from gluegun_actors import connection, http, websocket
from gluegun_actors._url import Url, parse_url
from gluegun_actors.errors import InvalidArgument, InvalidOptions
from gluegun_actors.message import Text

# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://example.com", Url("ws", "example.com", 80, "/")),
        ("wss://example.com/feed?x=1", Url("wss", "example.com", 443, "/feed?x=1")),
        ("http://127.0.0.1:8080/a/b", Url("http", "127.0.0.1", 8080, "/a/b")),
        ("HTTPS://Example.com:8443", Url("https", "example.com", 8443, "/")),
        ("ws://[::1]:9000/x", Url("ws", "::1", 9000, "/x")),
        ("http://bücher.example/", Url("http", "xn--bcher-kva.example", 80, "/")),
        ("http://h/page#section", Url("http", "h", 80, "/page")),
    ],
)
def test_a_url_gives_host_port_transport_and_target(url: str, expected: Url) -> None:
    assert parse_url(url) == expected


def test_the_scheme_chooses_the_transport() -> None:
    assert [parse_url(f"{s}://h").transport for s in ("ws", "wss", "http", "https")] == [
        "tcp",
        "tls",
        "tcp",
        "tls",
    ]
    assert str(parse_url("wss://h:443/x")) == "wss://h/x"
    assert str(parse_url("ws://[::1]:81/")) == "ws://[::1]:81/"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/", "scheme 'ftp' is not supported"),
        ("example.com:80", "no scheme"),
        ("", "empty"),
        ("ws:///path", "no host"),
        ("ws://h:99999/", "invalid port"),
        ("ws://h:0/", "invalid port"),
        ("ws://h/#frag", "fragment"),
        ("ws://user:secret@h/", "credentials"),
        ("https://token@h/", "credentials"),
    ],
)
def test_a_bad_url_is_refused_with_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says) as raised:
        parse_url(url)
    assert "secret" not in str(raised.value)


def test_a_url_that_is_not_a_str_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="url must be a str"):
        parse_url(b"ws://h/")


def test_credentials_in_a_host_are_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidArgument, match="credentials go in a header") as raised:
        connection.open("user:hunter2@127.0.0.1", 80)
    assert "hunter2" not in str(raised.value)


# -- over the wire -------------------------------------------------------------------------


def test_open_url_connects_to_the_urls_host_and_port(embedded_server) -> None:
    conn = connection.open_url(f"http://127.0.0.1:{embedded_server.port}/ignored")
    try:
        connection.await_up(conn, 5000)
        stream = http.get(conn, "/")
        assert http.await_response(conn, stream, 5000).status == 200
    finally:
        connection.close(conn)


def test_open_url_refuses_a_transport_that_contradicts_the_scheme() -> None:
    with pytest.raises(InvalidOptions, match="leave transport unset"):
        connection.open_url("http://127.0.0.1:1/", connection.options(transport="tls"))


def test_websocket_connect_by_url_to_the_embedded_server(embedded_server) -> None:
    with websocket.connect(f"ws://127.0.0.1:{embedded_server.port}/ws") as socket:
        websocket.send_text(socket, "by url")
        assert websocket.receive_app_frame(socket, 5000) == Text("by url")


def test_websocket_connect_by_url_to_the_websockets_server(websockets_port: int) -> None:
    url = f"ws://127.0.0.1:{websockets_port}/"
    with websocket.connect(url=url) as socket:
        websocket.send_text(socket, "third party")
        assert websocket.receive_app_frame(socket, 5000) == Text("third party")


def test_with_socket_by_url_returns_the_callbacks_result(websockets_port: int) -> None:
    def echo(socket: websocket.Socket) -> object:
        websocket.send_text(socket, "cb")
        return websocket.receive_app_frame(socket, 5000)

    url = f"ws://127.0.0.1:{websockets_port}/"
    assert websocket.with_socket(url, callback=echo) == Text("cb")


def test_websocket_connect_wants_one_form_and_a_websocket_scheme() -> None:
    with pytest.raises(InvalidArgument, match="not both"):
        websocket.connect("ws://127.0.0.1:1/", host="127.0.0.1", port=1)
    with pytest.raises(InvalidArgument, match="ws:// or wss://"):
        websocket.connect("http://127.0.0.1:1/")
    with pytest.raises(InvalidArgument, match="both host= and port="):
        websocket.connect(host="127.0.0.1")

"""The proxy handshakes in memory (HTTP CONNECT over h11, SOCKS5 against socksio's encoding),
the proxy option's parsing and redaction, and the environment opt-in. No sockets here:
`test_proxy.py` runs the same code against real proxies."""

from __future__ import annotations

import base64
import ipaddress
import itertools

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st
from socksio import socks5 as socksio

from gluegun_actors import connection
from gluegun_actors._protocol.proxy_connect import HttpConnectClient
from gluegun_actors._protocol.socks5 import REPLIES, Socks5Client, State, connect_request
from gluegun_actors._protocol.tunnel import TunnelClient, TunnelOpened
from gluegun_actors._proxy import Proxy, parse_proxy, proxy_for, proxy_from_environment
from gluegun_actors.errors import (
    InvalidOptions,
    LocalProtocolError,
    ProxyAuthenticationError,
    ProxyError,
)

PROXY = "127.0.0.1:3128"
SECRET = "s3cr3t-pa55"
OK_REPLY = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90"


def _feed(client: TunnelClient, data: bytes) -> TunnelOpened | None:
    """Feed `data` one byte at a time, as the slowest network would."""
    opened = None
    for index in range(len(data)):
        assert opened is None, "the tunnel opened before the reply ended"
        opened = client.receive_data(data[index : index + 1])
    return opened


# -- HTTP CONNECT -----------------------------------------------------------------------------


def test_connect_request_names_the_server_with_its_port() -> None:
    client = HttpConnectClient("example.com", 443, proxy=PROXY)
    assert client.data_to_send() == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    assert client.data_to_send() == b""


def test_connect_request_brackets_ipv6_and_carries_basic_credentials() -> None:
    client = HttpConnectClient("::1", 8080, proxy=PROXY, credentials=("user", SECRET))
    server = h11.Connection(h11.SERVER)
    server.receive_data(client.data_to_send())
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert request.method == b"CONNECT"
    assert request.target == b"[::1]:8080"
    token = base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert (b"proxy-authorization", f"Basic {token}".encode()) in list(request.headers)
    assert (b"host", b"[::1]:8080") in list(request.headers)


def test_a_2xx_opens_the_tunnel_and_hands_on_what_followed() -> None:
    client = HttpConnectClient("example.com", 443, proxy=PROXY)
    client.data_to_send()
    head = b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n"
    assert _feed(client, head) == TunnelOpened(b"")
    again = HttpConnectClient("example.com", 443, proxy=PROXY)
    assert again.receive_data(head + b"\x16\x03") == TunnelOpened(b"\x16\x03")
    with pytest.raises(RuntimeError, match="open"):
        again.receive_data(b"more")


def test_informational_answers_are_skipped() -> None:
    client = HttpConnectClient("example.com", 443, proxy=PROXY)
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    assert client.receive_data(reply) == TunnelOpened(b"")


def test_a_407_is_an_authentication_error_without_the_credentials() -> None:
    client = HttpConnectClient("example.com", 443, proxy=PROXY, credentials=("user", SECRET))
    with pytest.raises(ProxyAuthenticationError) as caught:
        client.receive_data(b"HTTP/1.1 407 Denied\r\nProxy-Authenticate: Basic\r\n\r\n")
    text = str(caught.value)
    assert text == (
        "the proxy refused the tunnel: 407 Proxy Authentication Required (check the proxy "
        f"credentials); proxy {PROXY}, tunnel to example.com:443"
    )
    assert caught.value.reply == 407
    assert caught.value.proxy == PROXY
    assert SECRET not in text and base64.b64encode(SECRET.encode()).decode() not in text


def test_a_407_without_credentials_says_how_to_give_them() -> None:
    client = HttpConnectClient("example.com", 443, proxy=PROXY)
    with pytest.raises(ProxyAuthenticationError, match=r"user:password@host:port"):
        client.receive_data(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")


@pytest.mark.parametrize(
    ("status", "phrase"), [(403, "Forbidden"), (502, "Bad Gateway"), (599, "Odd")]
)
def test_other_statuses_are_proxy_errors(status: int, phrase: str) -> None:
    client = HttpConnectClient("example.com", 443, proxy=PROXY)
    with pytest.raises(ProxyError) as caught:
        client.receive_data(f"HTTP/1.1 {status} Odd\r\ncontent-length: 0\r\n\r\n".encode())
    assert type(caught.value) is ProxyError
    assert caught.value.reply == status
    assert str(caught.value).startswith(f"the proxy refused the tunnel: {status} {phrase};")


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (b"", "closed the connection without answering"),
        (b"HTTP/1.1 20", "closed the connection in the middle of its reply"),
        (b"\x05\x00", "did not answer as an HTTP proxy"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "did not answer as an HTTP proxy"),
    ],
)
def test_replies_that_are_not_http_are_proxy_errors(reply: bytes, says: str) -> None:
    client = HttpConnectClient("example.com", 443, proxy=PROXY)
    with pytest.raises(ProxyError, match=says):
        if reply:
            client.receive_data(reply)
        client.receive_data(b"")


def test_a_reply_head_is_bounded() -> None:
    client = HttpConnectClient("example.com", 443, proxy=PROXY, max_head_size=1024)
    with pytest.raises(ProxyError, match="larger than max_head_size"):
        client.receive_data(b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * 2000 + b"\r\n")


# -- SOCKS5 -----------------------------------------------------------------------------------


def test_socks5_without_credentials() -> None:
    client = Socks5Client("localhost", 8080, proxy=PROXY)
    assert client.data_to_send() == b"\x05\x01\x00"
    assert client.receive_data(b"\x05\x00") is None
    assert client.data_to_send() == b"\x05\x01\x00\x03\x09localhost\x1f\x90"
    assert client.state is State.CONNECTING
    assert _feed(client, OK_REPLY + b"") == TunnelOpened(b"")
    assert client.state is State.OPEN


def test_socks5_with_credentials_and_bytes_after_the_reply() -> None:
    client = Socks5Client("localhost", 8080, proxy=PROXY, credentials=("user", SECRET))
    assert client.data_to_send() == b"\x05\x02\x00\x02"
    assert client.receive_data(b"\x05\x02") is None
    assert client.data_to_send() == b"\x01\x04user" + bytes((len(SECRET),)) + SECRET.encode()
    assert client.state is State.AUTHENTICATING
    assert client.receive_data(b"\x01\x00") is None
    assert client.data_to_send() == connect_request("localhost", 8080)
    bound_by_name = b"\x05\x00\x00\x03\x05proxy\x04\x38"
    assert client.receive_data(bound_by_name + b"tail") == TunnelOpened(b"tail")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("10.1.2.3", b"\x01\x0a\x01\x02\x03"),
        ("::1", b"\x04" + ipaddress.IPv6Address("::1").packed),
        ("example.com", b"\x03\x0bexample.com"),
        ("b\u00fccher.example", b"\x03\x15xn--bcher-kva.example"),
    ],
)
def test_socks5_addresses_names_as_names_and_literals_as_addresses(
    host: str, address: bytes
) -> None:
    assert connect_request(host, 80) == b"\x05\x01\x00" + address + b"\x00\x50"


def test_socks5_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError, match="255 bytes"):
        connect_request("a." * 130 + "com", 80)
    with pytest.raises(LocalProtocolError, match="255 bytes"):
        Socks5Client("example.com", 80, proxy=PROXY, credentials=("u", "p" * 256))


@pytest.mark.parametrize("code", sorted(REPLIES))
def test_socks5_reply_codes_are_explained(code: int) -> None:
    client = Socks5Client("example.com", 443, proxy=PROXY)
    client.receive_data(b"\x05\x00")
    with pytest.raises(ProxyError) as caught:
        client.receive_data(bytes((5, code)))  # the code alone is enough to fail
    assert type(caught.value) is ProxyError
    assert caught.value.reply == code
    assert str(caught.value) == (
        f"the proxy refused the tunnel: SOCKS5 reply {code}, {REPLIES[code]}; "
        f"proxy {PROXY}, tunnel to example.com:443"
    )
    assert client.state is State.FAILED
    with pytest.raises(ProxyError, match="already failed"):
        client.receive_data(b"\x00")


def test_socks5_names_every_reply_code_of_rfc_1928() -> None:
    assert [REPLIES[code] for code in range(1, 9)] == [
        "general SOCKS server failure",
        "connection not allowed by ruleset",
        "network unreachable",
        "host unreachable",
        "connection refused",
        "TTL expired",
        "command not supported",
        "address type not supported",
    ]


@pytest.mark.parametrize(
    ("credentials", "replies", "says"),
    [
        (("user", SECRET), [b"\x05\x02", b"\x01\x01"], "SOCKS5 authentication failed"),
        (("user", SECRET), [b"\x05\x02", b""], "closed the connection after the credentials"),
        (("user", SECRET), [b"\x05\xff"], "accepts neither username/password nor no auth"),
        (None, [b"\x05\xff"], "wants credentials"),
    ],
)
def test_socks5_refused_credentials_are_authentication_errors(
    credentials: tuple[str, str] | None, replies: list[bytes], says: str
) -> None:
    client = Socks5Client("example.com", 443, proxy=PROXY, credentials=credentials)
    with pytest.raises(ProxyAuthenticationError, match=says) as caught:
        for reply in replies:
            client.receive_data(reply)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("replies", "says"),
    [
        ([b""], "closed the connection before the method selection"),
        ([b"\x05\x00", b"\x05\x00\x00", b""], "before the reply to CONNECT"),
        ([b"HTTP/1.1 400 Bad Request\r\n\r\n"], r"an HTTP proxy\? use proxy='http://"),
        ([b"\x05\x01"], "chose method 0x01, which was not offered"),
        ([b"\x05\x00", b"\x05\x00\x00\x09\x00"], "unknown address type 9"),
    ],
)
def test_socks5_protocol_violations_are_proxy_errors(replies: list[bytes], says: str) -> None:
    client = Socks5Client("example.com", 443, proxy=PROXY)
    with pytest.raises(ProxyError, match=says) as caught:
        for reply in replies:
            client.receive_data(reply)
    assert not isinstance(caught.value, ProxyAuthenticationError)


# -- SOCKS5 beside socksio: the same bytes out, the same replies understood ------------------

_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_names = st.lists(_labels, min_size=1, max_size=5).map(".".join)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_ports = st.integers(1, 65535)
_secrets = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)


@given(host=st.one_of(_names, _ipv4, _ipv6), port=_ports)
def test_connect_request_matches_socksio(host: str, port: int) -> None:
    theirs = socksio.SOCKS5CommandRequest.from_address(socksio.SOCKS5Command.CONNECT, (host, port))
    assert connect_request(host, port) == theirs.dumps()


@given(username=_secrets, password=_secrets)
def test_greeting_and_credentials_match_socksio(username: str, password: str) -> None:
    client = Socks5Client("example.com", 80, proxy=PROXY, credentials=(username, password))
    methods = [
        socksio.SOCKS5AuthMethod.NO_AUTH_REQUIRED,
        socksio.SOCKS5AuthMethod.USERNAME_PASSWORD,
    ]
    assert client.data_to_send() == socksio.SOCKS5AuthMethodsRequest(methods).dumps()
    client.receive_data(b"\x05\x02")
    expected = socksio.SOCKS5UsernamePasswordRequest(username.encode(), password.encode())
    assert client.data_to_send() == expected.dumps()


_bound = st.one_of(
    _ipv4.map(lambda ip: b"\x01" + ipaddress.IPv4Address(ip).packed),
    _ipv6.map(lambda ip: b"\x04" + ipaddress.IPv6Address(ip).packed),
    _names.map(lambda name: b"\x03" + bytes((len(name),)) + name.encode()),
)


@given(
    bound=_bound,
    port=_ports,
    tail=st.binary(max_size=8),
    cuts=st.lists(st.integers(0, 40), max_size=6),
)
def test_any_split_of_a_success_reply_opens_once_with_the_tail(
    bound: bytes, port: int, tail: bytes, cuts: list[int]
) -> None:
    reply = b"\x05\x00\x00" + bound + port.to_bytes(2, "big")
    parsed = socksio.SOCKS5Reply.loads(reply)  # the same reply, whole, as socksio reads it
    assert parsed.reply_code is socksio.SOCKS5ReplyCode.SUCCEEDED
    assert parsed.atype.value == bound[:1] and parsed.port == port
    client = Socks5Client("example.com", 80, proxy=PROXY)
    client.receive_data(b"\x05\x00")
    data = reply + tail
    edges = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    for start, end in itertools.pairwise(edges):
        opened = client.receive_data(data[start:end])
        if end < len(reply):
            assert opened is None
        else:  # the piece that completes the reply opens the tunnel, with what follows it
            assert opened == TunnelOpened(data[len(reply) : end])
            break


# -- the option: parsing and redaction --------------------------------------------------------


def test_the_proxy_option_is_parsed_and_its_credentials_hidden() -> None:
    options = connection.options(proxy=f"socks5h://us%40er:{SECRET}%2F@Proxy.Example:1080/")
    proxy = options.proxy
    assert proxy == Proxy("socks5", "proxy.example", 1080, "us@er", f"{SECRET}/")
    assert str(proxy) == "socks5://***@proxy.example:1080"
    assert SECRET not in repr(options) and "us@er" not in repr(options)
    assert "Proxy('socks5://***@proxy.example:1080')" in repr(options)
    assert str(connection.options(proxy="http://[::1]:3128").proxy) == "http://[::1]:3128"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (3128, "must be a URL"),
        ("127.0.0.1:3128", "has no scheme"),
        (f"https://u:{SECRET}@proxy:443", "TLS to the proxy itself is not supported"),
        (f"socks4://u:{SECRET}@proxy:1080", "'socks4' is not supported"),
        (f"http://u:{SECRET}@proxy", "has no port"),
        (f"http://u:{SECRET}@proxy:99999", "malformed"),
        (f"http://u:{SECRET}@:8080", "has no host"),
        (f"http://u:{SECRET}@proxy:8080/path", "without a path"),
        (f"http://u%3Ax:{SECRET}@proxy:8080", "cannot contain ':'"),
        (f"socks5://:{SECRET}@proxy:1080", "1 to 255 bytes"),
    ],
)
def test_a_bad_proxy_is_refused_without_showing_the_credentials(value: object, says: str) -> None:
    with pytest.raises(InvalidOptions, match=says) as caught:
        connection.options(proxy=value)
    assert SECRET not in str(caught.value)
    assert str(caught.value).startswith("option proxy")


def test_proxy_and_proxy_from_env_are_exclusive() -> None:
    with pytest.raises(InvalidOptions, match="not both"):
        connection.options(proxy="http://proxy:3128", proxy_from_env=True)
    with pytest.raises(InvalidOptions, match="must be a bool"):
        connection.options(proxy_from_env="yes")


# -- the environment --------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http", "https", "all", "no"):
        monkeypatch.delenv(f"{name}_proxy", raising=False)
        monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)
    return monkeypatch


def test_tls_takes_https_proxy_and_tcp_takes_http_proxy(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("https_proxy", "http://secure-proxy:3128")
    environment.setenv("http_proxy", "socks5://plain-proxy:1080")
    assert proxy_from_environment("example.com", 443, "tls") == parse_proxy(
        "http://secure-proxy:3128"
    )
    assert proxy_from_environment("example.com", 80, "tcp") == parse_proxy(
        "socks5://plain-proxy:1080"
    )


def test_all_proxy_is_the_fallback_and_a_bare_address_is_http(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("ALL_PROXY", "fallback:8080")
    assert proxy_from_environment("example.com", 443, "tls") == Proxy("http", "fallback", 8080)
    assert proxy_from_environment("example.com", 80, "tcp") == Proxy("http", "fallback", 8080)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        (".example.com", "api.example.com", 443, True),
        ("example.com", "example.org", 443, False),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("*", "anything.test", 80, True),
        ("127.0.0.1, ::1", "::1", 80, True),
        ("127.0.0.1", "127.0.0.2", 80, False),
    ],
)
def test_no_proxy_bypasses(
    environment: pytest.MonkeyPatch, no_proxy: str, host: str, port: int, bypassed: bool
) -> None:
    environment.setenv("all_proxy", "http://proxy:3128")
    environment.setenv("no_proxy", no_proxy)
    assert (proxy_from_environment(host, port, "tls") is None) is bypassed


def test_the_environment_is_read_only_on_request(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("all_proxy", "http://proxy:3128")
    assert proxy_for(connection.options(), "example.com", 443) is None
    chosen = proxy_for(connection.options(proxy_from_env=True), "example.com", 443)
    assert chosen == Proxy("http", "proxy", 3128)
    given_one = connection.options(proxy="socks5://other:1080")
    assert proxy_for(given_one, "example.com", 443) == Proxy("socks5", "other", 1080)


def test_a_bad_environment_value_names_the_variable(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("https_proxy", f"https://user:{SECRET}@proxy:3128")
    with pytest.raises(InvalidOptions, match="the https_proxy environment variable") as caught:
        proxy_from_environment("example.com", 443, "tls")
    assert SECRET not in str(caught.value)

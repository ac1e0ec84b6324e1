"""The sans-IO HTTP/1.1 client core, driven with bytes in memory (no sockets).

Where the server side matters, the core's output is parsed by an h11 server `Connection`.
"""

from __future__ import annotations

import h11
import pytest

from gluegun_actors._protocol.http1 import (
    Closed,
    Data,
    Event,
    Http1Client,
    Inform,
    Response,
    StreamFailed,
    Trailers,
    Upgraded,
)
from gluegun_actors._types import StreamRef
from gluegun_actors.errors import (
    BadStateError,
    LocalProtocolError,
    MessageTooBig,
    RemoteProtocolError,
    StreamError,
)

OK_ABC = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc"
OK_EMPTY = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


def client(host: str = "example.com", port: int = 80, **kw: int) -> Http1Client:
    return Http1Client(host, port, **kw)


def get(core: Http1Client, target: str = "/") -> StreamRef:
    stream = StreamRef()
    core.request(stream, "GET", target, [])
    return stream


def feed_bytewise(core: Http1Client, wire: bytes) -> list[Event]:
    events: list[Event] = []
    for i in range(len(wire)):
        events.extend(core.receive_data(wire[i : i + 1]))
    return events


def body_of(events: list[Event], stream: StreamRef) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data) and e.stream == stream)


ServerRequest = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]


def server_requests(wire: bytes) -> list[ServerRequest]:
    """What an h11 server makes of the client's bytes: (method, target, headers, body)."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(wire)
    out: list[ServerRequest] = []
    request: h11.Request | None = None
    body = b""
    for _ in range(1000):
        event = server.next_event()
        if isinstance(event, h11.Request):
            request, body = event, b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            out.append((request.method, request.target, list(request.headers), body))
            server.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
            server.send(h11.EndOfMessage())
            server.start_next_cycle()
        else:
            break
    return out


# -- request writing -----------------------------------------------------------


def test_get_without_body_has_no_framing_headers() -> None:
    core = client()
    get(core, "/path?q=1")
    assert core.data_to_send() == b"GET /path?q=1 HTTP/1.1\r\nhost: example.com\r\n\r\n"


def test_body_with_fin_is_sent_with_content_length() -> None:
    core = client()
    core.request(StreamRef(), "POST", "/p", [("content-type", "text/plain")], b"hello")
    assert core.data_to_send() == (
        b"POST /p HTTP/1.1\r\nhost: example.com\r\ncontent-type: text/plain\r\n"
        b"content-length: 5\r\n\r\nhello"
    )


def test_empty_body_with_fin_sends_content_length_zero() -> None:
    core = client()
    core.request(StreamRef(), "POST", "/p", [], b"")
    assert (
        core.data_to_send() == b"POST /p HTTP/1.1\r\nhost: example.com\r\ncontent-length: 0\r\n\r\n"
    )


def test_caller_content_length_is_used_and_not_repeated() -> None:
    core = client()
    core.request(StreamRef(), "PUT", "/p", [("Content-Length", "3")], b"abc")
    assert (
        core.data_to_send()
        == b"PUT /p HTTP/1.1\r\nhost: example.com\r\nContent-Length: 3\r\n\r\nabc"
    )


def test_body_not_matching_caller_content_length_raises() -> None:
    core = client()
    with pytest.raises(LocalProtocolError, match="content-length"):
        core.request(StreamRef(), "PUT", "/p", [("content-length", "4")], b"abc")
    assert core.data_to_send() == b""
    assert core.unfinished == ()


def test_streamed_body_without_content_length_is_chunked_on_the_wire() -> None:
    core = client()
    stream = StreamRef()
    core.request(stream, "POST", "/up", [], is_fin=False)
    core.data(stream, b"hello", False)
    core.data(stream, b"", False)
    core.data(stream, b"0123456789abcdefg", True)
    assert core.data_to_send() == (
        b"POST /up HTTP/1.1\r\nhost: example.com\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n11\r\n0123456789abcdefg\r\n0\r\n\r\n"
    )


def test_streamed_body_with_content_length_is_sent_raw() -> None:
    core = client()
    stream = StreamRef()
    core.request(stream, "POST", "/up", [("content-length", "8")], is_fin=False)
    core.data(stream, b"abcd", False)
    core.data(stream, b"efgh", True)
    assert core.data_to_send() == (
        b"POST /up HTTP/1.1\r\nhost: example.com\r\ncontent-length: 8\r\n\r\nabcdefgh"
    )


def test_streamed_body_is_understood_by_an_h11_server() -> None:
    core = client()
    stream = StreamRef()
    core.request(stream, "POST", "/up", [], b"first-", is_fin=False)
    core.data(stream, b"second", True)
    [(method, target, _, body)] = server_requests(core.data_to_send())
    assert (method, target, body) == (b"POST", b"/up", b"first-second")


def test_streamed_data_over_content_length_raises_and_queues_nothing() -> None:
    core = client()
    stream = StreamRef()
    core.request(stream, "POST", "/up", [("content-length", "3")], is_fin=False)
    core.data_to_send()
    with pytest.raises(LocalProtocolError, match="exceed"):
        core.data(stream, b"abcd", False)
    assert core.data_to_send() == b""
    core.data(stream, b"abc", True)
    assert core.data_to_send() == b"abc"


def test_streamed_body_ending_short_of_content_length_raises() -> None:
    core = client()
    stream = StreamRef()
    core.request(stream, "POST", "/up", [("content-length", "3")], is_fin=False)
    with pytest.raises(LocalProtocolError, match="short"):
        core.data(stream, b"ab", True)


def test_data_for_a_stream_never_started_streaming_raises() -> None:
    core = client()
    with pytest.raises(BadStateError):
        core.data(StreamRef(), b"x", True)


def test_data_after_the_body_ended_raises() -> None:
    core = client()
    stream = StreamRef()
    core.request(stream, "POST", "/up", [], is_fin=False)
    core.data(stream, b"x", True)
    with pytest.raises(BadStateError, match="not streaming"):
        core.data(stream, b"y", True)


def test_data_for_a_request_sent_whole_raises() -> None:
    core = client()
    stream = get(core)
    with pytest.raises(BadStateError):
        core.data(stream, b"x", True)


def test_header_names_are_sent_as_given() -> None:
    core = client()
    core.request(StreamRef(), "GET", "/", [("X-Mixed-Case", "v"), ("ACCEPT", "*/*")])
    wire = core.data_to_send()
    assert b"\r\nX-Mixed-Case: v\r\n" in wire
    assert b"\r\nACCEPT: */*\r\n" in wire


def test_cr_lf_in_header_value_raises_before_anything_is_queued() -> None:
    core = client()
    with pytest.raises(LocalProtocolError):
        core.request(StreamRef(), "GET", "/", [("x-evil", "a\r\nx-injected: 1")])
    assert core.data_to_send() == b""
    assert core.unfinished == ()


def test_bad_header_name_raises_before_anything_is_queued() -> None:
    core = client()
    with pytest.raises(LocalProtocolError):
        core.request(StreamRef(), "GET", "/", [("bad name", "v")])
    assert core.data_to_send() == b""


@pytest.mark.parametrize(
    ("method", "target", "headers", "reason"),
    [
        ("G T", "/", [], "method"),
        ("GET", "/a b", [], "target"),
        ("GET", "", [], "target"),
        ("GET", "/", [("host", "a"), ("Host", "b")], "more than one host"),
        ("GET", "/", [("x-a", "v\x00")], "header value"),
        ("GET", "/", [("x-a", " v")], "header value"),
        ("POST", "/", [("content-length", "3, 4")], "conflicting content-length"),
        ("POST", "/", [("content-length", "3"), ("content-length", "4")], "conflicting"),
        ("POST", "/", [("content-length", "-3")], "bad content-length"),
        ("POST", "/", [("content-length", "1" * 21)], "bad content-length"),
        ("POST", "/", [("transfer-encoding", "gzip")], "only chunked"),
        ("POST", "/", [("transfer-encoding", "chunked")] * 2, "more than one"),
    ],
)
def test_a_request_outside_the_grammar_raises_and_queues_nothing(
    method: str, target: str, headers: list[tuple[str, str]], reason: str
) -> None:
    core = client()
    with pytest.raises(LocalProtocolError, match=reason):
        core.request(StreamRef(), method, target, headers, None if method == "GET" else b"")
    assert core.data_to_send() == b""
    assert core.unfinished == ()


def test_repeated_agreeing_content_lengths_are_sent_once() -> None:
    core = client()
    headers = [("Content-Length", "3"), ("content-length", "3 , 3")]
    core.request(StreamRef(), "PUT", "/p", headers, b"abc")
    wire = core.data_to_send()
    assert wire == b"PUT /p HTTP/1.1\r\nhost: example.com\r\nContent-Length: 3\r\n\r\nabc"
    assert server_requests(wire) == [
        (b"PUT", b"/p", [(b"host", b"example.com"), (b"content-length", b"3")], b"abc")
    ]


def test_transfer_encoding_is_sent_lower_case_and_frames_the_body() -> None:
    core = client()
    stream = StreamRef()
    core.request(stream, "POST", "/", [("Transfer-Encoding", "Chunked")], b"abc")
    wire = core.data_to_send()
    assert b"\r\nTransfer-Encoding: chunked\r\n" in wire
    assert server_requests(wire)[0][3] == b"abc"


def test_non_ascii_target_raises() -> None:
    core = client()
    with pytest.raises(LocalProtocolError, match="ASCII"):
        core.request(StreamRef(), "GET", "/caf\u00e9", [])


def test_content_length_with_transfer_encoding_raises() -> None:
    core = client()
    headers = [("content-length", "3"), ("transfer-encoding", "chunked")]
    with pytest.raises(LocalProtocolError, match="both"):
        core.request(StreamRef(), "POST", "/", headers, b"abc")


def test_reusing_an_unfinished_stream_ref_raises() -> None:
    core = client()
    stream = get(core)
    with pytest.raises(BadStateError, match="already in use"):
        core.request(stream, "GET", "/", [])


# -- host header ---------------------------------------------------------------


def host_line(core: Http1Client) -> bytes:
    get(core)
    return core.data_to_send().split(b"\r\n")[1]


def test_host_header_omits_the_default_port() -> None:
    assert host_line(client("example.com", 80)) == b"host: example.com"


def test_host_header_carries_a_non_default_port() -> None:
    assert host_line(client("example.com", 8080)) == b"host: example.com:8080"


def test_host_header_uses_the_given_default_port_for_tls() -> None:
    assert host_line(Http1Client("example.com", 443, default_port=443)) == b"host: example.com"
    assert host_line(Http1Client("example.com", 80, default_port=443)) == b"host: example.com:80"


def test_host_header_brackets_ipv6_literals() -> None:
    assert host_line(client("::1", 8080)) == b"host: [::1]:8080"
    assert host_line(client("::1", 80)) == b"host: [::1]"


def test_host_header_given_by_the_caller_is_kept() -> None:
    core = client()
    core.request(StreamRef(), "GET", "/", [("Host", "other.example")])
    wire = core.data_to_send()
    assert b"\r\nHost: other.example\r\n" in wire
    assert b"example.com" not in wire


# -- responses -----------------------------------------------------------------


def test_response_header_names_are_lower_case_str_and_values_latin1() -> None:
    core = client()
    stream = get(core)
    events = core.receive_data(b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nContent-Length: 0\r\n\r\n")
    assert events == [
        Response(stream, True, 200, (("x-name", "caf\u00e9"), ("content-length", "0")))
    ]


def test_body_end_in_the_same_batch_makes_the_last_data_final() -> None:
    core = client()
    stream = get(core)
    events = core.receive_data(OK_ABC)
    assert events == [
        Response(stream, False, 200, (("content-length", "3"),)),
        Data(stream, True, b"abc"),
    ]
    assert core.unfinished == ()


def test_body_end_in_a_later_batch_gives_an_empty_final_data() -> None:
    core = client()
    stream = get(core)
    events = core.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
    events += core.receive_data(b"0\r\n\r\n")
    assert [(type(e), getattr(e, "is_fin", None)) for e in events] == [
        (Response, False),
        (Data, False),
        (Data, True),
    ]
    assert events[-1] == Data(stream, True, b"")


def test_data_events_carry_immutable_bytes() -> None:
    core = client()
    get(core)
    last = core.receive_data(OK_ABC)[-1]
    assert isinstance(last, Data)
    assert type(last.data) is bytes


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
    ],
)
def test_response_without_body_is_final(head: bytes) -> None:
    core = client()
    stream = get(core)
    events = core.receive_data(head)
    assert len(events) == 1
    assert isinstance(events[0], Response)
    assert events[0].is_fin
    assert core.unfinished == ()
    assert events[0].stream == stream


def test_chunked_wins_over_content_length() -> None:
    core = client()
    stream = get(core)
    wire = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n"
    wire += b"4\r\nwxyz\r\n0\r\n\r\n"
    events = core.receive_data(wire)
    assert events[-1] == Data(stream, True, b"wxyz")
    assert core.unfinished == ()


def test_trailers_follow_non_final_data_and_end_the_stream() -> None:
    core = client()
    stream = get(core)
    wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    wire += b"2\r\nhi\r\n0\r\nX-Checksum: 42\r\n\r\n"
    events = core.receive_data(wire)
    assert events[1:] == [Data(stream, False, b"hi"), Trailers(stream, (("x-checksum", "42"),))]
    assert core.unfinished == ()


def test_read_until_close_body_ends_at_eof_with_a_normal_close() -> None:
    core = client()
    stream = get(core)
    events = core.receive_data(b"HTTP/1.1 200 OK\r\n\r\nsome ")
    events += core.receive_data(b"body")
    events += core.receive_data(b"")
    assert body_of(events, stream) == b"some body"
    assert events[-2:] == [Data(stream, True, b""), Closed("normal", ())]
    assert core.is_closed


def test_informational_response_comes_before_the_final_one() -> None:
    core = client()
    stream = get(core)
    events = core.receive_data(b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n" + OK_ABC)
    assert events[0] == Inform(stream, 103, (("link", "</s.css>"),))
    assert isinstance(events[1], Response)
    assert events[1].status == 200


# -- pipelining ----------------------------------------------------------------

PIPELINE_RESPONSES = (
    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none"
    b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"
    b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nthree"
)


def pipeline_of_three(core: Http1Client) -> list[StreamRef]:
    streams = [get(core, f"/{i}") for i in range(3)]
    wire = core.data_to_send()
    assert [target for _, target, _, _ in server_requests(wire)] == [b"/0", b"/1", b"/2"]
    return streams


def test_pipelined_requests_are_all_written_before_any_response() -> None:
    core = client()
    pipeline_of_three(core)
    assert len(core.unfinished) == 3


def test_pipelined_responses_arriving_at_once_match_streams_in_order() -> None:
    core = client()
    s = pipeline_of_three(core)
    events = core.receive_data(PIPELINE_RESPONSES)
    statuses = [(e.stream, e.status) for e in events if isinstance(e, Response)]
    assert statuses == [(s[0], 200), (s[1], 201), (s[2], 202)]
    assert [body_of(events, x) for x in s] == [b"one", b"two", b"three"]
    assert core.unfinished == ()


def test_pipelined_responses_arriving_byte_by_byte_match_streams_in_order() -> None:
    core = client()
    s = pipeline_of_three(core)
    events = feed_bytewise(core, PIPELINE_RESPONSES)
    statuses = [(e.stream, e.status) for e in events if isinstance(e, Response)]
    assert statuses == [(s[0], 200), (s[1], 201), (s[2], 202)]
    assert [body_of(events, x) for x in s] == [b"one", b"two", b"three"]
    finals = [e.stream for e in events if isinstance(e, Data) and e.is_fin]
    assert finals == s
    assert core.unfinished == ()


def test_head_in_a_pipeline_does_not_swallow_the_next_response() -> None:
    core = client()
    head, after = StreamRef(), StreamRef()
    core.request(head, "HEAD", "/", [])
    core.request(after, "GET", "/", [])
    wire = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n" + OK_ABC
    events = core.receive_data(wire)
    assert events[0] == Response(head, True, 200, (("content-length", "3"),))
    assert events[-1] == Data(after, True, b"abc")


def test_http10_keep_alive_response_keeps_the_connection() -> None:
    core = client()
    first, second = get(core), get(core)
    wire = b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\nx" + OK_ABC
    events = core.receive_data(wire)
    assert body_of(events, first) == b"x"
    assert body_of(events, second) == b"abc"
    assert not core.is_closed


def test_request_is_held_while_an_earlier_body_streams() -> None:
    core = client()
    upload, later = StreamRef(), StreamRef()
    core.request(upload, "POST", "/up", [("content-length", "2")], is_fin=False)
    core.request(later, "GET", "/later", [])
    assert b"/later" not in core.data_to_send()
    core.data(upload, b"ab", True)
    assert core.data_to_send() == b"abGET /later HTTP/1.1\r\nhost: example.com\r\n\r\n"


def test_held_streaming_request_buffers_its_body_until_written() -> None:
    core = client()
    first, second = StreamRef(), StreamRef()
    core.request(first, "POST", "/1", [], is_fin=False)
    core.request(second, "POST", "/2", [], is_fin=False)
    core.data(second, b"two", True)
    core.data(first, b"one", True)
    requests = server_requests(core.data_to_send())
    assert [(target, body) for _, target, _, body in requests] == [(b"/1", b"one"), (b"/2", b"two")]


# -- upgrade -------------------------------------------------------------------

UPGRADE_HEADERS = [("connection", "upgrade"), ("upgrade", "websocket")]
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"


def test_request_behind_an_upgrade_is_held_until_its_answer() -> None:
    core = client()
    core.request(StreamRef(), "GET", "/ws", UPGRADE_HEADERS)
    get(core, "/behind")
    assert b"/behind" not in core.data_to_send()


def test_101_gives_upgraded_with_trailing_bytes_and_fails_held_requests() -> None:
    core = client()
    ws = StreamRef()
    core.request(ws, "GET", "/ws", UPGRADE_HEADERS)
    held = get(core, "/behind")
    core.data_to_send()
    events = core.receive_data(SWITCHING + b"\x81\x02hi")
    upgraded, failed = events
    assert upgraded == Upgraded(
        ws, 101, (("connection", "upgrade"), ("upgrade", "websocket")), b"\x81\x02hi"
    )
    assert isinstance(failed, StreamFailed)
    assert failed.stream == held
    assert isinstance(failed.error, BadStateError)
    assert "upgraded" in str(failed.error)
    assert core.upgraded
    assert core.unfinished == ()
    assert core.data_to_send() == b""


def test_core_refuses_input_and_requests_after_upgrade() -> None:
    core = client()
    core.request(StreamRef(), "GET", "/ws", UPGRADE_HEADERS)
    core.receive_data(SWITCHING)
    with pytest.raises(BadStateError):
        core.receive_data(b"\x81\x00")
    with pytest.raises(BadStateError):
        get(core)


def test_non_101_answer_to_upgrade_is_a_plain_response_and_releases_held_requests() -> None:
    core = client()
    ws = StreamRef()
    core.request(ws, "GET", "/ws", UPGRADE_HEADERS)
    behind = get(core, "/behind")
    core.data_to_send()
    events = core.receive_data(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno")
    assert events[0] == Response(ws, False, 400, (("content-length", "2"),))
    assert events[1] == Data(ws, True, b"no")
    assert b"GET /behind" in core.data_to_send()
    assert not core.upgraded
    assert core.unfinished == (behind,)


def test_101_to_a_request_without_upgrade_breaks_the_connection() -> None:
    core = client()
    stream = get(core)
    [closed] = core.receive_data(SWITCHING)
    assert isinstance(closed, Closed)
    assert isinstance(closed.reason, RemoteProtocolError)
    assert closed.killed == (stream,)


def outcome(events: list[Event]) -> list[object]:
    """Events with a close's reason as its type and text (errors do not compare equal)."""
    return [
        (type(e.reason).__name__, str(e.reason), e.killed) if isinstance(e, Closed) else e
        for e in events
    ]


@pytest.mark.parametrize(
    "head",
    [
        SWITCHING,
        b"HTTP/1.1 101\r\nUpgrade:websocket\r\nConnection: \tUpgrade \r\n\r\n",
        b"HTTP/1.1 101 caf\xe9\r\nupgrade: websocket\r\nx-empty:\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nupgrade: websocket\r\n folded\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nbad name: x\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nx: a\x00b\r\n\r\n",
        b"HTTP/1.1 101 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 101 OK\r\ntransfer-encoding: gzip\r\n\r\n",
        b"HTTP/1.1 101 OK\nupgrade: websocket\n\n",
        b"HTTP/1.1 1010 OK\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nx: " + b"v" * 80 + b"\r\n\r\n",
    ],
)
@pytest.mark.parametrize("after", [b"", b"\x81\x02hi"])
def test_a_101_in_one_read_ends_as_the_same_101_read_in_pieces(head: bytes, after: bytes) -> None:
    outcomes = []
    ws = StreamRef()
    for pieces in ([head + after], [head[:1], head[1:] + after]):
        core = client(max_header_block_size=100)
        core.request(ws, "GET", "/ws", UPGRADE_HEADERS)
        core.data_to_send()
        events = [event for piece in pieces for event in core.receive_data(piece)]
        outcomes.append((outcome(events), core.upgraded, core.is_closed))
    assert outcomes[0] == outcomes[1]


def test_a_101_in_one_read_carries_its_fields_and_trailing_bytes() -> None:
    core = client()
    ws = StreamRef()
    core.request(ws, "GET", "/ws", UPGRADE_HEADERS)
    events = core.receive_data(
        b"HTTP/1.1 101\r\nUpgrade:websocket\r\nConnection: \tUpgrade \r\n\r\n\x81\x00"
    )
    assert events == [
        Upgraded(ws, 101, (("upgrade", "websocket"), ("connection", "Upgrade")), b"\x81\x00")
    ]


# -- errors and ends -----------------------------------------------------------


def test_oversized_header_block_arriving_in_pieces_breaks_the_connection() -> None:
    core = client(max_header_block_size=1000)
    stream = get(core)
    events = core.receive_data(b"HTTP/1.1 200 OK\r\n")
    for i in range(100):
        events += core.receive_data(b"x-filler-%03d: %s\r\n" % (i, b"v" * 40))
        if core.is_closed:
            break
    [closed] = events
    assert isinstance(closed, Closed)
    assert isinstance(closed.reason, MessageTooBig)
    assert "max_header_block_size" in str(closed.reason)
    assert closed.killed == (stream,)


def test_oversized_header_block_arriving_whole_breaks_the_connection() -> None:
    core = client(max_header_block_size=1000)
    stream = get(core)
    [closed] = core.receive_data(b"HTTP/1.1 200 OK\r\nx-big: " + b"v" * 2000 + b"\r\n\r\n")
    assert isinstance(closed, Closed)
    assert isinstance(closed.reason, MessageTooBig)
    assert closed.killed == (stream,)


def test_bad_status_line_breaks_the_connection() -> None:
    core = client()
    stream = get(core)
    [closed] = core.receive_data(b"HTTP/1.1 OK\r\n\r\n")
    assert isinstance(closed, Closed)
    assert isinstance(closed.reason, RemoteProtocolError)
    assert "malformed" in str(closed.reason)
    assert closed.killed == (stream,)


def test_bad_chunk_breaks_the_connection_after_the_good_data() -> None:
    core = client()
    stream, behind = get(core), get(core)
    wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n"
    events = core.receive_data(wire)
    assert events[1] == Data(stream, False, b"ok")
    assert isinstance(events[2], Closed)
    assert isinstance(events[2].reason, RemoteProtocolError)
    assert events[2].killed == (stream, behind)


def test_eof_mid_body_kills_the_in_progress_and_pending_streams() -> None:
    core = client()
    stream, behind = get(core), get(core)
    core.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    assert core.receive_data(b"") == [Closed("closed", (stream, behind))]


def test_eof_mid_headers_kills_the_stream() -> None:
    core = client()
    stream = get(core)
    core.receive_data(b"HTTP/1.1 200 OK\r\ncontent-le")
    assert core.receive_data(b"") == [Closed("closed", (stream,))]


def test_eof_before_any_response_kills_the_streams() -> None:
    core = client()
    stream = get(core)
    assert core.receive_data(b"") == [Closed("closed", (stream,))]


def test_eof_with_no_streams_closes_with_nothing_killed() -> None:
    core = client()
    assert core.receive_data(b"") == [Closed("closed", ())]
    assert core.is_closed


def test_data_with_no_request_outstanding_breaks_the_connection() -> None:
    core = client()
    [closed] = core.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")
    assert isinstance(closed, Closed)
    assert isinstance(closed.reason, RemoteProtocolError)
    assert "unexpected data" in str(closed.reason)


def test_data_beyond_the_last_response_breaks_the_connection() -> None:
    core = client()
    stream = get(core)
    events = core.receive_data(OK_ABC + b"junk")
    assert events[1] == Data(stream, True, b"abc")
    assert isinstance(events[2], Closed)
    assert "unexpected data" in str(events[2].reason)


def test_input_after_close_is_ignored() -> None:
    core = client()
    core.receive_data(b"")
    assert core.receive_data(b"HTTP/1.1 200 OK\r\n\r\n") == []


def test_connection_close_response_completes_then_kills_the_pipelined_streams() -> None:
    core = client()
    first, second, third = get(core), get(core), get(core)
    wire = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nabc" + OK_ABC
    events = core.receive_data(wire)
    assert events[1:] == [Data(first, True, b"abc"), Closed("normal", (second, third))]
    assert core.is_closed
    with pytest.raises(BadStateError):
        get(core)


def test_http10_response_without_keep_alive_closes_after_it() -> None:
    core = client()
    first, second = get(core), get(core)
    events = core.receive_data(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nx")
    assert events[-2:] == [Data(first, True, b"x"), Closed("normal", (second,))]


def test_request_with_connection_close_refuses_later_requests_and_closes_after() -> None:
    core = client()
    stream = StreamRef()
    core.request(stream, "GET", "/", [("connection", "close")])
    with pytest.raises(BadStateError, match="closing"):
        get(core)
    events = core.receive_data(OK_ABC)
    assert events[-1] == Closed("normal", ())


# -- shutdown ------------------------------------------------------------------


def test_shutdown_with_nothing_in_flight_closes_at_once() -> None:
    core = client()
    assert core.shutdown() == [Closed("normal", ())]
    assert core.is_closed


def test_shutdown_fails_the_pipelined_streams_and_lets_the_first_finish() -> None:
    core = client()
    first, second, third = get(core), get(core), get(core)
    events = core.shutdown()
    assert [e.stream for e in events if isinstance(e, StreamFailed)] == [second, third]
    errors = [e.error for e in events if isinstance(e, StreamFailed)]
    assert len(errors) == len(events)
    assert all(isinstance(error, StreamError) for error in errors)
    assert "shutting down" in str(errors[0])
    assert core.unfinished == (first,)
    assert not core.is_closed
    events = core.receive_data(OK_ABC + OK_ABC)
    assert events[-2:] == [Data(first, True, b"abc"), Closed("normal", ())]


def test_request_after_shutdown_raises() -> None:
    core = client()
    get(core)
    core.shutdown()
    with pytest.raises(BadStateError):
        get(core)


def test_shutdown_fails_held_requests_behind_a_streaming_upload() -> None:
    core = client()
    upload, held = StreamRef(), StreamRef()
    core.request(upload, "POST", "/up", [], is_fin=False)
    core.request(held, "GET", "/held", [])
    [failed] = core.shutdown()
    assert isinstance(failed, StreamFailed)
    assert failed.stream == held
    core.data(upload, b"x", True)
    assert b"/held" not in core.data_to_send()


def test_shutdown_while_an_upgrade_is_in_flight_closes_after_the_upgrade() -> None:
    core = client()
    ws = StreamRef()
    core.request(ws, "GET", "/ws", UPGRADE_HEADERS)
    assert core.shutdown() == []
    events = core.receive_data(SWITCHING)
    assert [type(e) for e in events] == [Upgraded, Closed]
    assert events[1] == Closed("normal", ())


def test_shutdown_after_close_does_nothing() -> None:
    core = client()
    core.receive_data(b"")
    assert core.shutdown() == []


# -- early answers and tunnels -------------------------------------------------


def test_upload_goes_on_after_an_early_response_and_then_releases_held_requests() -> None:
    core = client()
    upload = StreamRef()
    core.request(upload, "POST", "/up", [], is_fin=False)
    later = get(core, "/later")
    core.data_to_send()
    events = core.receive_data(OK_EMPTY)
    assert events == [Response(upload, True, 200, (("content-length", "0"),))]
    assert core.unfinished == (later,)
    core.data(upload, b"rest", True)
    assert (
        core.data_to_send()
        == b"4\r\nrest\r\n0\r\n\r\nGET /later HTTP/1.1\r\nhost: example.com\r\n\r\n"
    )


def test_data_after_the_connection_closed_raises() -> None:
    core = client()
    upload = StreamRef()
    core.request(upload, "POST", "/up", [], is_fin=False)
    core.receive_data(b"")
    with pytest.raises(BadStateError, match="closed"):
        core.data(upload, b"x", True)


def test_successful_connect_hands_the_connection_over() -> None:
    core = client()
    tunnel = StreamRef()
    core.request(tunnel, "CONNECT", "origin.example:443", [("host", "origin.example:443")])
    events = core.receive_data(b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01")
    assert events == [Upgraded(tunnel, 200, (), b"\x16\x03\x01")]
    assert core.upgraded
